"""epsilon-greedy exploration for the asynchronous value-based methods
(Mnih et al. 2016, Section 5.1 and Supplementary Section 8)."""

from __future__ import annotations

import numpy as np

FINAL_EPSILONS = (0.1, 0.01, 0.5)
"""Final exploration rates an actor-learner can draw (Mnih et al. 2016, Section 5.1)."""

FINAL_EPSILON_PROBS = (0.4, 0.3, 0.3)
"""Probabilities of drawing each of ``FINAL_EPSILONS``."""


def sample_final_epsilon(
    rng: np.random.Generator,
    values: tuple[float, ...] = FINAL_EPSILONS,
    probs: tuple[float, ...] = FINAL_EPSILON_PROBS,
) -> float:
    """Draw an actor-learner's final epsilon (paper: 0.1, 0.01 or 0.5 w.p. 0.4, 0.3, 0.3).

    Raises:
        ValueError: if ``values`` and ``probs`` differ in length or ``probs`` is not a
            distribution.
    """
    return float(values[rng.choice(len(values), p=probs)])


def epsilon_at(global_step: int, final_epsilon: float, anneal_steps: int, initial: float = 1.0) -> float:
    """epsilon annealed linearly from ``initial`` to ``final_epsilon`` over ``anneal_steps``.

    Args:
        global_step: ``T``, env steps summed over all workers.
        final_epsilon: this actor-learner's final epsilon.
        anneal_steps: global env steps over which epsilon decays (paper: 4M frames).
        initial: epsilon at ``T = 0``.

    Returns:
        epsilon in [final, initial] (constant ``final_epsilon`` from ``T = anneal_steps`` on).
    """
    if anneal_steps <= 0 or global_step >= anneal_steps:
        return final_epsilon
    return initial + (final_epsilon - initial) * (global_step / anneal_steps)


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """A uniformly random action with probability ``epsilon``, else ``argmax_a Q(s, a)``.

    Args:
        q_values: ``[A]`` float, ``Q(s, .)``.
        epsilon: exploration rate in [0, 1].
        rng: the actor-learner's generator.
    """
    if rng.random() < epsilon:
        return int(rng.integers(len(q_values)))
    return int(q_values.argmax())
