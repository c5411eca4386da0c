"""Return targets against slow transcriptions of their papers: n-step returns (Mnih et al.
2016, Algorithm S3), GAE (Schulman et al. 2016), V-trace (Espeholt et al. 2018)."""

import math

import numpy as np
import pytest

from asyncrl.returns import gae, n_step_returns, vtrace


def slow_n_step_returns(rewards, terminated, truncated, next_values, gamma):
    """Algorithm S3, one sequence at a time, with Python floats:

    R = 0 for terminal s_t, V(s_t) for non-terminal s_t   (s_t: where the segment ends)
    for i in t-1 .. t_start:  R <- r_i + gamma R
    extended: an episode cut by a time limit inside the sequence restarts R at V(s_{i+1}).
    """
    T, B = len(rewards), len(rewards[0])
    out = [[0.0] * B for _ in range(T)]
    for b in range(B):
        R = None
        for i in reversed(range(T)):
            if terminated[i][b]:
                R = 0.0
            elif truncated[i][b] or i == T - 1:
                R = float(next_values[i][b])
            R = float(rewards[i][b]) + gamma * R
            out[i][b] = R
    return np.array(out, dtype=np.float32)


def test_bootstrapped_segment_matches_hand_computation():
    rewards = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    no = np.zeros((3, 1), dtype=bool)
    next_values = np.array([[99.0], [99.0], [10.0]], dtype=np.float32)  # only V(s_3) is read
    got = n_step_returns(rewards, no, no, next_values, gamma=0.5)
    # R_2 = 3 + 0.5*10 = 8; R_1 = 2 + 0.5*8 = 6; R_0 = 1 + 0.5*6 = 4
    np.testing.assert_allclose(got[:, 0], [4.0, 6.0, 8.0])


def test_terminated_does_not_bootstrap_and_truncated_does():
    rewards = np.ones((2, 2), dtype=np.float32)
    terminated = np.array([[False, False], [True, False]])
    truncated = np.array([[False, False], [False, True]])
    next_values = np.array([[0.0, 0.0], [50.0, 50.0]], dtype=np.float32)
    got = n_step_returns(rewards, terminated, truncated, next_values, gamma=0.9)
    # column 0 terminated: R_1 = 1, R_0 = 1.9. column 1 truncated: R_1 = 1 + 45, R_0 = 1 + 0.9*46
    np.testing.assert_allclose(got, [[1.9, 1 + 0.9 * 46], [1.0, 46.0]], rtol=1e-6)


def test_truncation_inside_the_sequence_restarts_from_the_last_observation_value():
    rewards = np.array([[1.0], [1.0], [1.0], [1.0]], dtype=np.float32)
    truncated = np.array([[False], [True], [False], [False]])
    terminated = np.zeros_like(truncated)
    next_values = np.array([[0.0], [7.0], [0.0], [3.0]], dtype=np.float32)
    got = n_step_returns(rewards, terminated, truncated, next_values, gamma=1.0)
    np.testing.assert_allclose(got[:, 0], [9.0, 8.0, 5.0, 4.0])


@pytest.mark.parametrize("seed", range(5))
def test_random_sequences_match_slow_reference(seed):
    rng = np.random.default_rng(seed)
    T, B = 17, 6
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    terminated = rng.random((T, B)) < 0.1
    truncated = (rng.random((T, B)) < 0.1) & ~terminated
    terminated[3, 2] = truncated[3, 2] = True  # both flags: terminal wins
    next_values = rng.normal(size=(T, B)).astype(np.float32)
    got = n_step_returns(rewards, terminated, truncated, next_values, gamma=0.97)
    want = slow_n_step_returns(rewards.tolist(), terminated.tolist(), truncated.tolist(),
                               next_values.tolist(), 0.97)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="one shape"):
        n_step_returns(np.zeros((3, 1)), np.zeros((3, 2), bool), np.zeros((3, 1), bool),
                       np.zeros((3, 1)), 0.9)
    with pytest.raises(ValueError, match="at least one time step"):
        z = np.zeros((0, 1))
        n_step_returns(z, z.astype(bool), z.astype(bool), z, 0.9)


# -- GAE (Schulman et al. 2016) and V-trace (Espeholt et al. 2018) ----------------------


def _random_batch(seed, T=13, B=5):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    values = rng.normal(size=(T, B)).astype(np.float32)
    next_values = rng.normal(size=(T, B)).astype(np.float32)
    terminated = rng.random((T, B)) < 0.15
    truncated = (rng.random((T, B)) < 0.15) & ~terminated
    terminated[2, 1], truncated[5, 1] = True, True  # both kinds present, in one column too
    return rng, rewards, values, next_values, terminated, truncated


def _consistent(values, next_values, terminated, truncated):
    """``next_values[t] = values[t + 1]`` inside an episode, as a real rollout has."""
    inside = ~(terminated | truncated)[:-1]
    next_values = next_values.copy()
    next_values[:-1] = np.where(inside, values[1:], next_values[:-1])
    return next_values


def slow_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Schulman et al. 2016, eq. 16, term by term: A_t = sum_l (gamma lam)^l delta_{t+l},
    delta_t = r_t + gamma V(s_{t+1}) - V(s_t) with V(terminal) = 0; the sum stops after
    the step that ends the episode (terminated or truncated) or the sequence."""
    T, B = len(rewards), len(rewards[0])
    out = [[0.0] * B for _ in range(T)]
    for b in range(B):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                bootstrap = 0.0 if terminated[k][b] else next_values[k][b]
                delta = rewards[k][b] + gamma * bootstrap - values[k][b]
                total += weight * delta
                if terminated[k][b] or truncated[k][b]:
                    break
                weight *= gamma * lam
            out[t][b] = total
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_gae_matches_slow_reference(seed, lam):
    _, rewards, values, next_values, terminated, truncated = _random_batch(seed)
    advantages, returns = gae(rewards, values, next_values, terminated, truncated, 0.95, lam)
    want = slow_gae(rewards.tolist(), values.tolist(), next_values.tolist(), terminated.tolist(),
                    truncated.tolist(), 0.95, lam)
    np.testing.assert_allclose(advantages, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, want + values, rtol=1e-5, atol=1e-5)
    assert advantages.dtype == returns.dtype == np.float32


def test_gae_with_lambda_one_gives_the_n_step_returns():
    _, rewards, values, next_values, terminated, truncated = _random_batch(7)
    next_values = _consistent(values, next_values, terminated, truncated)
    _, returns = gae(rewards, values, next_values, terminated, truncated, 0.9, 1.0)
    np.testing.assert_allclose(returns, n_step_returns(rewards, terminated, truncated, next_values, 0.9),
                               rtol=1e-5, atol=1e-5)


def test_gae_truncated_step_bootstraps_from_its_own_last_value():
    rewards = np.array([[1.0], [1.0]], np.float32)
    values = np.array([[0.5], [0.5]], np.float32)
    next_values = np.array([[4.0], [2.0]], np.float32)  # V(last obs of the cut episode), V(s_2)
    truncated = np.array([[True], [False]])
    advantages, _ = gae(rewards, values, next_values, np.zeros_like(truncated), truncated, 0.5, 1.0)
    # A_0 = 1 + 0.5 * 4 - 0.5 (no trace into the next episode); A_1 = 1 + 0.5 * 2 - 0.5
    np.testing.assert_allclose(advantages[:, 0], [2.5, 1.5])


def slow_vtrace(mu_logp, pi_logp, rewards, values, next_values, terminated, truncated, gamma, rho_bar, c_bar):
    """Espeholt et al. 2018, eq. 1, term by term: v_s = V(x_s) + sum_{t=s}^{end}
    gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t V, delta_t V = rho_t (r_t + gamma V(x_{t+1})
    - V(x_t)); the sum stops after the step that ends the episode or the sequence.
    Advantage (Remark 1 / Section 4.2): rho_s (r_s + gamma v_{s+1} - V(x_s)), with
    v_{s+1} = V(x_{s+1}) where the sum stops, 0 after a terminal step."""
    T, B = len(rewards), len(rewards[0])
    vs = [[0.0] * B for _ in range(T)]
    adv = [[0.0] * B for _ in range(T)]
    for b in range(B):
        ratio = [math.exp(pi_logp[t][b] - mu_logp[t][b]) for t in range(T)]
        for s in range(T):
            total, coef = values[s][b], 1.0
            for t in range(s, T):
                bootstrap = 0.0 if terminated[t][b] else next_values[t][b]
                total += coef * min(rho_bar, ratio[t]) * (rewards[t][b] + gamma * bootstrap - values[t][b])
                if terminated[t][b] or truncated[t][b]:
                    break
                coef *= gamma * min(c_bar, ratio[t])
            vs[s][b] = total
        for s in range(T):
            if terminated[s][b]:
                nxt = 0.0
            elif truncated[s][b] or s == T - 1:
                nxt = next_values[s][b]
            else:
                nxt = vs[s + 1][b]
            adv[s][b] = min(rho_bar, ratio[s]) * (rewards[s][b] + gamma * nxt - values[s][b])
    return np.array(vs), np.array(adv)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bars", [(1.0, 1.0), (2.0, 0.5)])
def test_vtrace_matches_slow_reference(seed, bars):
    rng, rewards, values, next_values, terminated, truncated = _random_batch(seed)
    mu_logp = np.log(rng.uniform(0.05, 1.0, size=rewards.shape)).astype(np.float32)
    pi_logp = np.log(rng.uniform(0.05, 1.0, size=rewards.shape)).astype(np.float32)
    vs, advantages = vtrace(mu_logp, pi_logp, rewards, values, next_values, terminated, truncated, 0.95, *bars)
    want_vs, want_adv = slow_vtrace(mu_logp.tolist(), pi_logp.tolist(), rewards.tolist(), values.tolist(),
                                    next_values.tolist(), terminated.tolist(), truncated.tolist(), 0.95, *bars)
    np.testing.assert_allclose(vs, want_vs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(advantages, want_adv, rtol=1e-4, atol=1e-4)


def test_vtrace_on_policy_gives_the_n_step_returns():
    rng, rewards, values, next_values, terminated, truncated = _random_batch(3)
    logp = np.log(rng.uniform(0.05, 1.0, size=rewards.shape)).astype(np.float32)
    next_values = _consistent(values, next_values, terminated, truncated)
    vs, advantages = vtrace(logp, logp, rewards, values, next_values, terminated, truncated, 0.9)
    returns = n_step_returns(rewards, terminated, truncated, next_values, 0.9)
    np.testing.assert_allclose(vs, returns, rtol=1e-5, atol=1e-5)
    # on-policy, the advantage is r_t + gamma v_{t+1} - V(s_t) = R_t - V(s_t)
    np.testing.assert_allclose(advantages, returns - values, rtol=1e-5, atol=1e-5)
