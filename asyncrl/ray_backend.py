"""The Ray backend (``--backend ray``): the Hogwild algorithms and the batched learner across
the nodes of a Ray cluster.

One **parameter server** (a Ray actor on the driver's node) holds theta, the shared
optimizer's statistics, theta^- and the global step counter ``T``. Each **actor-learner**
is a Ray actor with one CPU, on any node: it keeps a replica of theta, computes its
gradient as on shared memory, and pushes it; the server applies each gradient on
arrival, in arrival order, without waiting for the others (the asynchronous updates of
Mnih et al. 2016, Section 4, across machines) and answers with theta as it is then, which
becomes the replica that the actor-learner's next segment starts from (``theta' <-
theta``). Gradients and parameters travel as NumPy arrays (inline in Ray's RPCs up to 8 MiB
on a local instance, else through its object store).

The actor-learners are the algorithm files' own (``AlgoSpec.actor``): they see a
``RemoteState`` (``pull``/``push``/``model``/``target``) and ``RemoteCounters`` (``T``, the
stop flag), the same interface as ``algos.base.SharedState`` and ``shared.GlobalCounters``.
Differences from shared memory, all bounded by one segment:

- ``T`` as an actor-learner reads it is the server's count at its last push plus its own
  env steps since; the server's count is exact. The target network ``theta^-`` is refreshed
  on the server when an actor-learner's ``T`` crosses a multiple of ``I_target`` (the first
  to see it asks, as on shared memory), and every actor-learner fetches the new one with
  its next push.
- One-step Q and Sarsa act with the replica of theta from their last push (on shared
  memory they read theta itself).
- The policy lag of an update (the server's version when the gradient arrives minus the
  version it was computed from) is measured and logged (``policy_lag`` in ``metrics.csv``).

The batched learner (A2C, PPO, REINFORCE) runs as one Ray actor, the ``LearnerServer``: the
rollout slots and the published policy live in its process (``storage.RolloutSlots`` and
``PolicyStore``, as on shared memory), the algorithm's learner trains in a thread, and the
algorithm's ``Actor`` on any node sees ``RemoteSlots`` and ``RemotePolicyStore`` (the slots'
actor side: acquire, commit a rollout, abandon; the policy's reader side). ``--sync`` keeps
its lockstep: an actor waits for a free slot inside the learner's process.

The driver (``RaySupervisor``, in the trainer's process) runs every actor-learner in
chunks of ``REPORT_INTERVAL_S`` (each chunk returns its statistics report), copies ``T``
from the server, replaces actor-learners that die (their process, or their node), and
takes the server's state for every checkpoint. Losing the server (the parameter server or
the learner) stops the run; its last checkpoint stays, and ``--resume`` continues from it.
Every call an actor makes to the server waits at most ``SERVER_TIMEOUT_S``.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from asyncrl import registry
from asyncrl.algos.base import SharedState, rng_state, set_rng_state
from asyncrl.checkpoint import restore_shared
from asyncrl.config import Config
from asyncrl.shared import GlobalCounters, clip_gradients
from asyncrl.supervisor import JOIN_TIMEOUT_S, PARAMETER_SERVER, REPORT_INTERVAL_S

SERVER_TIMEOUT_S = 30.0
"""Seconds the driver or an actor waits for one answer of the server before calling it lost."""

WORKER_SILENT_S = 120.0
"""Seconds a started actor-learner may go without a report, and (an actor of the batched
learner) without calling the learner server, before the driver counts it as failed; waiting
for a free slot calls the server every ``SLOT_WAIT_S``, so a slow learner is not silence."""

PLACEMENT_S = 120.0
"""Seconds an actor-learner may take to be placed on a node and start (for want of a free
CPU, say) before the driver counts it as failed."""

COUNTS_INTERVAL_S = 0.1
"""Seconds between two copies of the server's step counts into the driver's ``T``."""


class RayBackendError(ValueError):
    """A ``--backend ray`` run that cannot start: Ray missing, an algorithm it does not run,
    a cluster that cannot be reached or is too small."""


def import_ray():
    """``import ray``, or a one-line ``RayBackendError`` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayBackendError("--backend ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def check_backend(config: Config) -> None:
    """Check that ``--backend ray`` can run ``config`` (before anything starts).

    Raises:
        RayBackendError: if Ray is not installed or the algorithm is not a Hogwild one.
    """
    if config.run.backend != "ray":
        return
    if "ray" not in registry.get(config.run.algo).backends:
        raise RayBackendError(
            f"--backend ray runs {', '.join(registry.names(lambda s: 'ray' in s.backends))}; "
            f"--algo {config.run.algo} runs on --backend shm"
        )
    if getattr(config.algo, "learner_device", "cpu") != "cpu":
        raise RayBackendError("--backend ray runs the learner on a CPU; --learner-device needs --backend shm")
    import_ray()


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
        self.lag_sum = 0  # policy lag summed over the pushes since the last report

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
        self.lag_sum += lag
        self.receive(reply)

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


# -- the two kinds of Ray actor ------------------------------------------------------


def state_payload(shared: SharedState, policy_version: int) -> dict[str, Any]:
    """A ``SharedState``'s model, optimizer statistics and target network, as a checkpoint
    holds them (``checkpoint.restore_shared`` reads it back), copied."""
    target = shared.target
    return copy.deepcopy(
        {
            "model": shared.model.state_dict(),
            "optimizer": shared.optimizer.state_dict(),
            "target_model": target.model.state_dict() if target is not None else None,
            "target_refreshes": target.refreshes if target is not None else None,
            "policy_version": int(policy_version),
        }
    )


class ParameterServer:
    """theta, the shared optimizer's statistics, theta^- and ``T``, in one Ray actor.

    Applies each pushed gradient when it arrives (Ray runs an actor's calls one at a time,
    in arrival order), with the algorithm's own shared optimizer (``SharedRMSprop`` or
    ``SharedAdam``: the same step as on shared memory, here in one process).

    Args:
        config: the run's configuration.
        obs, action: the environment's ``ObsSpec`` and ``ActionSpec``.
        state: ``state_payload`` of the driver's state (fresh, or restored from a checkpoint).
        initial_step: ``T`` before this run (a resumed run's).
        slots: per-worker step counters (``--workers``).
    """

    def __init__(self, config: Config, obs, action, state: dict[str, Any], initial_step: int, slots: int) -> None:
        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
        self.shared = registry.get(config.run.algo).make_shared(config, obs, action)
        restore_shared(self.shared, state, "the driver's state")
        self.params = self.shared.shared_params
        self.views = [p.detach().numpy() for p in self.params]
        grads = [torch.zeros_like(p) for p in self.params]
        for p, g in zip(self.params, grads):
            p.grad = g  # the optimizer reads .grad; each push copies its gradient in
        self.grad_views = [g.numpy() for g in grads]
        self.target = self.shared.target
        self.target_views = (
            [p.detach().numpy() for p in self.target.model.parameters()] if self.target is not None else None
        )
        # T, the version (updates applied to theta) and the stop flag, as on shared memory
        self.counters = GlobalCounters(slots, initial_step=initial_step, initial_updates=state["policy_version"])
        self.lr = self.shared.optimizer.param_groups[0]["lr"]

    def _reply(self, known_refreshes: int) -> dict[str, Any]:
        target_refreshes = self.target.refreshes if self.target is not None else 0
        counters = self.counters
        return {
            "params": self.views,
            "version": counters.policy_version,
            "stop": counters.stop_requested,
            "global_step": counters.global_step,
            "target_refreshes": target_refreshes,
            "target": self.target_views if self.target is not None and target_refreshes != known_refreshes else None,
        }

    def pull(self) -> dict[str, Any]:
        """theta, theta^-, ``T``, the version and the stop flag (an actor-learner's first answer)."""
        return self._reply(-1)

    def push(
        self,
        worker_id: int,
        grads: list[np.ndarray],
        version: int,
        env_steps: int,
        lr: float | None,
        known_refreshes: int,
    ) -> tuple[dict[str, Any], int]:
        """Apply one actor-learner's clipped gradient ``grads`` (computed from theta of
        ``version``) and add its ``env_steps``; returns ``(answer, policy lag)``."""
        for view, grad in zip(self.grad_views, grads):
            np.copyto(view, grad)
        self.shared.optimizer.param_groups[0]["lr"] = self.lr if lr is None else lr
        self.shared.optimizer.step()
        lag = self.counters.policy_version - int(version)
        self.counters.add(worker_id, env_steps, updates=1)
        return self._reply(known_refreshes), lag

    def add_steps(self, worker_id: int, env_steps: int, known_refreshes: int) -> dict[str, Any]:
        """Add env steps taken without an update (the end of a chunk)."""
        self.counters.add(worker_id, env_steps, updates=0)
        return self._reply(known_refreshes)

    def refresh_target(self, due: int) -> tuple[int, list[np.ndarray]]:
        """``theta^- <- theta`` if refresh ``due`` (``T // I_target``) has not been made; returns
        ``(refreshes, theta^-)``."""
        self.target.maybe_refresh(due * self.target.interval)
        return self.target.refreshes, self.target_views

    def counts(self) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
        """Env steps and updates per worker slot, this run, and no waiting actors (an
        actor-learner's every call here returns within ``SERVER_TIMEOUT_S``)."""
        return self.counters.steps.copy(), self.counters.updates.copy(), {}

    def request_stop(self) -> None:
        self.counters.request_stop()

    def state(self) -> dict[str, Any]:
        """``state_payload`` of theta, the optimizer statistics and theta^-, with the step counts."""
        steps, updates, _ = self.counts()
        return {**state_payload(self.shared, self.counters.policy_version), "steps": steps, "updates": updates}

    def pid(self) -> int:
        return os.getpid()


class LearnerServer:
    """The batched learner (A2C, PPO, REINFORCE) as one Ray actor: the rollout slots and the
    published policy in its own shared memory, the algorithm's own learner in a thread,
    and the actors' side of both served to actors on any node (a threaded actor: calls are
    answered while the learner trains, and an actor waiting for a free slot waits here).

    Args:
        config: the run's configuration.
        obs, action: the environment's spaces.
        state: ``state_payload`` of the driver's state.
        initial_step: ``T`` before this run.
        slots: per-worker step counters (``--workers`` + 1, the learner's last).
    """

    def __init__(self, config: Config, obs, action, state: dict[str, Any], initial_step: int, slots: int) -> None:
        import threading

        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
        algo = registry.get(config.run.algo)
        self.shared = algo.make_shared(config, obs, action)
        restore_shared(self.shared, state, "the driver's state")
        self.counters = GlobalCounters(slots, initial_step=initial_step, initial_updates=state["policy_version"])
        self.learner = algo.learner(config.run.workers, config, self.shared, self.counters)
        self._tensors = list(self.shared.model.state_dict().values())
        self.error: str | None = None
        self.done = False
        self._heard: dict[int, float] = {}  # worker id -> when it last called acquire or commit
        self._thread = threading.Thread(target=self._train, name="asyncrl-learner", daemon=True)
        self._thread.start()

    def _train(self) -> None:
        try:
            while not self.counters.stop_requested and not self.learner.finished():
                self.learner.update()
        except Exception:
            self.error = traceback.format_exc()
        finally:
            self.done = True

    def _reply(self) -> dict[str, Any]:
        return {
            "global_step": self.counters.global_step,
            "version": self.shared.policy.version,
            "stop": self.counters.stop_requested,
        }

    def hello(self, worker_id: int | None = None) -> dict[str, Any]:
        """``T``, the policy version and the stop flag (an actor's first answer, once it has
        started)."""
        if worker_id is not None:
            self._heard[worker_id] = time.monotonic()
        return self._reply()

    def acquire(self, worker_id: int, timeout: float) -> tuple[int | None, dict[str, Any]]:
        self._heard[worker_id] = time.monotonic()  # waiting on the learner is a sign of life
        index = self.shared.slots.acquire(worker_id, timeout)
        self._heard[worker_id] = time.monotonic()
        return index, self._reply()

    def commit(
        self,
        worker_id: int,
        index: int,
        rollout: dict[str, np.ndarray],
        policy_version: int,
        stats: np.ndarray | None,
        env_steps: int,
    ) -> dict[str, Any]:
        self._heard[worker_id] = time.monotonic()
        self.shared.slots.commit(index, rollout, policy_version, stats)
        self.counters.add(worker_id, env_steps, updates=0)
        return self._reply()

    def abandon(self, index: int) -> None:
        self.shared.slots.abandon(index)

    def reclaim(self, worker_id: int) -> int:
        """Free the slots a lost actor was writing (before its replacement starts)."""
        return self.shared.slots.reclaim(worker_id)

    def policy_version(self) -> int:
        return self.shared.policy.version

    def policy(self) -> tuple[int, list[np.ndarray]]:
        """The newest complete publication: ``(version, state_dict values as arrays)``."""
        out: list[np.ndarray] = []
        version = self.shared.policy.read(
            lambda: out.__setitem__(slice(None), [t.numpy().copy() for t in self._tensors])
        )
        return version, out

    def report(self) -> dict[str, Any]:
        """The learner's statistics since the last call, whether it is done, and its error."""
        stats = {**self.learner.drain_stats(), "rng": rng_state(self.learner)}
        return {"report": stats, "finished": self.done and self.error is None, "error": self.error}

    def counts(self) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
        """Env steps and updates per worker slot, and the seconds since each actor last
        called ``acquire`` or ``commit`` (an actor waiting for a free slot calls ``acquire``
        every ``SLOT_WAIT_S``, however long the learner's update takes)."""
        now = time.monotonic()
        return (
            self.counters.steps.copy(),
            self.counters.updates.copy(),
            {worker_id: now - heard for worker_id, heard in list(self._heard.items())},
        )

    def request_stop(self) -> None:
        self.counters.request_stop()

    def state(self) -> dict[str, Any]:
        """The last complete publication's model and optimizer statistics, with the counts."""
        from asyncrl.checkpoint import snapshot_shared

        model, optimizer = snapshot_shared(self.shared, lambda: True)
        return {
            "model": model,
            "optimizer": optimizer,
            "target_model": None,
            "target_refreshes": None,
            "policy_version": self.shared.policy.version,
            "steps": self.counters.steps.copy(),
            "updates": self.counters.updates.copy(),
        }

    def pid(self) -> int:
        return os.getpid()


def remote_actor_learner(worker_id: int, config: Config, obs, action, server: Any):
    """The algorithm's own actor-learner (or actor) on a ``RemoteState`` of ``server`` (a parameter
    server's handle): its replica of theta (and theta^-) as the server has them now.

    Returns:
        ``(actor_learner, remote_state, remote_counters)``.
    """
    algo = registry.get(config.run.algo)
    model = algo.build_model(config, obs, action)
    counters = RemoteCounters()
    if algo.learner is not None:  # an actor of the batched learner: slots and policy served by it
        state = SharedState(
            model=model,
            optimizer=None,
            slots=RemoteSlots(server, counters, worker_id, config.algo.unroll_length),
            policy=RemotePolicyStore(server, model),
        )
        counters.receive(_answer(server.hello.remote(worker_id)))
        return algo.actor(worker_id, config, state, counters), state, counters
    reply = _answer(server.pull.remote())
    target = (
        RemoteTarget(copy.deepcopy(model), server, config.algo.target_update) if reply["target"] is not None else None
    )
    state = RemoteState(model, server, counters, worker_id, target)
    state.receive(reply)
    return algo.actor(worker_id, config, state, counters), state, counters


class ActorLearnerActor:
    """One actor-learner (or actor) as a Ray actor: the algorithm's own on a ``RemoteState``.

    Args:
        worker_id: its slot (seeds ``seed + worker_id``, as on shared memory).
        config, obs, action: the run's configuration and spaces.
        server: the parameter server's handle.
        restore_rng: a resumed worker's random state, or None.

    Raises:
        EnvError: if its environment cannot be made here (the driver sees the actor die).
    """

    def __init__(
        self, worker_id: int, config: Config, obs, action, server: Any, restore_rng: dict[str, Any] | None
    ) -> None:
        import ray

        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
        self.placement = {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self.learner = None
        self.error: str | None = None
        try:
            self._start(worker_id, config, obs, action, server, restore_rng)
        except Exception:  # reported by the first run(), with the traceback of a failure on shared memory
            self.error = traceback.format_exc()

    def _start(self, worker_id, config, obs, action, server, restore_rng) -> None:
        self.learner, self.state, self.counters = remote_actor_learner(worker_id, config, obs, action, server)
        if restore_rng is not None:
            set_rng_state(self.learner, restore_rng)
        self.total_steps = config.run.total_steps

    def run(self, seconds: float) -> dict[str, Any]:
        """Update for about ``seconds`` (at least once), or until told to stop or ``T`` reaches
        ``--total-steps``.

        Returns:
            ``report``: the statistics report (as ``supervisor.report``, with the policy lag
            summed over its updates); ``finished``: whether this actor-learner is done;
            ``placement``: where it runs (node id, host, pid); ``error``: the traceback of
            an exception it raised (then the other entries are None), else None.
        """
        if self.error is not None:
            return {"report": None, "finished": None, "placement": self.placement, "error": self.error}
        learner, counters = self.learner, self.counters
        try:
            deadline = time.monotonic() + seconds
            while not counters.stop_requested and counters.global_step < self.total_steps:
                learner.update()
                if time.monotonic() >= deadline:
                    break
            hogwild = isinstance(self.state, RemoteState)  # (a batched learner's actor sends steps with its rollouts)
            if hogwild:
                self.state.flush()
            stats = {**learner.drain_stats(), "rng": rng_state(learner)}
        except Exception:
            self.error = traceback.format_exc()
            return self.run(0.0)
        if hogwild and stats["updates"]:
            stats["loss_sums"]["policy_lag"] = float(self.state.lag_sum)
            self.state.lag_sum = 0
        finished = counters.stop_requested or counters.global_step >= self.total_steps
        return {"report": stats, "finished": finished, "placement": self.placement, "error": None}


# -- the driver's side ----------------------------------------------------------------


def connect(address: str | None, workers: int) -> tuple[bool, float]:
    """Start a local Ray instance (``address`` None: one CPU per worker, however many cores
    there are) or join the cluster at ``address``.

    Returns:
        ``(started_here, CPUs of the cluster)``.

    Raises:
        RayBackendError: if the cluster cannot be reached, or has fewer CPUs than ``workers``.
    """
    ray = import_ray()
    if ray.is_initialized():
        started = False
    else:
        options = dict(logging_level=logging.ERROR, log_to_driver=False)
        if address is not None:
            address = reachable_address(address)
        try:
            if address is None:
                # Arguments and answers up to 8 MiB (theta and d theta of the paper's CNN) travel
                # inline in Ray's RPCs instead of through the object store: measured 20% less
                # time per push for the MinAtar CNN (0.5 MB) here.
                ray.init(
                    address="local",  # a new instance, even where `ray start` runs one
                    num_cpus=max(os.cpu_count() or 1, workers),
                    include_dashboard=False,
                    _system_config={"max_direct_call_object_size": 8 << 20, "task_rpc_inlined_bytes_limit": 64 << 20},
                    **options,
                )
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address is None:
                raise RayBackendError(f"cannot start a local Ray instance: {_first_line(exc)}") from None
            raise RayBackendError(
                f"--address {address}: cannot join the Ray cluster: {_first_line(exc)} (this shell's RAY_AUTH_MODE is "
                f"{os.environ.get('RAY_AUTH_MODE', 'unset')}: it must match the cluster's, e.g. RAY_AUTH_MODE=token "
                "where `ray start` enabled token authentication)"
            ) from None
        started = address is None
    cpus = float(ray.cluster_resources().get("CPU", 0))
    if cpus < workers:
        if started:
            ray.shutdown()
        raise RayBackendError(
            f"--workers {workers} needs {workers} CPUs of the Ray cluster (one per actor-learner); "
            f"it has {cpus:g} (`ray status` lists them)"
        )
    return started, cpus


def reachable_address(address: str) -> str:
    """``HOST:PORT`` of the cluster that ``--address`` names (``auto``: the one ``ray start``
    made on this node, or ``RAY_ADDRESS``), once a TCP connection to it succeeds within
    ``SERVER_TIMEOUT_S`` (``ray.init`` itself retries an unreachable address for minutes).

    Raises:
        RayBackendError: if no cluster is found or it does not answer.
    """
    from ray._private import services

    try:
        resolved = services.canonicalize_bootstrap_address_or_die(address)
        host, port = resolved.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=SERVER_TIMEOUT_S).close()
    except (ConnectionError, OSError, ValueError) as exc:
        raise RayBackendError(
            f"--address {address}: no Ray cluster answers there ({_first_line(exc)}); start one with `ray start --head`"
        ) from None
    return resolved


def spread_over_nodes(nodes: list[dict[str, Any]], workers: int) -> list[str | None]:
    """A node id for each actor-learner: round-robin over the live nodes (in ``ray.nodes()``'s
    order), skipping a node once its CPUs are taken, so that ``workers`` actor-learners span
    as many nodes as they can (Ray's own SPREAD strategy is best-effort: two actors started
    together may land on one node). None where the cluster's CPUs run out.

    Args:
        nodes: ``ray.nodes()``: dicts with ``NodeID``, ``Alive`` and ``Resources``.
        workers: actor-learners to place.
    """
    free = {n["NodeID"]: int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive")}
    order = [node for node, cpus in free.items() if cpus > 0]
    out: list[str | None] = []
    while len(out) < workers and order:
        for node in list(order):
            if len(out) == workers:
                break
            out.append(node)
            free[node] -= 1
            if free[node] == 0:
                order.remove(node)
    return out + [None] * (workers - len(out))


class RaySupervisor:
    """``supervisor.Supervisor``'s interface on a Ray cluster: the server (the parameter server
    of the Hogwild algorithms, or the ``LearnerServer`` of the batched ones) and the
    actor-learners or actors as Ray actors, their reports, failures and replacements.

    Args:
        config: the run's configuration.
        shared: the driver's ``SharedState``: the server starts from it, and every
            ``sync_state`` copies the server's state back into it (for checkpoints).
        counters: the driver's global counters; ``poll`` copies the server's counts in.
        obs, action: the environment's spaces.
        learner_id: the learner's worker id (``--workers``) for the batched algorithms, else None.

    Raises:
        RayBackendError: as ``connect``.
    """

    def __init__(
        self, config: Config, shared: SharedState, counters: GlobalCounters, obs, action, learner_id: int | None = None
    ) -> None:
        self.ray = import_ray()
        self.config, self.shared, self.counters, self.obs, self.action = config, shared, counters, obs, action
        self.learner_id = learner_id
        # a learner takes a CPU of the driver's node; a parameter server is not counted
        self.started_ray, self.cluster_cpus = connect(config.run.address, config.run.workers + (learner_id is not None))
        # a local instance's processes are ended by ray.shutdown(); if this process is killed
        # outright, by asyncrl.reaper (its own session: a terminal's Ctrl-C does not reach it)
        self._reaper = (
            subprocess.Popen(
                [sys.executable, "-m", "asyncrl.reaper", str(os.getpid())],
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
            if self.started_ray
            else None
        )
        self.nodes_in_cluster = sum(1 for node in self.ray.nodes() if node.get("Alive"))
        self.server = None
        self.actors: dict[int, Any] = {}
        self.futures: dict[Any, int] = {}  # a running chunk's ObjectRef -> worker id
        self.last_seen: dict[int, float] = {}
        self.launched: dict[int, float] = {}
        self.started: set[int] = set()  # actors heard from since their launch
        self._heard_ago: dict[int, float] = {}  # the learner server's seconds since each actor called it
        self._counts_at = time.monotonic()  # when _heard_ago was read
        self.placement: dict[int, dict[str, Any]] = {}  # worker id -> where it runs now
        self.nodes_used: set[str] = set()
        self.done: set[int] = set()
        self.server_lost = False
        self._server_reported = False
        self._stopped = False
        self._final_state: dict[str, Any] | None = None
        self._next_counts = 0.0
        self._next_learner_report = 0.0
        if learner_id is None:
            self._server_cls = self.ray.remote(ParameterServer)
        else:  # threaded: it answers the actors while its thread trains
            self._server_cls = self.ray.remote(max_concurrency=config.run.workers + 4)(LearnerServer)
        self._actor_cls = self.ray.remote(ActorLearnerActor)

    def start(self, make_config: Callable[[], Config], restore_rng: dict[int, dict[str, Any]]) -> list[int]:
        """Start the server (on this node) and every actor-learner or actor (spread over the
        nodes); returns the local pids to watch (the server's).

        Raises:
            RayBackendError: if the server does not start within ``SERVER_TIMEOUT_S``.
        """
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        learner = self.learner_id is not None
        self.server = self._server_cls.options(
            num_cpus=1 if learner else 0,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(
            self.config,
            self.obs,
            self.action,
            state_payload(self.shared, self.counters.policy_version),
            self.counters.initial_step,
            len(self.counters.steps),
        )
        try:
            server_pid = ray.get(self.server.pid.remote(), timeout=SERVER_TIMEOUT_S)
        except Exception as exc:  # GetTimeoutError, RayActorError
            raise RayBackendError(f"the {self._server_name} did not start: {_first_line(exc)}") from None
        nodes = self.ray.nodes()
        if learner:  # its CPU is taken
            for node in nodes:
                if node.get("NodeID") == here and "CPU" in node.get("Resources", {}):
                    node["Resources"] = {**node["Resources"], "CPU": node["Resources"]["CPU"] - 1}
        nodes = spread_over_nodes(nodes, self.config.run.workers)
        for worker_id in range(self.config.run.workers):
            self._launch(worker_id, make_config(), restore_rng.get(worker_id), nodes[worker_id])
        return [server_pid]

    def _launch(
        self, worker_id: int, config: Config, restore_rng: dict[str, Any] | None = None, node: str | None = None
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # a replacement (node None) goes wherever Ray finds a free CPU
        strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node is not None else "SPREAD"
        actor = self._actor_cls.options(num_cpus=1, max_restarts=0, scheduling_strategy=strategy).remote(
            worker_id, config, self.obs, self.action, self.server, restore_rng
        )
        self.actors[worker_id] = actor
        self.last_seen[worker_id] = self.launched[worker_id] = time.monotonic()
        self.started.discard(worker_id)
        self.done.discard(worker_id)
        self._submit(worker_id)

    def _submit(self, worker_id: int) -> None:
        self.futures[self.actors[worker_id].run.remote(REPORT_INTERVAL_S)] = worker_id

    @property
    def _server_name(self) -> str:
        return "parameter server" if self.learner_id is None else "learner"

    def replace(self, worker_id: int, config: Config) -> None:
        """Start a fresh actor-learner or actor ``worker_id`` (the same slot of ``T``; the
        rollout slots a lost actor was writing freed first) in place of a failed one; Ray
        places it on any node with a free CPU."""
        self._kill(self.actors.get(worker_id))
        if self.learner_id is not None and not self.server_lost:
            try:
                self.ray.get(self.server.reclaim.remote(worker_id), timeout=SERVER_TIMEOUT_S)
            except Exception:
                self.server_lost = True
        self._launch(worker_id, config)

    def poll(
        self,
        timeout: float,
        on_stats: Callable[[int, dict[str, Any]], None],
        on_failure: Callable[[Any, str, str | None], None],
    ) -> None:
        """Handle the chunks that finished (waiting up to ``timeout`` s for the first): their
        reports go to ``on_stats``, their failures to ``on_failure`` (a lost parameter server
        as worker ``PARAMETER_SERVER``); copy the server's counts into ``T``."""
        ray = self.ray
        refs = list(self.futures)
        ready = []
        if refs:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        else:
            time.sleep(timeout)
        failed: list[tuple[int, BaseException | str]] = []
        now = time.monotonic()
        for ref in ready:
            worker_id = self.futures.pop(ref)
            try:
                chunk = ray.get(ref)
            except Exception as exc:  # RayActorError: its process or its node was lost
                failed.append((worker_id, exc))
                continue
            self.last_seen[worker_id] = now
            self.started.add(worker_id)
            self.placement[worker_id] = chunk["placement"]
            if chunk["error"] is not None:
                failed.append((worker_id, chunk["error"]))
                continue
            self.nodes_used.add(chunk["placement"]["node"])
            on_stats(worker_id, chunk["report"])
            if chunk["finished"]:
                self.done.add(worker_id)
            else:
                self._submit(worker_id)
        for ref, worker_id in list(self.futures.items()):
            silence, started = self._silence(worker_id, now)
            if silence > (WORKER_SILENT_S if started else PLACEMENT_S):
                del self.futures[ref]
                failed.append(
                    (
                        worker_id,
                        TimeoutError(
                            f"sent nothing for {WORKER_SILENT_S:.0f} s while not waiting on the learner"
                            if started
                            else f"did not start within {PLACEMENT_S:.0f} s "
                            "(not placed on a node: no free CPU in the cluster?)"
                        ),
                    )
                )
        if failed and not self._server_alive():  # their pushes failed because the server is gone
            failed = []
        if self.learner_id is not None and not self.server_lost:
            self._learner_report(now, on_stats, on_failure)
        if self.server_lost or not self._copy_counts():
            if not self._server_reported:
                self._server_reported = True
                on_failure(
                    PARAMETER_SERVER if self.learner_id is None else self.learner_id,
                    "was lost (its process or its node died)",
                    None,
                )
            return
        for worker_id, exc in failed:
            self.done.add(worker_id)
            message, traceback_text = _describe_failure(exc)
            on_failure(worker_id, message, traceback_text)

    def _learner_report(self, now: float, on_stats, on_failure) -> None:
        """The learner's statistics (every ``REPORT_INTERVAL_S``), its end, or its error."""
        learner_id = self.learner_id
        if now < self._next_learner_report or learner_id in self.done:
            return
        self._next_learner_report = now + REPORT_INTERVAL_S
        try:
            chunk = self.ray.get(self.server.report.remote(), timeout=SERVER_TIMEOUT_S)
        except Exception:
            self.server_lost = True
            return
        if chunk["error"] is not None:
            self.done.add(learner_id)
            on_failure(learner_id, *_describe_failure(chunk["error"]))
            return
        on_stats(learner_id, chunk["report"])
        if chunk["finished"]:
            self.done.add(learner_id)

    def _server_alive(self) -> bool:
        try:
            self.ray.get(self.server.pid.remote(), timeout=SERVER_TIMEOUT_S)
            return True
        except Exception:
            self.server_lost = True
            return False

    def _silence(self, worker_id: int, now: float) -> tuple[float, bool]:
        """Seconds since the driver or the server last heard from an actor, and whether it
        has started (sent a report, or called the learner server, since its launch). An
        actor of the batched learner reports only between rollouts, so its calls to the
        server count too: waiting on a slow learner is not silence."""
        silence = now - self.last_seen[worker_id]
        started = worker_id in self.started
        if worker_id in self._heard_ago:
            heard = self._heard_ago[worker_id] + now - self._counts_at  # seconds ago
            silence = min(silence, heard)
            started = started or heard < now - self.launched[worker_id]
        return silence, started

    def _copy_counts(self, force: bool = False) -> bool:
        """Copy the server's per-worker step and update counts into the driver's ``T``."""
        now = time.monotonic()
        if self.server_lost:
            return False
        if not force and now < self._next_counts:
            return True
        self._next_counts = now + COUNTS_INTERVAL_S
        try:
            steps, updates, self._heard_ago = self.ray.get(self.server.counts.remote(), timeout=SERVER_TIMEOUT_S)
        except Exception:
            self.server_lost = True
            return False
        self._counts_at = now
        self.counters.steps[:] = steps
        self.counters.updates[:] = updates
        return True

    def sync_state(self) -> bool:
        """Copy the server's theta, optimizer statistics, theta^- and counts into the driver's
        ``shared`` and counters (before a checkpoint); False if the server is lost."""
        if self._stopped:
            state = self._final_state
        elif self.server_lost:
            state = None
        else:
            try:
                state = self.ray.get(self.server.state.remote(), timeout=SERVER_TIMEOUT_S)
            except Exception:
                self.server_lost, state = True, None
        if state is None:
            return False
        restore_shared(self.shared, state, "the parameter server's state")
        self.counters.steps[:] = state["steps"]
        self.counters.updates[:] = state["updates"]
        return True

    @property
    def all_done(self) -> bool:
        """Whether every actor-learner or actor, and the learner, is done (or failed)."""
        return len(self.done) == self.config.run.workers + (self.learner_id is not None)

    @property
    def actors_done(self) -> bool:
        return all(i in self.done for i in range(self.config.run.workers))

    def alive(self, worker_id: int) -> bool:
        if worker_id == self.learner_id:
            return not self.server_lost
        return worker_id not in self.done

    def workers_alive(self) -> int:
        """Actor-learners or actors running now (not done, not failed)."""
        return sum(i not in self.done for i in range(self.config.run.workers))

    def running(self) -> bool:
        """Whether any actor of this run may still run."""
        return not self._stopped

    def stop(self, on_stats: Callable[[int, dict[str, Any]], None]) -> None:
        """Ask every actor-learner to stop, take their last reports for up to
        ``JOIN_TIMEOUT_S``, keep the server's final state for the last checkpoint, then end
        every actor of the run (and the local Ray instance, if this run started it)."""
        if self._stopped:
            return
        ray = self.ray
        self.counters.request_stop()
        try:
            if not self.server_lost and self.server is not None:
                try:
                    ray.get(self.server.request_stop.remote(), timeout=SERVER_TIMEOUT_S)
                except Exception:
                    self.server_lost = True
                deadline = time.monotonic() + JOIN_TIMEOUT_S
                while self.futures and time.monotonic() < deadline:
                    ready, _ = ray.wait(
                        list(self.futures),
                        num_returns=len(self.futures),
                        timeout=max(0.0, min(0.2, deadline - time.monotonic())),
                    )
                    for ref in ready:
                        worker_id = self.futures.pop(ref)
                        try:
                            chunk = ray.get(ref)
                        except Exception:
                            continue
                        if chunk["report"] is not None:
                            on_stats(worker_id, chunk["report"])
                if self.learner_id is not None and not self.server_lost:  # its last statistics
                    self._next_learner_report = 0.0
                    self.done.discard(self.learner_id)
                    self._learner_report(time.monotonic(), on_stats, lambda *args: None)
                if not self.server_lost:
                    try:
                        self._final_state = ray.get(self.server.state.remote(), timeout=SERVER_TIMEOUT_S)
                    except Exception:
                        self.server_lost = True
        finally:
            self._stopped = True
            self.futures.clear()
            for actor in list(self.actors.values()) + [self.server]:
                self._kill(actor)
            if self.started_ray:
                ray.shutdown()
                self._end_reaper()

    def _end_reaper(self) -> None:
        if self._reaper is None:
            return
        try:
            self._reaper.stdin.write(b"exit")
            self._reaper.stdin.close()
            self._reaper.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._reaper.kill()
        self._reaper = None

    def _kill(self, actor: Any) -> None:
        if actor is None:
            return
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            pass

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` says of the backend."""
        return {
            "address": self.config.run.address,
            "nodes_in_cluster": self.nodes_in_cluster,
            "nodes_used": len(self.nodes_used),
            "cluster_cpus": self.cluster_cpus,
            "hosts": sorted({p["host"] for p in self.placement.values()}),
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe_failure(failure: BaseException | str) -> tuple[str, str | None]:
    """``(message, traceback or None)`` for a failed chunk: the traceback of an exception the
    actor-learner raised (the message as on shared memory), or a lost process or node."""
    if isinstance(failure, str):
        return f"raised {failure.strip().splitlines()[-1]}", failure
    if isinstance(failure, TimeoutError):
        return str(failure), None
    return "died (its process or its node was lost)", None
