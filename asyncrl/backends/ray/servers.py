"""The Ray actors: the parameter server (Hogwild algorithms), the learner server (the batched
learner), and the actor-learner (or actor) wrapped as a Ray actor."""

from __future__ import annotations

import copy
import os
import signal
import socket
import time
import traceback
from typing import Any

import numpy as np
import torch

from asyncrl import registry
from asyncrl.algos.base import SharedState, set_rng_state
from asyncrl.backends.ray.adapters import (
    RemoteCounters,
    RemotePolicyStore,
    RemoteSlots,
    RemoteState,
    RemoteTarget,
    _answer,
)
from asyncrl.checkpoint import restore_shared
from asyncrl.config import Config
from asyncrl.shared import GlobalCounters
from asyncrl.supervisor import report

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
        stats = report(self.learner)
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
            stats = report(learner)  # (with the lags the server measured for its pushes)
        except Exception:
            self.error = traceback.format_exc()
            return self.run(0.0)
        if hogwild and stats["updates"]:
            stats["loss_sums"]["policy_lag"] = float(sum(lag * n for lag, n in stats["lags"].items()))
        finished = counters.stop_requested or counters.global_step >= self.total_steps
        return {"report": stats, "finished": finished, "placement": self.placement, "error": None}
