"""epsilon-greedy exploration for the asynchronous value-based methods
(Mnih et al. 2016, Section 5.1 and Supplementary Section 8) and for DQN's actors (Ape-X's
per-actor epsilons, Horgan et al. 2018)."""

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


def ape_x_epsilon(epsilon: float, alpha: float, actor: int, actors: int) -> float:
    """Actor ``actor`` of ``actors``'s final epsilon, ``epsilon ** (1 + alpha * i / (N - 1))``
    (Horgan et al. 2018, Section 4.1; ``epsilon`` for a single actor)."""
    if actors == 1:
        return epsilon
    return epsilon ** (1.0 + alpha * actor / (actors - 1))


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


def epsilon_greedy_rows(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``epsilon_greedy`` for each row of ``q_values: [N, A]``, drawn in row order -> ``[N]`` int64
    (one actor-learner's ``N`` environments)."""
    return np.array([epsilon_greedy(q, epsilon, rng) for q in q_values], dtype=np.int64)


class EpsilonSchedule:
    """One actor-learner's epsilon: its final value drawn once from ``rng``, then
    ``epsilon_at(T)``. Call it for the current epsilon.

    Args:
        config: a value-based config (``final_epsilons``, ``final_epsilon_probs``,
            ``epsilon_steps``).
        rng: the actor-learner's seeded generator (so a seed fixes every worker's draw).
        counters: the global step counter ``T``.
    """

    def __init__(self, config, rng: np.random.Generator, counters) -> None:
        self.final = sample_final_epsilon(rng, config.final_epsilons, config.final_epsilon_probs)
        self.anneal_steps = config.epsilon_steps
        self.counters = counters

    def __call__(self) -> float:
        return epsilon_at(self.counters.global_step, self.final, self.anneal_steps)
