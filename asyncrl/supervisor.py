"""Process supervision: start the run's processes, collect their reports, notice the ones
that fail, replace or stop them.

``Supervisor`` owns the processes and the one report queue they share; ``FailurePolicy``
decides what a failure means for the run (``--on-worker-failure``, ``--max-restarts``);
``worker_main`` is every child's entry point. The trainer (``asyncrl.trainer``) wires
them together with the metrics and the checkpoints.
"""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import psutil
import torch

from asyncrl import registry
from asyncrl.algos.base import SharedState, rng_state, set_rng_state
from asyncrl.config import Config
from asyncrl.metrics import merge_lags
from asyncrl.shared import GlobalCounters

REPORT_INTERVAL_S = 0.2
"""Seconds between a worker's statistics reports to the trainer."""

JOIN_TIMEOUT_S = 10.0
"""Seconds the workers get to exit after a stop request before they are terminated."""

ERROR_REPORT_GRACE_S = 0.5
"""Seconds to wait for the error report of a worker found dead, before calling it a death."""


PARAMETER_SERVER = "parameter-server"
"""The worker id under which ``--backend ray`` reports a lost parameter server."""


class WorkerFailure(RuntimeError):
    """An actor-learner, actor or the learner raised or died; the run was stopped."""


def worker_main(
    worker_id: int,
    config: Config,
    shared: SharedState,
    counters: GlobalCounters,
    reports: Any,
    parent_pid: int,
    restore_rng: dict[str, Any] | None = None,
    role: str = "actor",
) -> None:
    """Entry point of an actor-learner, actor or learner process: update until told to
    stop, until the trainer ``parent_pid`` dies, or until ``T`` reaches ``total_steps``
    (the learner: until it has trained on ``total_steps`` env steps).

    ``restore_rng`` (from a resumed checkpoint) replaces the seeded random state.
    Reports ``("stats", worker_id, stats)`` (with the worker's random state) every
    ``REPORT_INTERVAL_S``, then ``("done", worker_id, None)``; on an exception,
    ``("error", worker_id, traceback)`` and exit code 1. Ctrl-C is left to the trainer,
    which stops the workers in order.
    """
    torch.set_num_threads(1)
    counters.watch_parent(parent_pid)  # once the trainer is gone, every stop check below ends this process
    if config.run.pin_workers:
        pin_to_core(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the trainer's handler
    worker: Any = None
    try:
        algo = registry.get(config.run.algo)
        if role == "learner":
            assert algo.learner is not None  # (a learner process exists only where the family has one)
            worker = algo.learner(worker_id, config, shared, counters)
            finished = worker.finished
        else:
            member, seen = shared.for_worker(worker_id, counters)  # (--sync: T as of the last round's end)
            worker = algo.actor(worker_id, config, member, seen)
            total = config.run.total_steps
            finished = lambda: seen.global_step >= total  # noqa: E731
        if restore_rng is not None:
            set_rng_state(worker, restore_rng)
        next_report = time.monotonic() + REPORT_INTERVAL_S
        while not counters.stop_requested and not finished():
            worker.update()
            now = time.monotonic()
            if now >= next_report:
                next_report = now + REPORT_INTERVAL_S
                reports.put(("stats", worker_id, report(worker)))
        if counters.orphaned:  # the trainer is gone: nobody reads the reports, exit at once
            reports.cancel_join_thread()
            return
        reports.put(("stats", worker_id, report(worker)))
        reports.put(("done", worker_id, None))
    except Exception:
        reports.put(("error", worker_id, traceback.format_exc()))
        reports.close()
        reports.join_thread()
        os._exit(1)
    finally:
        if worker is not None:
            worker.close()


def report(worker: Any) -> dict[str, Any]:
    """What a worker reports: its statistics since the last report (``WorkerStats.drain``),
    with the policy lags its view of the shared state measured (``drain_lags``, where it
    has one: the Hogwild actor-learners), and its random state."""
    stats = worker.drain_stats()
    drain_lags = getattr(getattr(worker, "shared", None), "drain_lags", None)
    if drain_lags is not None:
        stats["lags"] = merge_lags(dict(stats.get("lags", {})), drain_lags())
    return {**stats, "rng": rng_state(worker)}


def pin_to_core(index: int) -> int:
    """Pin this process to usable core ``index mod cores`` (``psutil``); returns the core."""
    process = psutil.Process()
    cores = sorted(process.cpu_affinity())
    core = cores[index % len(cores)]
    process.cpu_affinity([core])
    return core


def describe_exit(exitcode: int) -> str:
    """``"exited with code N"`` or ``"died from signal NAME"``."""
    if exitcode < 0:
        try:
            return f"died from signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"died from signal {-exitcode}"
    return f"exited with code {exitcode}"


class Supervisor:
    """The run's worker processes, one report queue, and their lifecycle.

    The process graph: ``workers`` actor-learners (or actors) with ids ``0 ..
    workers - 1``, and for the batched learner one learner process with id ``workers``,
    all sharing ``shared`` and ``counters`` and reporting on one queue that the trainer
    drains through ``poll``.

    Args:
        config: the run's configuration (its start method, worker count, algorithm).
        shared: the shared state every process receives.
        counters: the global counters (the stop flag lives there).
        learner_id: the learner's id, or None where there is none.
    """

    def __init__(self, config: Config, shared: SharedState, counters: GlobalCounters, learner_id: int | None) -> None:
        self.config, self.shared, self.counters, self.learner_id = config, shared, counters, learner_id
        run = config.run
        self._ctx = torch.multiprocessing.get_context(run.start_method)
        if run.start_method == "forkserver":
            self._ctx.set_forkserver_preload(["asyncrl.supervisor", "asyncrl.algos"])
        self._learner_ctx = self._ctx
        if learner_id is not None:
            from asyncrl.algos.batched import learner_start_method

            self._learner_ctx = torch.multiprocessing.get_context(learner_start_method(config))
        # (the learner's context: a queue made in a fork context cannot reach a spawned
        # learner, while one made for spawn reaches forked processes too)
        self.reports = self._learner_ctx.Queue()
        self.procs: list = []
        self._retired: list = []  # processes of failed workers, joined at the end
        self.done: set[int] = set()

    def start(self, make_config: Callable[[], Config], restore_rng: dict[int, dict[str, Any]]) -> list[int]:
        """Start every process (``make_config()`` gives each its config); returns their pids."""
        for worker_id in range(self.config.run.workers):
            self.procs.append(self._spawn(worker_id, make_config(), restore_rng.get(worker_id)))
        if self.learner_id is not None:  # one learner process, fed by the actors through shared-memory slots
            self.procs.append(
                self._spawn(self.learner_id, make_config(), restore_rng.get(self.learner_id), role="learner")
            )
        return [p.pid for p in self.procs]

    def _spawn(self, worker_id: int, config: Config, restore_rng: dict[str, Any] | None = None, role: str = "actor"):
        # A restart forks while TensorBoard's writer thread runs; the child runs worker
        # code only, which takes none of that thread's locks.
        ctx: Any = self._learner_ctx if role == "learner" else self._ctx
        proc = ctx.Process(
            target=worker_main,
            name="asyncrl-learner" if role == "learner" else f"asyncrl-worker-{worker_id}",
            args=(worker_id, config, self.shared, self.counters, self.reports, os.getpid(), restore_rng, role),
            daemon=True,
        )
        proc.start()
        return proc

    def replace(self, worker_id: int, config: Config) -> int:
        """Start a fresh worker ``worker_id`` in place of a failed one (the same slot of the
        step counter; its half-written rollout slot reclaimed first); returns its pid."""
        old = self.procs[worker_id]
        self._retired.append(old)
        self.done.discard(worker_id)
        if self.shared.slots is not None:
            old.join(timeout=2.0)
            self.shared.slots.reclaim(worker_id)  # the rollouts it was writing
        self.procs[worker_id] = self._spawn(worker_id, config)
        return self.procs[worker_id].pid

    def poll(
        self,
        timeout: float,
        on_stats: Callable[[int, dict[str, Any]], None],
        on_failure: Callable[[int, str, str | None], None],
    ) -> None:
        """Handle the queued reports (waiting up to ``timeout`` s for the first), then look
        for processes that exited without saying they were done.

        ``on_stats(worker_id, stats)`` gets each statistics report; ``on_failure(worker_id,
        message, traceback)`` each worker that raised or died (once).
        """
        self._drain(timeout, on_stats, on_failure)
        for worker_id, proc in enumerate(self.procs):
            if proc.exitcode is not None and worker_id not in self.done:
                self._drain(ERROR_REPORT_GRACE_S, on_stats, on_failure)  # its error report may be in flight
                if self.procs[worker_id] is proc and worker_id not in self.done:
                    self.done.add(worker_id)
                    on_failure(worker_id, describe_exit(proc.exitcode), None)

    def _drain(self, timeout: float, on_stats, on_failure) -> None:
        try:
            kind, worker_id, payload = self.reports.get(timeout=timeout) if timeout > 0 else self.reports.get_nowait()
        except (queue_mod.Empty, EOFError, OSError):
            return
        while True:
            if kind == "stats":
                on_stats(worker_id, payload)
            elif kind == "done":
                self.done.add(worker_id)
            elif kind == "error":
                self.done.add(worker_id)
                on_failure(worker_id, f"raised {payload.strip().splitlines()[-1]}", payload)
            try:
                kind, worker_id, payload = self.reports.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                return

    def sync_state(self) -> bool:
        """Nothing to copy: the trainer's ``shared`` is the workers' own (shared memory)."""
        return True

    def running(self) -> bool:
        """Whether any process of the run still runs."""
        return any(p.is_alive() for p in self.procs + self._retired)

    @property
    def all_done(self) -> bool:
        """Whether every current process has reported done (or failed)."""
        return len(self.done) == len(self.procs)

    @property
    def actors_done(self) -> bool:
        """Whether every actor (not the learner) has reported done (or failed)."""
        return all(i in self.done for i in range(self.config.run.workers))

    def alive(self, worker_id: int) -> bool:
        """Whether process ``worker_id`` runs (True in serial mode, where there are none)."""
        return not self.procs or self.procs[worker_id].is_alive()

    def workers_alive(self) -> int:
        """Actor-learner or actor processes running now."""
        return sum(p.is_alive() for p in self.procs[: self.config.run.workers])

    def summary(self) -> dict[str, Any]:
        """Nothing beyond the trainer's own summary: every worker ran on this machine."""
        return {}

    def stop(self, on_stats: Callable[[int, dict[str, Any]], None]) -> None:
        """Ask every process to stop and take their last reports for up to
        ``JOIN_TIMEOUT_S`` seconds; then terminate, and at last kill, what is left. A
        second call (after an interrupted first one) only ends what still runs."""
        self.counters.request_stop()
        if self.reports is None:
            self._end_all()
            return
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        ignore_failures = lambda *args: None  # noqa: E731  (the run is ending)
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            self._drain(0.05, on_stats, ignore_failures)  # a worker blocked on a full pipe cannot exit
        self._end_all()
        self._drain(0.0, on_stats, ignore_failures)
        reports, self.reports = self.reports, None  # type: ignore[assignment]
        reports.close()
        reports.join_thread()

    def _end_all(self) -> None:
        """Terminate, then kill, every process that still runs, and join them all."""
        for proc in self.procs + self._retired:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs + self._retired:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()


class FailurePolicy:
    """``--on-worker-failure`` and ``--max-restarts``: what a failed worker means for the run.

    A failed learner always ends the run (the batches it held and its optimizer steps
    since the last publication are gone), and so does a lost parameter server
    (``--backend ray``). A failed actor-learner or actor is replaced
    while restarts remain under ``restart``; otherwise the run stops. The first failure's
    traceback is printed once; every failure is listed in ``failures``.

    Args:
        config: the run's configuration.
        learner_id: the learner's worker id, or None where there is none.
    """

    def __init__(self, config: Config, learner_id: int | None) -> None:
        self.run = config.run
        self.learner_id = learner_id
        self.failures: list[dict[str, Any]] = []
        self._traceback_shown = False

    def decide(self, worker_id: int, message: str, traceback_text: str | None, global_step: int) -> str | None:
        """Record the failure of ``worker_id``; returns None to restart it, or the run's
        failure message to stop the run."""
        is_learner = worker_id == self.learner_id
        self.failures.append(
            {
                "worker": "learner" if is_learner else worker_id,
                "message": message,
                "time": time.time(),
                "global_step": global_step,
            }
        )
        if traceback_text and not self._traceback_shown:
            self._traceback_shown = True
            print(traceback_text.rstrip(), file=sys.stderr, flush=True)
        if is_learner:
            return f"the learner {message}"
        if worker_id == PARAMETER_SERVER:  # theta and its statistics since the last checkpoint are gone
            return f"the parameter server {message}"
        if self.run.on_worker_failure == "restart" and len(self.failures) <= self.run.max_restarts:
            print(
                f"asyncrl.run: worker {worker_id} {message}; restarting it with a fresh environment "
                f"(restart {len(self.failures)} of at most {self.run.max_restarts})",
                file=sys.stderr,
                flush=True,
            )
            return None
        limit = " (restart limit reached)" if self.run.on_worker_failure == "restart" else ""
        return f"worker {worker_id} {message}{limit}"
