"""The actor-critic loss against a slow per-step transcription of Algorithm S3, the PPO loss
against a hand computation, and their gradients."""

import math

import numpy as np
import pytest
import torch

from asyncrl.losses import actor_critic_loss, normalized, ppo_loss


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
    loss, metrics = actor_critic_loss(logits, values, actions, returns, value_coef=0.5, entropy_coef=0.01)
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
    loss, _ = actor_critic_loss(logits, values, actions, returns, c_v, beta)
    loss.backward()
    pi = torch.softmax(logits.detach()[0, 0], -1)
    advantage = 1.5 - 0.7
    entropy = -(pi * pi.log()).sum()
    d_entropy = -pi * (pi.log() + entropy)
    onehot = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    want_logits = (pi - onehot) * advantage - beta * d_entropy
    torch.testing.assert_close(logits.grad[0, 0], want_logits)
    assert values.grad.item() == pytest.approx(-2 * c_v * advantage)


def _ppo_inputs():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64, requires_grad=True)
    values = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    return dict(
        params=logits, values=values, actions=torch.tensor([0, 1]),
        old_log_probs=torch.tensor([math.log(0.4), math.log(0.5)], dtype=torch.float64),
        old_values=torch.tensor([1.2, 2.5], dtype=torch.float64),
        advantages=torch.tensor([2.0, -1.0], dtype=torch.float64),
        returns=torch.tensor([1.5, 0.0], dtype=torch.float64),
    )


def test_ppo_loss_matches_hand_computation():
    # pi = [0.5, 0.5] and [0.75, 0.25]; actions 0, 1: ratios 0.5/0.4 = 1.25 and 0.25/0.5 = 0.5.
    # clipped surrogate (eps 0.2): min(2.5, 2.4) = 2.4; min(-0.5, -0.8) = -0.8 -> policy loss -0.8.
    # value loss: ((1 - 1.5)^2 + (2 - 0)^2) / 2 = 2.125.
    # entropy: (ln 2 + (-(0.75 ln 0.75 + 0.25 ln 0.25))) / 2.
    entropy = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    loss, metrics = ppo_loss(**_ppo_inputs(), clip_range=0.2, value_clip=None, value_coef=0.5, entropy_coef=0.01)
    assert metrics["policy_loss"] == pytest.approx(-0.8)
    assert metrics["value_loss"] == pytest.approx(2.125)
    assert metrics["entropy"] == pytest.approx(entropy)
    assert loss.item() == pytest.approx(-0.8 + 0.5 * 2.125 - 0.01 * entropy)
    # approx KL: mean((r - 1) - ln r); both ratios are outside [0.8, 1.2]
    assert metrics["approx_kl"] == pytest.approx(((0.25 - math.log(1.25)) + (-0.5 - math.log(0.5))) / 2)
    assert metrics["clip_fraction"] == 1.0


def test_ppo_value_clipping_takes_the_larger_error():
    # clipped values: 1.2 + clip(-0.2, +-0.1) = 1.1 -> (1.1 - 1.5)^2 = 0.16 < 0.25 keeps 0.25;
    # 2.5 + clip(-0.5, +-0.1) = 2.4 -> 2.4^2 = 5.76 > 4 takes 5.76. Mean 3.005.
    _, metrics = ppo_loss(**_ppo_inputs(), clip_range=0.2, value_clip=0.1, value_coef=0.5, entropy_coef=0.0)
    assert metrics["value_loss"] == pytest.approx(3.005)


def test_ppo_clipped_samples_carry_no_policy_gradient():
    # Both samples are clipped (ratio above 1 + eps with A > 0, below 1 - eps with A < 0):
    # with no entropy bonus the logits get no gradient at all; with eps = 0.6 neither is
    # clipped and the gradient is -r A (onehot - pi) / N per sample.
    inputs = _ppo_inputs()
    loss, _ = ppo_loss(**inputs, clip_range=0.2, value_clip=None, value_coef=0.5, entropy_coef=0.0)
    loss.backward()
    assert torch.count_nonzero(inputs["params"].grad) == 0
    inputs = _ppo_inputs()
    loss, _ = ppo_loss(**inputs, clip_range=0.6, value_clip=None, value_coef=0.5, entropy_coef=0.0)
    loss.backward()
    pi = torch.softmax(inputs["params"].detach(), -1)
    onehot = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ratio = torch.tensor([[1.25], [0.5]], dtype=torch.float64)
    advantage = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    torch.testing.assert_close(inputs["params"].grad, -ratio * advantage * (onehot - pi) / 2)
    torch.testing.assert_close(inputs["values"].grad, torch.tensor([-0.25, 1.0], dtype=torch.float64))


def test_mean_reduction_divides_every_term_by_the_steps():
    g = torch.Generator().manual_seed(0)
    logits, values = torch.randn(4, 2, 3, generator=g), torch.randn(4, 2, generator=g)
    actions, returns = torch.randint(0, 3, (4, 2), generator=g), torch.randn(4, 2, generator=g)
    advantages = torch.randn(4, 2, generator=g)
    summed, _ = actor_critic_loss(logits, values, actions, returns, 0.5, 0.01, advantages=advantages)
    mean, _ = actor_critic_loss(logits, values, actions, returns, 0.5, 0.01, advantages=advantages,
                                reduction="mean")
    assert mean.item() == pytest.approx(summed.item() / 8, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        actor_critic_loss(logits, values, actions, returns, 0.5, 0.01, reduction="max")


def test_normalized_advantages_match_numpy_and_leave_a_single_value_alone():
    rng = np.random.default_rng(3)
    a = rng.normal(0.3, 0.05, size=(5, 16)).astype(np.float32)
    got = normalized(torch.from_numpy(a)).numpy()
    want = (a.astype(np.float64) - a.mean()) / (a.std(ddof=1) + 1e-8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    one = torch.tensor([0.7])
    assert normalized(one) is one
