"""epsilon-greedy exploration of the value-based methods (Mnih et al. 2016, Section 5.1)."""

import numpy as np
import pytest

from asyncrl.exploration import epsilon_at, epsilon_greedy, sample_final_epsilon


def test_linear_anneal_from_one_to_the_final_value():
    assert epsilon_at(0, 0.1, 1000) == 1.0
    assert epsilon_at(500, 0.1, 1000) == pytest.approx(0.55)
    assert epsilon_at(250, 0.5, 1000) == pytest.approx(0.875)
    assert epsilon_at(1000, 0.1, 1000) == 0.1
    assert epsilon_at(10**9, 0.01, 1000) == 0.01
    assert epsilon_at(0, 0.01, 0) == 0.01


def test_final_epsilon_distribution_is_the_papers():
    rng = np.random.default_rng(0)
    draws = np.array([sample_final_epsilon(rng) for _ in range(30_000)])
    assert set(np.unique(draws)) == {0.1, 0.01, 0.5}
    # 30,000 draws: the standard error of each frequency is below 0.003.
    assert np.mean(draws == 0.1) == pytest.approx(0.4, abs=0.012)
    assert np.mean(draws == 0.01) == pytest.approx(0.3, abs=0.012)
    assert np.mean(draws == 0.5) == pytest.approx(0.3, abs=0.012)


def test_final_epsilon_is_fixed_by_the_seed():
    first = [sample_final_epsilon(np.random.default_rng(seed)) for seed in range(20)]
    again = [sample_final_epsilon(np.random.default_rng(seed)) for seed in range(20)]
    assert first == again and len(set(first)) == 3
    assert sample_final_epsilon(np.random.default_rng(0), (0.2,), (1.0,)) == 0.2


def test_epsilon_greedy_extremes_and_rate():
    rng = np.random.default_rng(1)
    q = np.array([0.0, 2.0, 1.0])
    assert all(epsilon_greedy(q, 0.0, rng) == 1 for _ in range(100))
    uniform = np.bincount([epsilon_greedy(q, 1.0, rng) for _ in range(9000)], minlength=3) / 9000
    np.testing.assert_allclose(uniform, [1 / 3] * 3, atol=0.03)
    greedy_share = np.mean([epsilon_greedy(q, 0.3, rng) == 1 for _ in range(10_000)])
    assert greedy_share == pytest.approx(0.7 + 0.3 / 3, abs=0.02)
