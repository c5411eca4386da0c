"""The A3C loss against a slow per-step transcription of Algorithm S3, and its gradients."""

import math

import pytest
import torch

from asyncrl.losses import a3c_loss


def slow_a3c_loss(logits, values, actions, returns, value_coef, entropy_coef):
    """Per step t: -log pi(a_t|s_t) (R_t - V(s_t)) + c_v (R_t - V(s_t))^2 - beta H(pi(.|s_t))."""
    total = 0.0
    for t in range(len(logits)):
        for b in range(len(logits[t])):
            z = [math.exp(x) for x in logits[t][b]]
            s = sum(z)
            p = [x / s for x in z]
            advantage = returns[t][b] - values[t][b]
            entropy = -sum(pi * math.log(pi) for pi in p)
            total += -math.log(p[actions[t][b]]) * advantage
            total += value_coef * advantage**2 - entropy_coef * entropy
    return total


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    T, B, A = 5, 3, 4
    logits = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    actions = torch.randint(0, A, (T, B), generator=g)
    returns = torch.randn(T, B, generator=g, dtype=torch.float64)
    loss, metrics = a3c_loss(logits, values, actions, returns, value_coef=0.5, entropy_coef=0.01)
    want = slow_a3c_loss(logits.tolist(), values.tolist(), actions.tolist(), returns.tolist(), 0.5, 0.01)
    assert loss.item() == pytest.approx(want, rel=1e-10)
    assert set(metrics) == {"policy_loss", "value_loss", "entropy"}
    assert metrics["value_loss"] == pytest.approx(((returns - values) ** 2).mean().item())


def test_gradients_match_hand_derivation():
    # d/dlogits of -log pi(a) A - beta H:  (pi - onehot(a)) A - beta * dH/dlogits,
    # with dH/dz_k = -pi_k (log pi_k + H). d/dV of c_v (R - V)^2: -2 c_v (R - V);
    # the advantage in the policy term carries no gradient to V.
    logits = torch.tensor([[[0.3, -0.2, 1.0]]], dtype=torch.float64, requires_grad=True)
    values = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([[2]])
    returns = torch.tensor([[1.5]], dtype=torch.float64)
    c_v, beta = 0.5, 0.01
    loss, _ = a3c_loss(logits, values, actions, returns, c_v, beta)
    loss.backward()
    pi = torch.softmax(logits.detach()[0, 0], -1)
    advantage = 1.5 - 0.7
    entropy = -(pi * pi.log()).sum()
    d_entropy = -pi * (pi.log() + entropy)
    onehot = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    want_logits = (pi - onehot) * advantage - beta * d_entropy
    torch.testing.assert_close(logits.grad[0, 0], want_logits)
    assert values.grad.item() == pytest.approx(-2 * c_v * advantage)
