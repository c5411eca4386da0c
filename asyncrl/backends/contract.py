"""The backend contract: what an algorithm's workers and the trainer may ask of a backend.

An algorithm reaches the shared state only through these interfaces, whichever backend
holds it: ``shm`` implements them in shared memory (``algos.base.SharedState``,
``shared.GlobalCounters``, ``shared.TargetNetwork``, ``storage.RolloutSlots``,
``policy_lag.MeasuredLag`` (an actor-learner's view of ``algos.base.SharedState``: its
``for_worker``; ``sync_round.SyncMember`` with ``--sync``, ``policy_lag.LaggedModel`` with
``--policy-lag``),
``storage.PolicyStore``, ``supervisor.Supervisor``), ``ray`` through a server
(``backends.ray.adapters``: ``RemoteState``, ``RemoteCounters``, ``RemoteTarget``,
``RemoteSlots``, ``RemotePolicyStore``; ``backends.ray.driver.RaySupervisor``).
``tests/test_backends.py`` checks both against these Protocols, member by member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class StepCounter(Protocol):
    """The global step counter ``T`` (env steps, all workers) and the stop flag."""

    def add(self, worker_id: int, env_steps: int, updates: int = 1) -> None:
        """Count ``env_steps`` env steps and ``updates`` optimizer updates of ``worker_id``."""

    @property
    def global_step(self) -> int:
        """``T``: env steps summed over all workers."""

    @property
    def stop_requested(self) -> bool:
        """Whether the run is stopping (every wait loop checks it)."""


@runtime_checkable
class Target(Protocol):
    """The target network theta^- of the value-based methods."""

    model: nn.Module

    def maybe_refresh(self, global_step: int) -> bool:
        """``theta^- <- theta`` if ``T`` crossed a multiple of ``I_target`` since the last
        refresh; whether this call refreshed it."""


@runtime_checkable
class SharedModel(Protocol):
    """What a Hogwild actor-learner asks of the global model theta (Mnih et al. 2016)."""

    model: nn.Module
    target: Any  # a Target, or None for the actor-critics

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta`` into an actor-learner's local parameters."""

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """Apply one asynchronous update: ``params[i].grad`` holds ``d theta``, clipped to
        ``max_grad_norm``; ``lr`` replaces the configured rate for this step."""

    def drain_lags(self) -> dict[int, int]:
        """The policy lag of each update pushed since the last call, ``{lag: updates}``: the
        updates of theta between the theta the gradient was computed from and its own."""


@runtime_checkable
class RolloutWriter(Protocol):
    """An actor's side of the batched learner's rollout slots."""

    def acquire(self, worker_id: int, timeout: float) -> int | None:
        """A free slot of ``worker_id`` for writing, or None after ``timeout`` seconds."""

    def commit(
        self, index: int, rollout: dict[str, np.ndarray], policy_version: int, stats: np.ndarray | None = None
    ) -> None:
        """Hand one rollout to the learner, recorded as acted with ``policy_version``."""

    def abandon(self, index: int) -> None:
        """Give back an acquired slot without a rollout (a stop came first)."""


@runtime_checkable
class PolicyReader(Protocol):
    """An actor's side of the learner's published policy."""

    @property
    def version(self) -> int:
        """Completed publications (the learner's ``policy_version``)."""

    def read(self, copy_fn: Callable[[], None], should_stop: Callable[[], bool] = ...) -> int | None:
        """Copy the newest complete publication with ``copy_fn``; its version, or None if
        ``should_stop`` became true first."""


@runtime_checkable
class Supervisor(Protocol):
    """The trainer's side: starts the workers, relays their reports and failures."""

    def start(self, make_config: Callable[[], Any], restore_rng: dict[int, dict[str, Any]]) -> list[int]:
        """Start every worker; the local pids to watch (CPU and memory)."""

    def replace(self, worker_id: int, config: Any) -> int | None:
        """Start a fresh worker in a failed one's place; its local pid, if it has one."""

    def poll(
        self,
        timeout: float,
        on_stats: Callable[[int, dict[str, Any]], None],
        on_failure: Callable[[int, str, str | None], None],
    ) -> None:
        """Relay the reports that arrived (waiting up to ``timeout`` s) and any failure."""

    def sync_state(self) -> bool:
        """Bring the trainer's copy of the shared state up to date (for a checkpoint);
        whether it is consistent."""

    def running(self) -> bool:
        """Whether any worker is still running."""

    @property
    def all_done(self) -> bool:
        """Whether every worker has finished."""

    @property
    def actors_done(self) -> bool:
        """Whether every actor (not the learner) has finished."""

    def alive(self, worker_id: int) -> bool:
        """Whether worker ``worker_id`` is running."""

    def workers_alive(self) -> int:
        """Workers running now."""

    def stop(self, on_stats: Callable[[int, dict[str, Any]], None]) -> None:
        """Stop every worker, relaying their last reports; leaves no process behind."""

    def summary(self) -> dict[str, Any]:
        """What the run's ``summary.json`` records about the backend (placement, ...)."""
