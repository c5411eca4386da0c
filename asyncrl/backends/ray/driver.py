"""The driver: ``supervisor.Supervisor``'s interface on a Ray cluster (``RaySupervisor``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from asyncrl.algos.base import SharedState
from asyncrl.backends.ray import RayBackendError, first_line, import_ray
from asyncrl.backends.ray.adapters import SERVER_TIMEOUT_S
from asyncrl.backends.ray.cluster import connect, spread_over_nodes
from asyncrl.backends.ray.servers import ActorLearnerActor, LearnerServer, ParameterServer, state_payload
from asyncrl.checkpoint import restore_shared
from asyncrl.config import Config
from asyncrl.shared import GlobalCounters
from asyncrl.supervisor import JOIN_TIMEOUT_S, PARAMETER_SERVER, REPORT_INTERVAL_S

WORKER_SILENT_S = 120.0
"""Seconds a started actor-learner may go without a report, and (an actor of the batched
learner) without calling the learner server, before the driver counts it as failed; waiting
for a free slot calls the server every ``SLOT_WAIT_S``, so a slow learner is not silence."""

PLACEMENT_S = 120.0
"""Seconds an actor-learner may take to be placed on a node and start (for want of a free
CPU, say) before the driver counts it as failed."""

COUNTS_INTERVAL_S = 0.1
"""Seconds between two copies of the server's step counts into the driver's ``T``."""


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
            raise RayBackendError(f"the {self._server_name} did not start: {first_line(exc)}") from None
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


def _describe_failure(failure: BaseException | str) -> tuple[str, str | None]:
    """``(message, traceback or None)`` for a failed chunk: the traceback of an exception the
    actor-learner raised (the message as on shared memory), or a lost process or node."""
    if isinstance(failure, str):
        return f"raised {failure.strip().splitlines()[-1]}", failure
    if isinstance(failure, TimeoutError):
        return str(failure), None
    return "died (its process or its node was lost)", None
