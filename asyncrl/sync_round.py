"""Synchronous twins of the Hogwild methods: ``--sync`` for a3c, n-step-q, one-step-q and
one-step-sarsa.

Each round every actor-learner computes its gradient on the same theta (and theta^-),
as it would asynchronously; a barrier collects the round's gradients; the actor-learner
that arrives last applies their mean once, with the shared optimizer (clipped to
``--max-grad-norm`` as one update), then refreshes theta^- if ``T`` crossed a multiple of
``I_target`` during the round; then every actor-learner starts the next round. This is
synchronous data-parallel A3C (what OpenAI Baselines calls A2C) on the same code as the
asynchronous methods, so the update discipline is the only difference between the two.

The mean sums the gradients in actor-learner order whoever computes it, and the round's
``T`` and learning rate are those after every actor-learner's steps, so a ``--serial``
run (round-robin: the last actor-learner applies, the others do not wait) and a process
run give the same parameters bit for bit.

No wait is unbounded: a waiting actor-learner returns at the run's stop flag (set by the
trainer when a peer fails or dies, at the target, at the time limit) and raises
``RoundTimeout`` after ``ROUND_TIMEOUT_S``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from asyncrl.metrics import LagMeter
from asyncrl.shared import apply_gradients

ROUND_TIMEOUT_S = 600.0
"""The longest an actor-learner waits at the barrier for its peers' gradients."""

POLL_S = 0.0002
"""Seconds between two looks at the round's generation while waiting."""


def make_round(config: Any, model: torch.nn.Module) -> SyncRound | None:
    """The round of a ``--sync`` run of ``config`` (a ``Config``) over the shared ``model``,
    or None for an asynchronous one."""
    if not config.algo.sync:
        return None
    lock = torch.multiprocessing.get_context(config.run.start_method).Lock()
    return SyncRound(list(model.parameters()), config.run.workers, config.run.serial, lock)


class RoundTimeout(RuntimeError):
    """No round completed within ``ROUND_TIMEOUT_S`` while the run was not stopping."""


class SyncRound:
    """The barrier and gradient slots of a ``--sync`` run, in shared memory.

    Args:
        params: the shared model's parameters (their sizes give the slots').
        workers: actor-learners per round.
        serial: ``--serial``: the actor-learners take turns in one process and never wait.
        lock: a lock of the run's start method (guards the arrival count).
    """

    def __init__(self, params: Sequence[torch.Tensor], workers: int, serial: bool, lock: Any) -> None:
        self.workers = workers
        self.serial = serial
        self.lock = lock
        self.sizes = [p.numel() for p in params]
        self.grads = torch.zeros(workers, sum(self.sizes)).share_memory_()  # [N, P]: one slot per actor-learner
        # (arrivals this round, rounds done, T when the last round ended)
        self.state = torch.zeros(3, dtype=torch.int64).share_memory_()

    @property
    def rounds(self) -> int:
        """Rounds completed (updates applied)."""
        return int(self.state[1])

    @property
    def round_end_step(self) -> int:
        """``T`` when the last round ended (0 before the first): what an actor-learner
        decides by whether to start another round, so that every one of them decides
        alike however fast its peers start the next."""
        return int(self.state[2])

    def push(
        self,
        shared: Any,
        worker_id: int,
        params: Sequence[torch.Tensor],
        counters: Any,
        max_grad_norm: float,
        lr: float | None,
    ) -> None:
        """Hand in actor-learner ``worker_id``'s gradient (``params[i].grad``); the round's
        last applies the mean to ``shared`` (an ``algos.base.SharedState``); the others
        wait for it (not in ``--serial`` mode).

        Raises:
            RoundTimeout: if the round did not complete within ``ROUND_TIMEOUT_S``.
        """
        row, offset = self.grads[worker_id], 0
        for p, n in zip(params, self.sizes):
            if p.grad is None:
                row[offset : offset + n].zero_()
            else:
                row[offset : offset + n].copy_(p.grad.reshape(-1))
            offset += n
        with self.lock:
            state = self.state.numpy()
            state[0] += 1
            last = state[0] == self.workers
            generation = int(state[1])
        if last:
            self._apply(shared, counters, max_grad_norm, lr)
            with self.lock:
                state[0] = 0
                state[2] = counters.global_step
                state[1] += 1
        elif not self.serial:
            self._wait(generation, counters)

    def _apply(self, shared: Any, counters: Any, max_grad_norm: float, lr: float | None) -> None:
        mean = self.grads[0].clone()
        for i in range(1, self.workers):  # in actor-learner order, whoever arrived last
            mean += self.grads[i]
        mean /= self.workers
        params, offset = shared.shared_params, 0
        for p, n in zip(params, self.sizes):
            p.grad = mean[offset : offset + n].view_as(p)
            offset += n
        apply_gradients(params, params, shared.optimizer, max_grad_norm, lr)
        for p in params:
            p.grad = None
        if shared.target is not None:  # theta^- <- theta between rounds, never inside one
            shared.target.maybe_refresh(counters.global_step)

    def _wait(self, generation: int, counters: Any) -> None:
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        state = self.state.numpy()
        while int(state[1]) == generation:
            if counters.stop_requested:
                return
            if time.monotonic() > deadline:
                raise RoundTimeout(
                    f"--sync: round {generation} waited {ROUND_TIMEOUT_S:g} s for its actor-learners' gradients"
                )
            time.sleep(POLL_S)


class _RoundTarget:
    """theta^- as an actor-learner of a ``--sync`` run sees it: its refresh waits for the
    round's end (``SyncRound._apply``)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:  # model, refreshes, interval
        return getattr(self.target, name)

    def maybe_refresh(self, global_step: int) -> bool:
        return False


class RoundCounters:
    """The global counters as an actor-learner of a ``--sync`` run reads them: ``T`` is its
    value when the last round ended, the same for every actor-learner however its peers
    progress within the round (their epsilon schedules, learning rates, episode stamps
    and the decision to start another round); steps and the stop flag go to the run's
    counters.

    Args:
        counters: the run's ``GlobalCounters``.
        sync_round: the run's round.
    """

    def __init__(self, counters: Any, sync_round: SyncRound) -> None:
        self.counters, self.round = counters, sync_round

    def __getattr__(self, name: str) -> Any:  # add, stop_requested, policy_version, ...
        return getattr(self.counters, name)

    @property
    def global_step(self) -> int:
        return max(self.round.round_end_step, self.counters.initial_step)


class SyncMember:
    """Actor-learner ``worker_id``'s view of a ``--sync`` run's shared state
    (``backends.contract.SharedModel``): ``pull`` as usual, ``push`` through the round.

    Args:
        shared: the run's ``algos.base.SharedState`` (its ``round`` set).
        worker_id: the actor-learner's index.
        counters: the run's global counters (``T``, the stop flag).
    """

    def __init__(self, shared: Any, worker_id: int, counters: Any) -> None:
        self.shared, self.worker_id, self.counters = shared, worker_id, counters
        self.target = None if shared.target is None else _RoundTarget(shared.target)
        self.lags = LagMeter()

    def __getattr__(self, name: str) -> Any:  # model, optimizer, shared_params, ...
        return getattr(self.shared, name)

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta`` (theta moves only between rounds)."""
        self.shared.pull(local_params)

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """This actor-learner's part of the round's update (``SyncRound.push``)."""
        self.shared.round.push(self.shared, self.worker_id, params, self.counters, max_grad_norm, lr)
        self.lags.count(0)  # (every gradient of a round is computed on the theta its update is applied to)

    def drain_lags(self) -> dict[int, int]:
        """The policy lags of the pushes since the last call: all 0."""
        return self.lags.drain()
