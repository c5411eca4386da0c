"""PPO's update inputs against slow references: plain (pi_old = the behaviour policy) and
with V-trace (the decoupled objective: pi_old = the learner's policy before the update,
V-trace advantages and targets from the learner's critic, also at truncated steps)."""

import math

import numpy as np
import pytest
import torch

from asyncrl.algos import a2c, ppo
from asyncrl.config import algo_config
from asyncrl.networks import build_actor_critic
from asyncrl.updaters import TorchUpdater

T, B, OBS, A, GAMMA = 5, 3, 3, 3, 0.9
NO_PRESET = "NoPreset-v0"  # an env id with no preset: the algorithms' general defaults


class RecordingUpdater(TorchUpdater):
    """A ``TorchUpdater`` that keeps the inputs of every ``step``."""

    def __init__(self, model):
        super().__init__(model, torch.optim.SGD(model.parameters(), lr=0.0), max_grad_norm=1e9)
        self.steps = []

    def step(self, obs, loss, lr, **inputs):
        self.steps.append(inputs)
        return super().step(obs, loss, lr, **inputs)


def _batch(seed=0):
    """A batch in ``RolloutSlots.batch``'s layout, from a behaviour policy and critic that are
    not the learner's; env 0 terminates at t=1, env 1 is truncated at t=2, env 2 runs on."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(T, B, dtype=torch.bool)
    truncated = torch.zeros(T, B, dtype=torch.bool)
    terminated[1, 0] = True
    truncated[2, 1] = True
    return {
        "obs": torch.randn(T + 1, B, OBS, generator=g),
        "actions": torch.randint(0, A, (T, B), generator=g),
        "rewards": torch.randn(T, B, generator=g),
        "terminated": terminated,
        "truncated": truncated,
        "log_probs": torch.log(torch.rand(T, B, generator=g) * 0.8 + 0.1),  # mu(a|s), unrelated to pi
        "values": torch.full((T + 1, B), 100.0),  # the behaviour critic: far from the learner's
        "final_obs": torch.randn(T, B, OBS, generator=g),
        "final_values": torch.where(truncated, torch.tensor(-100.0), torch.tensor(0.0)),
        "policy_version": torch.zeros(B, dtype=torch.int64),
    }


def _learner_model():
    torch.manual_seed(3)
    return build_actor_critic(OBS, A, (8,), shared_torso=False)


def _pi_and_v(model, obs, action=None):
    """Slowly, one observation at a time: ``(pi(action|obs), V(obs))``."""
    with torch.no_grad():
        logits, value = model(obs[None])
    probs = torch.softmax(logits[0], dim=-1)
    return (float(probs[action]) if action is not None else None), float(value[0])


def _slow_vtrace(model, batch):
    """V-trace (Espeholt et al. 2018, eq. 1, rho-bar = c-bar = 1) and its policy-gradient
    advantage (Section 4.2), term by term, with every value from ``model``'s critic:
    ``v_s = V(x_s) + sum_{t=s}^{end} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t``."""
    pi = np.zeros((T, B))
    V = np.zeros((T + 1, B))
    for b in range(B):
        for t in range(T + 1):
            p, V[t, b] = _pi_and_v(model, batch["obs"][t, b], int(batch["actions"][t, b]) if t < T else None)
            if t < T:
                pi[t, b] = p
    mu = batch["log_probs"].exp().numpy()
    rho = np.minimum(1.0, pi / mu)
    c = np.minimum(1.0, pi / mu)
    term, trunc, r = batch["terminated"].numpy(), batch["truncated"].numpy(), batch["rewards"].numpy()
    next_V = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            if term[t, b]:
                next_V[t, b] = 0.0
            elif trunc[t, b]:
                next_V[t, b] = _pi_and_v(model, batch["final_obs"][t, b])[1]  # the learner's critic
            else:
                next_V[t, b] = V[t + 1, b]
    delta = rho * (r + GAMMA * next_V - V[:T])
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total, weight = 0.0, 1.0
            for t in range(s, T):
                total += GAMMA ** (t - s) * weight * delta[t, b]
                if term[t, b] or trunc[t, b]:
                    break  # the trace ends with the episode
                weight *= c[t, b]
            vs[s, b] = V[s, b] + total
    advantages = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            if term[s, b] or trunc[s, b] or s == T - 1:
                v_next = next_V[s, b]
            else:
                v_next = vs[s + 1, b]
            advantages[s, b] = rho[s, b] * (r[s, b] + GAMMA * v_next - V[s, b])
    return np.log(pi), V, vs, advantages


def test_ppo_with_vtrace_clips_around_the_learners_policy_with_vtrace_advantages():
    model = _learner_model()
    updater = RecordingUpdater(model)
    batch = _batch()
    log_pi, V, vs, advantages = _slow_vtrace(model, batch)
    final_value = _pi_and_v(model, batch["final_obs"][2, 1])[1]
    cfg = algo_config("ppo", NO_PRESET, correction="vtrace", sync=False, gamma=GAMMA, epochs=1,
                      minibatch_size=T * B, normalize_advantages=False)
    ppo.learn(cfg, updater, batch, 0.0, np.random.default_rng(0))
    [inputs] = updater.steps
    # pi_old is pi_prox, the learner's policy at the start of the update, not mu
    np.testing.assert_allclose(inputs["old_log_probs"].numpy(), log_pi.reshape(-1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(inputs["old_log_probs"].numpy(), batch["log_probs"].numpy().reshape(-1))
    np.testing.assert_allclose(inputs["advantages"].numpy(), advantages.reshape(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inputs["returns"].numpy(), vs.reshape(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inputs["old_values"].numpy(), V[:T].reshape(-1), rtol=1e-5, atol=1e-6)
    # the truncated step bootstraps from the learner's V(final_obs), not the actor's -100
    t, b = 2, 1
    want = batch["rewards"][t, b].item() + GAMMA * final_value - V[t, b]
    pi_t = math.exp(log_pi[t, b])
    rho = min(1.0, pi_t / batch["log_probs"][t, b].exp().item())
    assert inputs["advantages"][t * B + b].item() == pytest.approx(rho * want, rel=1e-4, abs=1e-5)


def test_ppo_without_correction_clips_around_the_behaviour_policy():
    model = _learner_model()
    updater = RecordingUpdater(model)
    batch = _batch()
    cfg = algo_config("ppo", NO_PRESET, gamma=GAMMA, gae_lambda=1.0, epochs=1, minibatch_size=T * B,
                      normalize_advantages=False)
    ppo.learn(cfg, updater, batch, 0.0, np.random.default_rng(0))
    [inputs] = updater.steps
    np.testing.assert_array_equal(inputs["old_log_probs"].numpy(), batch["log_probs"].numpy().reshape(-1))
    np.testing.assert_array_equal(inputs["old_values"].numpy(), np.full(T * B, 100.0, np.float32))
    # GAE(1) with the behaviour critic throughout: the truncated step bootstraps from its -100
    t, b = 2, 1
    assert inputs["advantages"][t * B + b].item() == pytest.approx(
        batch["rewards"][t, b].item() + GAMMA * -100.0 - 100.0, rel=1e-5)


def test_a2c_bootstraps_truncated_steps_with_the_learners_critic():
    """A2C evaluates every value with the learner's critic: the value of a truncated
    episode's last observation too, never the actor's."""
    model = _learner_model()
    updater = RecordingUpdater(model)
    batch = _batch()
    t, b = 2, 1
    want = batch["rewards"][t, b].item() + GAMMA * _pi_and_v(model, batch["final_obs"][t, b])[1]
    cfg = algo_config("a2c", NO_PRESET, gamma=GAMMA, gae_lambda=1.0)
    a2c.learn(cfg, updater, batch, 0.0, np.random.default_rng(0))
    [inputs] = updater.steps
    assert inputs["returns"][t * B + b].item() == pytest.approx(want, rel=1e-5, abs=1e-6)
