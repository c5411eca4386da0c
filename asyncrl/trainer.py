"""Process orchestration: spawn, monitor, stop and join the actor-learners.

The whole process graph is wired in ``Trainer._start_workers``: the parent creates the
shared state (model, optimizer statistics, global step counter ``T``) and one queue;
each actor-learner process updates the shared state lock-free and reports episode and
loss statistics on the queue; the parent aggregates them into metrics, checkpoints,
and decides when to stop. ``--serial`` runs the same actor-learners round-robin in the
parent process, one update each, which is deterministic for a given seed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import queue as queue_mod
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import psutil
import torch

from asyncrl import envs
from asyncrl.algos import algo_module
from asyncrl.algos.base import SharedState, rng_state, set_rng_state
from asyncrl.checkpoint import CheckpointError, load_latest_good, save_checkpoint
from asyncrl.config import Config
from asyncrl.metrics import EpisodeLog, EpisodeStats, MetricsWriter, ProcessTreeMonitor, Progress, plot_learning_curve
from asyncrl.shared import GlobalCounters, load_optimizer_state_in_place
from asyncrl.storage import PublicationStalled

REPORT_INTERVAL_S = 0.2
"""Seconds between a worker's statistics reports to the parent."""

JOIN_TIMEOUT_S = 10.0
"""Seconds the workers get to exit after a stop request before they are terminated."""


class RunDirError(ValueError):
    """A run folder that cannot be created or written."""


class WorkerFailure(RuntimeError):
    """An actor-learner raised or died; the run was stopped."""


@dataclasses.dataclass
class Setup:
    """A config resolved against its environment, ready to train."""

    config: Config
    obs_dim: int
    num_actions: int


def prepare(config: Config) -> Setup:
    """Check the environment and fill in defaults that depend on it.

    Resolves ``target_return`` (the env's ``reward_threshold``; ``inf`` if it has none)
    and ``run_dir`` (``runs/<algo>-<env>-<seed>-<timestamp>``), and creates the folder.

    Raises:
        EnvError: if the environment cannot be made or its spaces do not suit the
            algorithm.
        RunDirError: if the run folder cannot be created or written.
        DeviceError: if ``--learner-device`` asks for a device this machine lacks.
    """
    run = config.run
    env = envs.make_env(run.env, run.seed)
    try:
        obs_dim, num_actions = envs.check_spaces(env, run.algo)
        threshold = env.spec.reward_threshold if env.spec is not None else None
    finally:
        env.close()
    target = run.target_return
    if target is None:
        target = float(threshold) if threshold is not None else math.inf
    run_dir = run.run_dir
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe_env = run.env.replace(":", "_").replace("/", "_")
        run_dir = os.path.join("runs", f"{run.algo}-{safe_env}-{run.seed}-{stamp}")
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise RunDirError(f"--run-dir {run_dir} is not a writable folder: {exc.strerror or exc}") from None
    run = dataclasses.replace(run, target_return=target, run_dir=run_dir)
    device = getattr(config.algo, "learner_device", None)
    if device is not None:
        from asyncrl.algos.batched import check_device

        check_device(device)  # before any process starts
    return Setup(Config(run=run, algo=config.algo), obs_dim, num_actions)


def _worker_main(worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters,
                 reports: Any, parent_pid: int, restore_rng: dict[str, Any] | None = None,
                 role: str = "actor") -> None:
    """Entry point of an actor-learner, actor or learner process: update until told to
    stop, or until ``T`` reaches ``total_steps`` (the learner: until it has trained on
    ``total_steps`` env steps).

    ``restore_rng`` (from a resumed checkpoint) replaces the seeded random state.
    Reports ``("stats", worker_id, stats)`` (with the worker's random state) every
    ``REPORT_INTERVAL_S``, then
    ``("done", worker_id, None)``; on an exception, ``("error", worker_id, traceback)``
    and exit code 1. Ctrl-C is left to the parent, which stops the workers in order.
    """
    torch.set_num_threads(1)
    counters.watch_parent(parent_pid)  # once the trainer is gone, every stop check below ends this process
    if config.run.pin_workers:
        pin_to_core(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the trainer's handler
    learner = None
    try:
        algo = algo_module(config.run.algo)
        if role == "learner":
            learner = algo.Learner(worker_id, config, shared, counters)
            finished = learner.finished
        else:
            learner = algo.ActorLearner(worker_id, config, shared, counters)
            total = config.run.total_steps
            finished = lambda: counters.global_step >= total  # noqa: E731
        if restore_rng is not None:
            set_rng_state(learner, restore_rng)
        next_report = time.monotonic() + REPORT_INTERVAL_S
        while not counters.stop_requested and not finished():
            learner.update()
            now = time.monotonic()
            if now >= next_report:
                next_report = now + REPORT_INTERVAL_S
                reports.put(("stats", worker_id, _report(learner)))
        if counters.orphaned:  # the trainer is gone: nobody reads the reports, exit at once
            reports.cancel_join_thread()
            return
        reports.put(("stats", worker_id, _report(learner)))
        reports.put(("done", worker_id, None))
    except Exception:
        reports.put(("error", worker_id, traceback.format_exc()))
        reports.close()
        reports.join_thread()
        os._exit(1)
    finally:
        if learner is not None:
            learner.close()


def pin_to_core(index: int) -> int:
    """Pin this process to usable core ``index mod cores`` (``psutil``); returns the core."""
    process = psutil.Process()
    cores = sorted(process.cpu_affinity())
    core = cores[index % len(cores)]
    process.cpu_affinity([core])
    return core


def _report(learner) -> dict[str, Any]:
    return {**learner.drain_stats(), "rng": rng_state(learner)}


def _describe_exit(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"died from signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"died from signal {-exitcode}"
    return f"exited with code {exitcode}"


class Trainer:
    """Trains one ``Config``: shared state, actor-learners, metrics and checkpoints.

    Args:
        config: the run's configuration; ``prepare`` is applied to it.
        quiet: no progress display (tests, benchmarks).

    Raises:
        EnvError: (from ``prepare``) if the environment is unusable.
    """

    def __init__(self, config: Config, quiet: bool = False) -> None:
        setup = prepare(config)
        self.config = setup.config
        self.obs_dim, self.num_actions = setup.obs_dim, setup.num_actions
        self.algo = algo_module(self.config.run.algo)
        self.has_learner = hasattr(self.algo, "Learner")  # A2C, PPO: actors feed one learner process
        self.learner_id = self.config.run.workers  # its slot in the counters, after the actors'
        self.quiet = quiet
        self.run_dir = Path(self.config.run.run_dir)
        self.episodes = EpisodeStats(100)
        self._loss_sums: dict[str, float] = {}
        self._loss_updates = 0
        self._lag_sum = 0.0  # policy lag summed over learner batches (A2C, PPO)
        self._lag_batches = 0
        self._actors_done_at: float | None = None
        self.stop_reason: str | None = None
        self.failure: str | None = None
        self.solved_at: tuple[float, int] | None = None  # (wall_time_s, global_step)
        self._signal: int | None = None
        self.generation = 0  # restarts so far (and before a resume); sets new workers' seeds
        self._rng_states: dict[int, dict[str, Any]] = {}  # each worker's latest random state
        self._restore_rng: dict[int, dict[str, Any]] = {}  # from a resumed checkpoint

    # -- public -----------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train until a stop condition; write metrics, checkpoint, plot and summary.

        Stop conditions: ``T >= total_steps``, the mean return of the last 100 episodes
        reaching ``target_return``, ``max_seconds`` elapsed, SIGINT/SIGTERM, or a worker
        failure.

        Returns:
            The summary also written to ``summary.json`` (``stop_reason``,
            ``reached_target``, ``time_to_target_s``, ``steps_to_target``, ...).

        Raises:
            WorkerFailure: if an actor-learner raised or died; metrics and a checkpoint
                are written first.
        """
        run = self.config.run
        with open(self.run_dir / "config.json", "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
        torch.set_num_threads(1)
        self.shared = self.algo.make_shared(self.config, self.obs_dim, self.num_actions)
        resumed = self._load_resume_checkpoint() if run.resume else None
        self.counters = GlobalCounters(run.workers + self.has_learner, initial_step=resumed["global_step"] if resumed else 0,
                                       initial_updates=resumed["policy_version"] if resumed else 0)
        self.resumed_from_step = resumed["global_step"] if resumed else None
        self.procs: list = []
        self._retired: list = []  # processes of failed workers, joined at the end
        self._done: set[int] = set()
        self.failures: list[dict[str, Any]] = []
        self._traceback_shown = False
        old_handlers = self._install_signal_handlers()
        self.t_start = time.monotonic() - (resumed["wall_time_s"] if resumed else 0.0)
        self._last_row = (time.monotonic(), self.counters.global_step)
        self._next_row = time.monotonic() + run.log_interval
        self._next_checkpoint = time.monotonic() + run.checkpoint_interval
        try:
            if not run.serial:
                # Workers start before this process creates any thread (TensorBoard's
                # writer, the progress display), so that forking them is safe.
                self._start_workers()
            self.writer = MetricsWriter(self.run_dir, self.algo.LOSS_NAMES,
                                        keep_rows=resumed["metrics_rows"] if resumed else None)
            self.episode_log = EpisodeLog(self.run_dir, keep_rows=resumed["episodes"] if resumed else None)
            self.monitor = ProcessTreeMonitor()
            self.monitor.watch([p.pid for p in self.procs])
            self.progress = Progress("none" if self.quiet else run.progress, run.total_steps)
            try:
                if run.serial:
                    self._train_serial()
                else:
                    self._train_processes()
            finally:
                if self.procs:
                    self._stop_workers()
                summary = self._finish()
        finally:
            if self.procs and any(p.is_alive() for p in self.procs):
                self._stop_workers()
            self._restore_signal_handlers(old_handlers)
        if self.failure is not None:
            raise WorkerFailure(self.failure)
        return summary

    @property
    def interrupted_by(self) -> int | None:
        """The signal number (SIGINT or SIGTERM) that stopped the run, if any."""
        return self._signal

    # -- the two execution modes ------------------------------------------

    def _train_serial(self) -> None:
        learners = [self.algo.ActorLearner(i, self._worker_config(), self.shared, self.counters)
                    for i in range(self.config.run.workers)]
        if self.has_learner:  # after the actors: each round it trains on their rollouts
            learners.append(self.algo.Learner(self.learner_id, self._worker_config(), self.shared, self.counters))
        for worker_id, learner in enumerate(learners):
            if worker_id in self._restore_rng:
                set_rng_state(learner, self._restore_rng[worker_id])
        try:
            while self.stop_reason is None:
                for worker_id, learner in enumerate(learners):
                    learner.update()
                    self._on_stats(worker_id, _report(learner))
                if self.has_learner and learners[-1].finished():
                    self.stop_reason = "total_steps"
                self._tick()
        finally:
            for learner in learners:
                learner.close()

    def _train_processes(self) -> None:
        while self.stop_reason is None:
            self._drain_reports(timeout=0.05)
            for worker_id, proc in enumerate(self.procs):
                if proc.exitcode is not None and worker_id not in self._done and self.stop_reason is None:
                    self._drain_reports(timeout=0.5)  # its error report may still be in flight
                    if self.procs[worker_id] is proc and worker_id not in self._done:
                        self._on_worker_failure(worker_id, _describe_exit(proc.exitcode))
            if len(self._done) == len(self.procs) and self.stop_reason is None:
                self.stop_reason = "total_steps"
            if self.has_learner:
                self._check_learner_starved()
            self._tick()

    def _check_learner_starved(self) -> None:
        """Stop a run whose actors have all finished while the learner still waits for
        rollouts that will not come (an actor that died mid-rollout took its steps with
        it), after a grace period for the last batch."""
        actors_done = all(i in self._done for i in range(self.config.run.workers))
        if not actors_done or self.learner_id in self._done or self.stop_reason is not None:
            self._actors_done_at = None
        elif self._actors_done_at is None:
            self._actors_done_at = time.monotonic()
        elif time.monotonic() - self._actors_done_at > 5.0:
            self.stop_reason = "total_steps"

    def _start_workers(self) -> None:
        """The process graph: ``workers`` actor-learners sharing ``self.shared`` and
        ``self.counters``, all reporting on one queue read by this process; for A2C and
        PPO, ``workers`` actors and one learner (id ``workers``) joined by the rollout
        slots and the published policy in ``self.shared``."""
        self._ctx = torch.multiprocessing.get_context(self.config.run.start_method)
        if self.config.run.start_method == "forkserver":
            self._ctx.set_forkserver_preload(["asyncrl.trainer", self.algo.__name__])
        self._learner_ctx = self._ctx
        if self.has_learner:
            from asyncrl.algos.batched import learner_start_method

            self._learner_ctx = torch.multiprocessing.get_context(learner_start_method(self.config))
        # (the learner's context: a queue made in a fork context cannot reach a spawned
        # learner, while one made for spawn reaches forked processes too)
        self.reports = self._learner_ctx.Queue()
        for worker_id in range(self.config.run.workers):
            self.procs.append(self._spawn(worker_id, self._worker_config(), self._restore_rng.get(worker_id)))
        if self.has_learner:  # one learner process, fed by the actors through shared-memory slots
            self.procs.append(self._spawn(self.learner_id, self._worker_config(),
                                          self._restore_rng.get(self.learner_id), role="learner"))

    def _worker_config(self) -> Config:
        """The config a new worker starts from: seeds ``seed + generation * workers +
        worker_id``, where the generation counts restarts, so that no two workers of a
        run share a seed. (Resumed workers then take their saved random state.)"""
        run = self.config.run
        return Config(run=dataclasses.replace(run, seed=run.seed + self.generation * run.workers),
                      algo=self.config.algo)

    def _load_resume_checkpoint(self) -> dict[str, Any]:
        """Restore the shared state from ``RUN_DIR/checkpoint.pt`` (or the previous one if
        it is damaged); returns the checkpoint.

        Raises:
            CheckpointError: if no readable checkpoint fits this run.
        """
        data, path, warning = load_latest_good(self.run_dir / "checkpoint.pt")
        if warning:
            print(f"asyncrl.run: warning: {warning}", file=sys.stderr, flush=True)
        try:
            self.shared.model.load_state_dict(data["model"])
            load_optimizer_state_in_place(self.shared.optimizer, data["optimizer"])
            if self.shared.target is not None:
                self.shared.target.model.load_state_dict(data["target_model"])
                self.shared.target.refreshes_tensor.fill_(int(data["target_refreshes"]))
            if self.shared.policy is not None:
                self.shared.policy.sequence.fill_(2 * int(data["policy_version"]))
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} does not fit this run: {str(exc).splitlines()[0]}") from None
        self.episodes.load_state_dict(data["episodes_window"])
        self.generation = int(data["generation"])
        self._restore_rng = {int(k): v for k, v in data["worker_rng"].items()}
        return data

    def _spawn(self, worker_id: int, config: Config, restore_rng: dict[str, Any] | None = None,
               role: str = "actor"):
        # A restart forks while TensorBoard's writer thread runs; the child runs worker
        # code only, which takes none of that thread's locks.
        proc = (self._learner_ctx if role == "learner" else self._ctx).Process(
            target=_worker_main,
            name="asyncrl-learner" if role == "learner" else f"asyncrl-worker-{worker_id}",
            args=(worker_id, config, self.shared, self.counters, self.reports, os.getpid(), restore_rng, role),
            daemon=True,
        )
        proc.start()
        return proc

    def _on_worker_failure(self, worker_id: int, message: str, traceback_text: str | None = None) -> None:
        """Apply ``--on-worker-failure``: replace the worker (a fresh environment and seed,
        same slot of the step counter) while restarts remain, else stop the run."""
        run = self.config.run
        is_learner = self.has_learner and worker_id == self.learner_id
        self.failures.append({"worker": "learner" if is_learner else worker_id, "message": message,
                              "time": time.time(), "global_step": self.counters.global_step})
        if traceback_text and not self._traceback_shown:
            self._traceback_shown = True
            print(traceback_text.rstrip(), file=sys.stderr, flush=True)
        if is_learner:  # the batches it held and its optimizer steps since the last publish are gone
            self.failure = f"the learner {message}"
            self.stop_reason = "worker_failed"
            return
        if run.on_worker_failure == "restart" and len(self.failures) <= run.max_restarts:
            print(f"asyncrl.run: worker {worker_id} {message}; restarting it with a fresh environment "
                  f"(restart {len(self.failures)} of at most {run.max_restarts})", file=sys.stderr, flush=True)
            self._retired.append(self.procs[worker_id])
            self._done.discard(worker_id)
            if self.shared.slots is not None:
                self.procs[worker_id].join(timeout=2.0)
                self.shared.slots.reclaim(worker_id)  # the rollouts it was writing
            self.generation += 1
            self.procs[worker_id] = self._spawn(worker_id, self._worker_config())
            self.monitor.watch([self.procs[worker_id].pid])
            return
        limit = " (restart limit reached)" if run.on_worker_failure == "restart" else ""
        self.failure = f"worker {worker_id} {message}{limit}"
        self.stop_reason = "worker_failed"

    def _stop_workers(self) -> None:
        """Ask every worker to stop, drain their reports, then terminate stragglers."""
        self.counters.request_stop()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            self._drain_reports(timeout=0.05)  # a worker blocked on a full pipe cannot exit
        for proc in self.procs + self._retired:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs + self._retired:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._drain_reports(timeout=0.0)
        self.reports.close()
        self.reports.join_thread()

    # -- shared bookkeeping -----------------------------------------------

    def _drain_reports(self, timeout: float) -> None:
        """Handle every queued report, waiting up to ``timeout`` seconds for the first."""
        try:
            kind, worker_id, payload = self.reports.get(timeout=timeout) if timeout > 0 \
                else self.reports.get_nowait()
        except (queue_mod.Empty, EOFError, OSError):
            return
        while True:
            if kind == "stats":
                self._on_stats(worker_id, payload)
            elif kind == "done":
                self._done.add(worker_id)
            elif kind == "error":
                self._done.add(worker_id)
                if self.stop_reason is None:
                    self._on_worker_failure(worker_id, f"raised {payload.strip().splitlines()[-1]}",
                                            traceback_text=payload)
            try:
                kind, worker_id, payload = self.reports.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                return

    def _on_stats(self, worker_id: int, stats: dict[str, Any]) -> None:
        self._rng_states[worker_id] = stats["rng"]
        self.episode_log.write(worker_id, stats["episodes"])
        for episode_return, length, _ in stats["episodes"]:
            self.episodes.add(episode_return, length)
            if (self.solved_at is None and self.episodes.full
                    and self.episodes.mean_return >= self.config.run.target_return):
                self.solved_at = (time.monotonic() - self.t_start, self.counters.global_step)
        for name, value in stats["loss_sums"].items():
            self._loss_sums[name] = self._loss_sums.get(name, 0.0) + value
        self._loss_updates += stats["updates"]
        if "policy_lag" in stats["loss_sums"]:
            self._lag_sum += stats["loss_sums"]["policy_lag"]
            self._lag_batches += stats["updates"]

    def _tick(self) -> None:
        """Check the stop conditions; write a metrics row and a checkpoint when due."""
        run = self.config.run
        now = time.monotonic()
        if self.stop_reason is None:
            if self._signal is not None:
                self.stop_reason = "interrupted"
            elif self.solved_at is not None:
                self.stop_reason = "target_reached"
            elif self.counters.global_step >= run.total_steps and not self.has_learner:
                self.stop_reason = "total_steps"  # (a learner finishes the last batches first)
            elif run.max_seconds is not None and now - self.t_start >= run.max_seconds:
                self.stop_reason = "max_seconds"
        if now >= self._next_row:
            self._next_row = now + run.log_interval
            self._write_row(now)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + run.checkpoint_interval
            self._checkpoint(now)
        self.progress.update(self.counters.global_step, now - self.t_start, self.episodes.count,
                             self.episodes.mean_return)

    def _write_row(self, now: float) -> None:
        step = self.counters.global_step
        last_time, last_step = self._last_row
        self._last_row = (now, step)
        row: dict[str, Any] = {
            "global_step": step,
            "wall_time_s": now - self.t_start,
            "episodes": self.episodes.count,
            "mean_return_100": self.episodes.mean_return,
            "mean_length_100": self.episodes.mean_length,
            "steps_per_s": (step - last_step) / (now - last_time) if now > last_time else math.nan,
            "updates": self.counters.policy_version,
            "workers_alive": (sum(p.is_alive() for p in self.procs[:self.config.run.workers]) if self.procs
                              else self.config.run.workers),
            **self.monitor.sample(),
        }
        for name in self.algo.LOSS_NAMES:
            row[name] = self._loss_sums.get(name, math.nan) / self._loss_updates \
                if self._loss_updates else math.nan
        self._loss_sums, self._loss_updates = {}, 0
        self.writer.write(row)
        self.episode_log.flush()

    def _checkpoint(self, now: float) -> None:
        target = self.shared.target
        self.episode_log.flush()  # the checkpoint counts these rows as written
        try:
            snapshot = self._snapshot()
        except PublicationStalled as exc:
            snapshot, reason = None, str(exc)
        else:
            reason = "the learner died in the middle of publishing its weights"
        if snapshot is None:
            print(f"asyncrl.run: warning: no checkpoint at T={self.counters.global_step:,}: {reason}; "
                  f"{self.run_dir / 'checkpoint.pt'} is the last consistent state", file=sys.stderr, flush=True)
            return
        model, optimizer = snapshot
        save_checkpoint(self.run_dir / "checkpoint.pt", {
            "config": self.config.to_dict(),
            "model": model,
            "target_model": target.model.state_dict() if target is not None else None,
            "optimizer": optimizer,
            "target_refreshes": target.refreshes if target is not None else None,
            "global_step": self.counters.global_step,
            "policy_version": self.counters.policy_version,
            "episodes": self.episodes.count,
            "episodes_window": self.episodes.state_dict(),
            "generation": self.generation,
            "worker_rng": {str(k): v for k, v in self._rng_states.items()},
            "metrics_rows": self.writer.rows,
            "wall_time_s": now - self.t_start,
        })

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The shared model's and optimizer's state dicts; with a learner, copies taken
        from one complete publication (never half of one). None if the learner process
        died in the middle of a publication (what is in shared memory is half of one).

        Raises:
            PublicationStalled: if a live learner held one publication open for
                ``storage.PUBLICATION_TIMEOUT_S``.
        """
        if self.shared.policy is None:
            return self.shared.model.state_dict(), self.shared.optimizer.state_dict()
        out: list = []

        def take_copies() -> None:
            out[:] = [copy.deepcopy(self.shared.model.state_dict()), copy.deepcopy(self.shared.optimizer.state_dict())]

        learner = self.procs[self.learner_id] if self.procs else None
        version = self.shared.policy.read(take_copies, should_stop=lambda: learner is not None and not learner.is_alive())
        return None if version is None else (out[0], out[1])

    def _finish(self) -> dict[str, Any]:
        now = time.monotonic()
        self.progress.update(self.counters.global_step, now - self.t_start, self.episodes.count,
                             self.episodes.mean_return)
        self.progress.close()
        self._write_row(now)
        self._checkpoint(now)
        self.writer.close()
        self.episode_log.close()
        run = self.config.run
        summary = {
            "algo": run.algo,
            "env": run.env,
            "workers": run.workers,
            "seed": run.seed,
            "serial": run.serial,
            "stop_reason": self.stop_reason or "error",
            "failure": self.failure,
            "worker_failures": self.failures,
            "target_return": run.target_return if math.isfinite(run.target_return) else None,
            "reached_target": self.solved_at is not None,
            "time_to_target_s": self.solved_at[0] if self.solved_at else None,
            "steps_to_target": self.solved_at[1] if self.solved_at else None,
            "resumed_from_step": self.resumed_from_step,
            "learner": ({"sync": self.config.algo.sync, "correction": self.config.algo.correction,
                         "device": self.config.algo.learner_device,
                         "mean_policy_lag": self._lag_sum / self._lag_batches if self._lag_batches else None}
                        if self.has_learner else None),
            "global_step": self.counters.global_step,
            "updates": self.counters.policy_version,
            "episodes": self.episodes.count,
            "mean_return_100": None if math.isnan(self.episodes.mean_return) else self.episodes.mean_return,
            "wall_time_s": now - self.t_start,
            "steps_per_s": self.counters.global_step / max(now - self.t_start, 1e-9),
            "cpu_count": os.cpu_count(),
            "oversubscribed": run.workers + self.has_learner > (os.cpu_count() or 1),
            "pinned": run.pin_workers,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        with open(self.run_dir / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
        try:
            plot_learning_curve(self.run_dir / "metrics.csv", self.run_dir / "learning_curve.png",
                                run.target_return, title=f"{run.algo} on {run.env}, {run.workers} workers")
        except ValueError:
            pass
        return summary

    # -- signals ------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        def handler(signum, frame):
            self._signal = signum

        old = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                old[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread
                pass
        return old

    def _restore_signal_handlers(self, old: dict[int, Any]) -> None:
        for signum, handler in old.items():
            signal.signal(signum, handler)
