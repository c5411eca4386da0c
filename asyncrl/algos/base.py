"""What every algorithm provides to the trainer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from asyncrl.metrics import LagCounts, merge_lags
from asyncrl.policy_lag import MeasuredLag
from asyncrl.replay import RateLimiter, SharedReplay
from asyncrl.shared import GlobalCounters, SharedAdam, SharedRMSprop, TargetNetwork, apply_gradients, sync_local
from asyncrl.storage import PolicyStore, RolloutSlots
from asyncrl.sync_round import RoundCounters, SyncMember, SyncRound


@dataclass
class SharedState:
    """Everything the actor-learners share, created in the parent before they start.

    The Hogwild actor-learners reach theta only through ``model`` (to read it, or to build
    their local copy), ``pull`` and ``push`` of their view ``for_worker`` (which also
    measures each push's policy lag, ``drain_lags``); the global step counter ``T`` and the
    stop flag are the ``counters`` they get beside it, and theta^- is ``target``. That is the
    whole backend seam (``asyncrl.backends.contract.SharedModel``): here it is shared memory, and
    ``asyncrl.backends.ray.adapters.RemoteState`` (with ``RemoteCounters`` and
    ``RemoteTarget``) is the same interface served by a Ray parameter server, so an
    algorithm file does not know which backend runs it.

    Attributes:
        model: the global model theta, in shared memory.
        optimizer: the shared optimizer (statistics in shared memory).
        target: the shared target network theta^- of the value-based methods, or None.
        slots: the rollout slots between actors and the learner (A2C, PPO), or None.
        policy: the learner's published policy (A2C, PPO, the off-policy learners; ``model``
            is its weights), or None.
        replay: the shared-memory replay of the off-policy learners, or None.
        rate: their rate limiter between actors and learner, or None.
        round: the barrier of a Hogwild method's synchronous twin (``--sync``), or None.
    """

    model: nn.Module
    optimizer: SharedRMSprop | SharedAdam
    target: TargetNetwork | None = None
    slots: RolloutSlots | None = None
    policy: PolicyStore | None = None
    replay: SharedReplay | None = None
    rate: RateLimiter | None = None
    round: SyncRound | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_shared_params", None)  # per process (rebuilt on first use)
        return state

    @property
    def shared_params(self) -> list[torch.Tensor]:
        """``list(model.parameters())``, built once per process."""
        params = self.__dict__.get("_shared_params")
        if params is None:
            params = self.__dict__["_shared_params"] = list(self.model.parameters())
        return params

    def for_worker(self, worker_id: int, counters: GlobalCounters) -> tuple[Any, Any]:
        """``(shared, counters)`` as actor-learner ``worker_id`` reaches them: this state seen
        through ``policy_lag.MeasuredLag`` (each push's policy lag counted) and ``counters``,
        or with ``--sync`` its ``SyncMember`` (pushes go through the round) and
        ``RoundCounters`` (``T`` as of the last round's end)."""
        if self.round is None:
            return MeasuredLag(self, counters), counters
        return SyncMember(self, worker_id, counters), RoundCounters(counters, self.round)

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta``: copy the shared parameters into an actor-learner's local ones
        (``list(local_model.parameters())``, in ``model``'s order)."""
        sync_local(local_params, self.shared_params)

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """Apply one asynchronous update: ``params[i].grad`` holds ``d theta`` (from ``backward``
        or ``updaters``); clip it to the global L2 norm ``max_grad_norm`` and step the shared
        optimizer on theta, lock-free (Mnih et al. 2016, Algorithm S3, "perform asynchronous
        update of theta using d theta").

        Args:
            params: a local copy theta' (its gradient is handed to theta), or
                ``shared_params`` themselves (one-step methods differentiate theta).
            max_grad_norm: the clipping norm.
            lr: this step's learning rate (``--lr-anneal``), or None for the configured one.
        """
        apply_gradients(params, self.shared_params, self.optimizer, max_grad_norm, lr)


class Worker(Protocol):
    """What runs in one worker process: an actor-learner (acts in its own environment and
    updates the shared model), an actor, or a learner (which adds ``finished()``).

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

    Thread-safe: ``drain`` may run in another thread than ``step`` and ``update`` (the Ray
    learner server reports from its RPC thread while its learner trains in another); each
    statistic lands in exactly one drain.

    Args:
        counters: the global step counter, read once per finished episode to stamp it
            with ``T``.
        num_envs: environments the worker steps (each has its own running episode).
    """

    def __init__(self, counters: GlobalCounters, num_envs: int = 1) -> None:
        self.counters = counters
        self.episode_returns = [0.0] * num_envs
        self.episode_lengths = [0] * num_envs
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.episodes: list[tuple[float, int, int]] = []  # (return, length, T at its end)
        self.loss_sums: dict[str, float] = {}
        self.updates = 0
        self.lags: LagCounts = {}

    def step(self, reward: float, done: bool, env_index: int = 0) -> None:
        """Account one env step of environment ``env_index``; ``done`` ends its episode
        (terminated or truncated)."""
        self.episode_returns[env_index] += float(reward)  # (a NumPy scalar from some envs)
        self.episode_lengths[env_index] += 1
        if done:
            episode = (self.episode_returns[env_index], self.episode_lengths[env_index], self.counters.global_step)
            with self._lock:
                self.episodes.append(episode)
            self.episode_returns[env_index] = 0.0
            self.episode_lengths[env_index] = 0

    def update(self, metrics: dict[str, float]) -> None:
        """Account one update's loss metrics."""
        with self._lock:
            self.updates += 1
            for name, value in metrics.items():
                self.loss_sums[name] = self.loss_sums.get(name, 0.0) + value

    def record_lags(self, lags: Sequence[int]) -> None:
        """Count policy lags, in updates of theta (the batched learner: one per rollout)."""
        with self._lock:
            merge_lags(self.lags, lags)

    def drain(self) -> dict[str, Any]:
        """The episodes, loss sums, update count and policy-lag counts (``{lag: n}``) since
        the last drain."""
        with self._lock:
            out = {"episodes": self.episodes, "loss_sums": self.loss_sums, "updates": self.updates, "lags": self.lags}
            self._reset()
        return out


def _envs(learner: Any) -> list:
    envs = getattr(learner, "envs", None)
    if envs is None:
        envs = [] if learner.env is None else [learner.env]
    return envs


def rng_state(learner: Any) -> dict[str, Any]:
    """The random state of an actor-learner (or actor, or learner): its generator and
    its environments'."""
    return {
        "rng": learner.rng.bit_generator.state,
        "envs": [env.unwrapped.np_random.bit_generator.state for env in _envs(learner)],
    }


def set_rng_state(learner: Any, state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (after the environments' first reset)."""
    learner.rng.bit_generator.state = state["rng"]
    for env, env_state in zip(_envs(learner), state["envs"]):
        env.unwrapped.np_random.bit_generator.state = env_state
