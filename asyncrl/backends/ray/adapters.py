"""What an actor-learner or actor on a Ray node sees: the shared state's interface
(``asyncrl.backends.contract``), served by the driver's parameter server or learner server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from asyncrl.algos.base import SharedState
from asyncrl.metrics import LagCounts, LagMeter
from asyncrl.shared import clip_gradients

SERVER_TIMEOUT_S = 30.0
"""Seconds the driver or an actor waits for one answer of the server before calling it lost."""


# -- what an actor-learner sees: the seam of algos.base.SharedState, served remotely ----------


class RemoteCounters:
    """What the algorithms use of ``shared.GlobalCounters``, on a Ray actor-learner or actor:
    ``add``, ``global_step`` (the server's count at the last answer plus this actor's env
    steps since) and ``stop_requested`` (the server's flag, as of the last answer). No parent
    to watch: Ray ends the actors of a driver that is gone."""

    def __init__(self) -> None:
        self.server_step = 0
        self.pending_steps = 0  # env steps taken since the last answer (the next push carries them)
        self.version = 0
        self.stop = False

    def add(self, worker_id: int, env_steps: int, updates: int = 1) -> None:
        """Record ``env_steps`` env steps (updates are counted by the server, one per push)."""
        self.pending_steps += env_steps

    def receive(self, reply: dict[str, Any], sent_steps: int = 0) -> None:
        """Take a server answer's ``T``, version and stop flag; ``sent_steps``: the pending env
        steps that the call answered carried (now in the server's ``T``)."""
        self.server_step = reply["global_step"]
        self.pending_steps -= sent_steps
        self.version, self.stop = reply["version"], reply["stop"]

    @property
    def global_step(self) -> int:
        """``T`` as this actor-learner knows it (env steps summed over all workers)."""
        return self.server_step + self.pending_steps

    @property
    def stop_requested(self) -> bool:
        return self.stop


class RemoteTarget:
    """``shared.TargetNetwork``'s interface on a Ray actor-learner: a replica of theta^- that
    follows the server's.

    Args:
        model: the replica (a copy of the online model).
        server: the parameter server's handle.
        interval: ``I_target`` in global env steps.
    """

    def __init__(self, model: torch.nn.Module, server: Any, interval: int) -> None:
        self.model = model
        self.server = server
        self.interval = int(interval)
        self.refreshes = 0
        self._views = [p.detach().numpy() for p in model.parameters()]

    def receive(self, refreshes: int, params: list[np.ndarray] | None) -> None:
        """Take the server's theta^- (``params``, or None if unchanged) after its refresh number ``refreshes``."""
        if params is not None:
            _assign(self._views, params)
            self.refreshes = refreshes

    def maybe_refresh(self, global_step: int) -> bool:
        """Ask the server for ``theta^- <- theta`` once ``T`` crosses a multiple of ``I_target``
        (the server copies once per multiple, whoever asks first); returns whether this call
        asked."""
        due = global_step // self.interval
        if due <= self.refreshes:
            return False
        self.receive(*_answer(self.server.refresh_target.remote(due)))
        return True


class RemoteState(SharedState):
    """``algos.base.SharedState``'s seam served by the parameter server: ``model`` is a replica
    of theta, ``pull`` copies it into a local model, ``push`` sends the gradient and takes
    theta back.

    Args:
        model: the replica of theta (a fresh model of the algorithm's architecture).
        server: the parameter server's handle.
        counters: this actor-learner's ``RemoteCounters``.
        worker_id: its slot of the server's step counts.
        target: a ``RemoteTarget`` for the value-based methods, else None.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        server: Any,
        counters: RemoteCounters,
        worker_id: int,
        target: RemoteTarget | None = None,
    ) -> None:
        super().__init__(model=model, optimizer=None, target=target)
        self.server, self.counters, self.worker_id = server, counters, worker_id
        self._views = [p.detach().numpy() for p in self.shared_params]
        self.lags = LagMeter()  # the policy lag of each push since the last report

    def receive(self, reply: dict[str, Any]) -> None:
        """Take a server answer: theta into the replica, ``T``, the version, the stop flag, theta^-."""
        _assign(self._views, reply["params"])
        self.counters.receive(reply, self.counters.pending_steps)  # (every call carries all pending steps)
        if self.target is not None:
            self.target.receive(reply["target_refreshes"], reply["target"])

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta``: the replica, as the server sent it with its last answer."""
        with torch.no_grad():
            torch._foreach_copy_(local_params, self.shared_params)

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """Clip ``params[i].grad`` to ``max_grad_norm``, send it with the env steps taken since
        the last push, and take the server's answer (theta after this update). Blocks for
        one round trip to the server."""
        clip_gradients(params, max_grad_norm)
        grads = [p.grad.numpy() for p in params]
        reply, lag = _answer(
            self.server.push.remote(
                self.worker_id, grads, self.counters.version, self.counters.pending_steps, lr, self._known_refreshes()
            )
        )
        self.lags.count(lag)
        self.receive(reply)

    def drain_lags(self) -> LagCounts:
        """The policy lags of the pushes since the last call, as the server measured them
        (its version when the gradient arrived minus the version it was computed from)."""
        return self.lags.drain()

    def flush(self) -> None:
        """Send the env steps taken since the last push (at the end of a chunk)."""
        if self.counters.pending_steps:
            self.receive(
                _answer(
                    self.server.add_steps.remote(self.worker_id, self.counters.pending_steps, self._known_refreshes())
                )
            )

    def _known_refreshes(self) -> int:
        return self.target.refreshes if self.target is not None else 0


class RemoteSlots:
    """``storage.RolloutSlots``' actor side, served by the ``LearnerServer``: the slots themselves
    live in the learner's process; an actor acquires one of its own, and its commit carries
    the rollout (NumPy arrays) and the env steps taken since the last commit.

    Args:
        server: the learner server's handle.
        counters: this actor's ``RemoteCounters`` (each answer updates ``T`` and the stop flag).
        worker_id: the actor's id (its slots).
        unroll_length: ``--unroll-length``.
    """

    def __init__(self, server: Any, counters: RemoteCounters, worker_id: int, unroll_length: int) -> None:
        self.server, self.counters, self.worker_id, self.unroll_length = server, counters, worker_id, unroll_length

    def acquire(self, worker_id: int, timeout: float) -> int | None:
        """One of this actor's free slots, waiting up to ``timeout`` s in the learner's process."""
        index, reply = _answer(self.server.acquire.remote(worker_id, timeout))
        self.counters.receive(reply)
        return index

    def commit(
        self, index: int, rollout: dict[str, np.ndarray], policy_version: int, stats: np.ndarray | None = None
    ) -> None:
        steps = self.counters.pending_steps
        self.counters.receive(
            _answer(self.server.commit.remote(self.worker_id, index, rollout, policy_version, stats, steps)), steps
        )

    def abandon(self, index: int) -> None:
        _answer(self.server.abandon.remote(index))


class RemotePolicyStore:
    """``storage.PolicyStore``'s reader side, served by the ``LearnerServer``: ``read`` fetches
    the newest complete publication into the replica ``model`` (its ``state_dict`` values,
    the normalisation statistics included), then runs ``copy_fn``."""

    def __init__(self, server: Any, model: torch.nn.Module) -> None:
        self.server = server
        self._views = [t.numpy() for t in model.state_dict().values()]

    @property
    def version(self) -> int:
        """The learner's completed publications."""
        return _answer(self.server.policy_version.remote())

    def read(self, copy_fn: Callable[[], None], should_stop: Callable[[], bool] = lambda: False) -> int | None:
        version, arrays = _answer(self.server.policy.remote())
        _assign(self._views, arrays)
        copy_fn()
        return version


def _answer(ref: Any) -> Any:
    """``ray.get(ref)`` of an actor's call to the server, waiting at most ``SERVER_TIMEOUT_S``
    (``GetTimeoutError`` then: the actor's chunk fails, and the driver decides)."""
    import ray

    return ray.get(ref, timeout=SERVER_TIMEOUT_S)


def _assign(views: list[np.ndarray], arrays: list[np.ndarray]) -> None:
    """Copy ``arrays`` (read-only views from Ray's object store) into ``views``, in place."""
    for view, array in zip(views, arrays):
        np.copyto(view, array)
