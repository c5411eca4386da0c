"""What every algorithm provides to the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from asyncrl.shared import GlobalCounters, TargetNetwork


@dataclass
class SharedState:
    """Everything the actor-learners share, created in the parent before they start.

    Attributes:
        model: the global model theta, in shared memory.
        optimizer: the shared optimizer (statistics in shared memory).
        target: the shared target network theta^- of the value-based methods, or None.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    target: TargetNetwork | None = None


class ActorLearner(Protocol):
    """One actor-learner: acts in its own environment and updates the shared model.

    Attributes:
        rng: its ``np.random.Generator`` (action sampling, exploration).
        env: its Gymnasium environment.
    """

    rng: np.random.Generator
    env: Any

    def update(self) -> int:
        """Act for up to one segment, apply one update to the shared model.

        Returns:
            env steps taken (also added to the global step counter ``T``).
        """

    def drain_stats(self) -> dict[str, Any]:
        """Statistics since the last call: ``episodes`` (list of ``(return, length, T)``),
        ``loss_sums`` (name to sum over updates) and ``updates`` (count)."""

    def close(self) -> None:
        """Release the environment."""


class WorkerStats:
    """Per-worker statistics buffered between two reports to the trainer.

    Args:
        counters: the global step counter, read once per finished episode to stamp it
            with ``T``.
    """

    def __init__(self, counters: GlobalCounters) -> None:
        self.counters = counters
        self.episode_return = 0.0
        self.episode_length = 0
        self._reset()

    def _reset(self) -> None:
        self.episodes: list[tuple[float, int, int]] = []  # (return, length, T at its end)
        self.loss_sums: dict[str, float] = {}
        self.updates = 0

    def step(self, reward: float, done: bool) -> None:
        """Account one env step; ``done`` ends the episode (terminated or truncated)."""
        self.episode_return += reward
        self.episode_length += 1
        if done:
            self.episodes.append((self.episode_return, self.episode_length, self.counters.global_step))
            self.episode_return = 0.0
            self.episode_length = 0

    def update(self, metrics: dict[str, float]) -> None:
        """Account one update's loss metrics."""
        self.updates += 1
        for name, value in metrics.items():
            self.loss_sums[name] = self.loss_sums.get(name, 0.0) + value

    def drain(self) -> dict[str, Any]:
        out = {"episodes": self.episodes, "loss_sums": self.loss_sums, "updates": self.updates}
        self._reset()
        return out


def rng_state(learner: ActorLearner) -> dict[str, Any]:
    """The random state of an actor-learner: its generator and its environment's."""
    return {"rng": learner.rng.bit_generator.state,
            "env": learner.env.unwrapped.np_random.bit_generator.state}


def set_rng_state(learner: ActorLearner, state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (after the environment's first reset)."""
    learner.rng.bit_generator.state = state["rng"]
    learner.env.unwrapped.np_random.bit_generator.state = state["env"]
