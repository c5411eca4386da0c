"""n-step returns against a slow transcription of Mnih et al. 2016, Algorithm S3."""

import numpy as np
import pytest

from asyncrl.returns import n_step_returns


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
