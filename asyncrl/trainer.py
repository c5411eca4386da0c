"""The trainer: one run's pieces wired in one place, and the loop that drives them.

``asyncrl.prepare`` checks the config against its environment first; ``Trainer.train``
creates the shared state (model, optimizer statistics, global step counter ``T``), then
hands each duty to its own piece: the backend's supervisor (``asyncrl.backends``: forked
processes on shared memory, or Ray actors around a server) starts the actor-learner (or
actor and learner) processes and collects their reports, the ``FailurePolicy`` decides what
a failed worker means, ``RunMetrics`` keeps the episode window, ``metrics.csv`` and the display, and
``asyncrl.checkpoint`` saves and restores the shared state. The trainer decides when to
stop and writes the summary. ``--serial`` runs the same actor-learners round-robin in this
process, one update each, which is deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from asyncrl import backends, registry
from asyncrl.algos.base import set_rng_state
from asyncrl.backends import contract
from asyncrl.checkpoint import load_latest_good, restore_shared, save_checkpoint, snapshot_shared
from asyncrl.config import Config
from asyncrl.metrics import RunMetrics, lag_summary, plot_learning_curve
from asyncrl.policy_lag import LaggedModel
from asyncrl.prepare import RunDirError, Setup, prepare
from asyncrl.shared import GlobalCounters
from asyncrl.storage import PublicationStalled
from asyncrl.supervisor import FailurePolicy, WorkerFailure, report

__all__ = ["RunDirError", "Setup", "Trainer", "WorkerFailure", "prepare"]

LEARNER_STARVED_S = 5.0
"""Seconds the learner may wait for rollouts after every actor has finished (an actor that
died mid-rollout took its steps with it) before the run ends."""


class Trainer:
    """Trains one ``Config``: shared state, processes, metrics, checkpoints, summary.

    Args:
        config: the run's configuration; ``prepare`` is applied to it.
        quiet: no progress display (tests, benchmarks).

    Raises:
        EnvError: (from ``prepare``) if the environment is unusable.
        RunDirError: (from ``prepare``) if the run folder cannot be written.
        DeviceError: (from ``prepare``) if ``--learner-device`` is not available.
    """

    def __init__(self, config: Config, quiet: bool = False) -> None:
        setup = prepare(config)
        self.config = setup.config
        self.obs, self.action = setup.obs, setup.action
        self.algo = registry.get(self.config.run.algo)
        self.backend = backends.get(self.config.run.backend)
        self.has_learner = self.algo.learner is not None  # A2C, PPO, DQN, ...: actors feed one learner process
        self.learner_id = self.config.run.workers if self.has_learner else None  # after the actors' ids
        self.quiet = quiet
        self.run_dir = Path(self.config.run.run_dir)
        self.stop_reason: str | None = None
        self.failure: str | None = None
        self._signal: int | None = None
        self._actors_done_at: float | None = None
        self.generation = 0  # restarts so far (and before a resume); sets new workers' seeds
        self._rng_states: dict[int, dict[str, Any]] = {}  # each worker's latest random state
        self._restore_rng: dict[int, dict[str, Any]] = {}  # from a resumed checkpoint
        self.supervisor: contract.Supervisor | None = None

    # -- public -----------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train until a stop condition; write metrics, checkpoint, plot and summary.

        Stop conditions: ``T >= total_steps``, the mean return of the last ``--return-window`` episodes
        reaching ``target_return``, ``max_seconds`` elapsed, SIGINT/SIGTERM, or a worker
        failure.

        Returns:
            The summary also written to ``summary.json`` (``stop_reason``,
            ``reached_target``, ``time_to_target_s``, ``steps_to_target``, ...).

        Raises:
            WorkerFailure: if a worker raised or died beyond the failure policy; metrics
                and a checkpoint are written first.
            CheckpointError: if ``--resume`` finds no readable checkpoint that fits.
        """
        run = self.config.run
        with open(self.run_dir / "config.json", "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
        torch.set_num_threads(1)
        self.shared = self.algo.make_shared(self.config, self.obs, self.action)
        resumed = self._load_resume_checkpoint() if run.resume else None
        self.counters = GlobalCounters(
            run.workers + self.has_learner,
            initial_step=resumed["global_step"] if resumed else 0,
            initial_updates=resumed["policy_version"] if resumed else 0,
        )
        self.resumed_from_step = resumed["global_step"] if resumed else None
        # T as the actor-learners decide by whether to go on (--sync: as of the last round's end)
        self.decided_counters = self.shared.for_worker(0, self.counters)[1]
        if resumed and self.shared.replay is not None:
            print(
                f"asyncrl.run: resumed at T={resumed['global_step']:,} with an empty replay (a checkpoint holds no "
                f"transitions): the learner waits for {self.config.algo.learning_starts:,} new ones "
                "(--learning-starts) before it updates again",
                file=sys.stderr,
                flush=True,
            )
        self.failure_policy = FailurePolicy(self.config, self.learner_id)
        old_handlers = self._install_signal_handlers()
        try:
            pids: list[int] = []
            if not run.serial:
                # Workers start before this process creates any thread (TensorBoard's
                # writer, the progress display), so that forking them is safe.
                self.supervisor = self._make_supervisor()
                pids = self.supervisor.start(self._worker_config, self._restore_rng)
            # (after Ray's start-up, where there is one: it is not training time)
            self.t_start = time.monotonic() - (resumed["wall_time_s"] if resumed else 0.0)
            self.startup_s = time.time() - psutil.Process().create_time()  # process start to training start
            self._next_row = time.monotonic() + run.log_interval
            self._next_checkpoint = time.monotonic() + run.checkpoint_interval
            loss_names = self.algo.loss_names
            if self.backend.remote and "policy_lag" not in loss_names:
                loss_names = (*loss_names, "policy_lag")  # measured by the parameter server
            self.metrics = RunMetrics(
                self.run_dir,
                loss_names,
                self.counters,
                self.t_start,
                run.target_return,
                run.total_steps,
                workers_alive=self._workers_alive,
                progress="none" if self.quiet else run.progress,
                resumed=resumed,
                return_window=run.return_window,
                max_seconds=run.max_seconds,
            )
            self.metrics.monitor.watch(pids)
            try:
                if run.serial:
                    self._train_serial()
                else:
                    self._train_processes()
            finally:
                if self.supervisor is not None:
                    self.supervisor.stop(self._on_stats)
                summary = self._finish()
        finally:
            if self.supervisor is not None and self.supervisor.running():
                self.supervisor.stop(lambda *args: None)  # (the first stop was interrupted)
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
        shared = self.shared
        if self.config.run.policy_lag:  # every pull K updates stale (a resumed run starts its ring anew)
            shared = LaggedModel(self.shared, self.config.run.policy_lag)
        workers = [
            self.algo.actor(i, self._worker_config(), *shared.for_worker(i, self.counters))
            for i in range(self.config.run.workers)
        ]
        if self.has_learner:  # after the actors: each round it trains on their rollouts
            workers.append(self.algo.learner(self.learner_id, self._worker_config(), self.shared, self.counters))
        for worker_id, worker in enumerate(workers):
            if worker_id in self._restore_rng:
                set_rng_state(worker, self._restore_rng[worker_id])
        try:
            while self.stop_reason is None:
                for worker_id, worker in enumerate(workers):
                    worker.update()
                    self._on_stats(worker_id, report(worker))
                if self.has_learner and workers[-1].finished():
                    self.stop_reason = "total_steps"
                self._tick()
        finally:
            for worker in workers:
                worker.close()

    def _train_processes(self) -> None:
        supervisor = self.supervisor
        while self.stop_reason is None:
            supervisor.poll(0.05, self._on_stats, self._on_failure)
            if supervisor.all_done and self.stop_reason is None:
                self.stop_reason = "total_steps"
            if self.has_learner:
                self._check_learner_starved()
            self._tick()

    def _make_supervisor(self) -> contract.Supervisor:
        """The backend's supervisor (``asyncrl.backends``). Starting one may install signal
        handlers (Ray's ``init``): the trainer's are put back.

        Raises:
            BackendError: if the backend cannot start (a cluster that cannot be reached).
        """
        supervisor = self.backend.make_supervisor(
            self.config, self.shared, self.counters, self.obs, self.action, self.learner_id
        )
        self._install_signal_handlers()
        return supervisor

    def _check_learner_starved(self) -> None:
        """Stop a run whose actors have all finished while the learner still waits for
        rollouts that will not come, after ``LEARNER_STARVED_S`` for the last batch."""
        if not self.supervisor.actors_done or self.learner_id in self.supervisor.done or self.stop_reason:
            self._actors_done_at = None
        elif self._actors_done_at is None:
            self._actors_done_at = time.monotonic()
        elif time.monotonic() - self._actors_done_at > LEARNER_STARVED_S:
            self.stop_reason = "total_steps"

    def _worker_config(self) -> Config:
        """The config a new worker starts from: seeds ``seed + generation * workers +
        worker_id``, where the generation counts restarts, so that no two workers of a
        run share a seed. (Resumed workers then take their saved random state.)"""
        run = self.config.run
        return Config(
            run=dataclasses.replace(run, seed=run.seed + self.generation * run.workers), algo=self.config.algo
        )

    def _workers_alive(self) -> int:
        return self.supervisor.workers_alive() if self.supervisor is not None else self.config.run.workers

    def _load_resume_checkpoint(self) -> dict[str, Any]:
        """Restore the shared state from ``RUN_DIR/checkpoint.pt`` (or the previous one if
        it is damaged); returns the checkpoint.

        Raises:
            CheckpointError: if no readable checkpoint fits this run.
        """
        data, path, warning = load_latest_good(self.run_dir / "checkpoint.pt")
        if warning:
            print(f"asyncrl.run: warning: {warning}", file=sys.stderr, flush=True)
        restore_shared(self.shared, data, path)
        self.generation = int(data["generation"])
        self._restore_rng = {int(k): v for k, v in data["worker_rng"].items()}
        return data

    # -- reports, failures, stop conditions ----------------------------------

    def _on_stats(self, worker_id: int, stats: dict[str, Any]) -> None:
        self._rng_states[worker_id] = stats["rng"]
        self.metrics.on_stats(worker_id, stats)

    def _on_failure(self, worker_id: int, message: str, traceback_text: str | None) -> None:
        """Apply the failure policy: replace the worker (a fresh environment and seed, the
        same slot of the step counter), or stop the run."""
        if self.stop_reason is not None:
            return  # the run is ending anyway
        failure = self.failure_policy.decide(worker_id, message, traceback_text, self.counters.global_step)
        if failure is not None:
            self.failure, self.stop_reason = failure, "worker_failed"
            return
        self.generation += 1
        pid = self.supervisor.replace(worker_id, self._worker_config())
        if pid is not None:  # (a Ray actor-learner may run on another node)
            self.metrics.monitor.watch([pid])

    def _tick(self) -> None:
        """Check the stop conditions; write a metrics row and a checkpoint when due."""
        run = self.config.run
        now = time.monotonic()
        if self.stop_reason is None:
            if self._signal is not None:
                self.stop_reason = "interrupted"
            elif self.metrics.solved_at is not None:
                self.stop_reason = "target_reached"
            elif self.decided_counters.global_step >= run.total_steps and not self.has_learner:
                self.stop_reason = "total_steps"  # (a learner finishes the last batches first)
            elif run.max_seconds is not None and now - self.t_start >= run.max_seconds:
                self.stop_reason = "max_seconds"
        if now >= self._next_row:
            self._next_row = now + run.log_interval
            self.metrics.write_row(now)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + run.checkpoint_interval
            self._checkpoint(now)
        self.metrics.show(now)

    # -- checkpoints and the end of the run ----------------------------------

    def _checkpoint(self, now: float) -> None:
        """Save the run's state to ``RUN_DIR/checkpoint.pt``; if the learner left only half a
        publication in shared memory, keep the last checkpoint and say so."""
        target = self.shared.target
        if self.supervisor is not None and not self.supervisor.sync_state():
            print(
                f"asyncrl.run: warning: no checkpoint at T={self.counters.global_step:,}: the parameter server "
                f"was lost; {self.run_dir / 'checkpoint.pt'} is the last consistent state",
                file=sys.stderr,
                flush=True,
            )
            return
        self.metrics.episode_log.flush()  # the checkpoint counts these rows as written
        learner_alive = (lambda: self.supervisor.alive(self.learner_id)) if self.has_learner else (lambda: True)
        try:
            snapshot = snapshot_shared(self.shared, learner_alive)
        except PublicationStalled as exc:
            snapshot, reason = None, str(exc)
        else:
            reason = "the learner died in the middle of publishing its weights"
        if snapshot is None:
            print(
                f"asyncrl.run: warning: no checkpoint at T={self.counters.global_step:,}: {reason}; "
                f"{self.run_dir / 'checkpoint.pt'} is the last consistent state",
                file=sys.stderr,
                flush=True,
            )
            return
        model, optimizer = snapshot
        save_checkpoint(
            self.run_dir / "checkpoint.pt",
            {
                "config": self.config.to_dict(),
                "model": model,
                "target_model": target.model.state_dict() if target is not None else None,
                "optimizer": optimizer,
                "target_refreshes": target.refreshes if target is not None else None,
                "global_step": self.counters.global_step,
                "policy_version": self.counters.policy_version,
                "episodes": self.metrics.episodes.count,
                "episodes_window": self.metrics.episodes.state_dict(),
                "generation": self.generation,
                "worker_rng": {str(k): v for k, v in self._rng_states.items()},
                "metrics_rows": self.metrics.writer.rows,
                "wall_time_s": now - self.t_start,
            },
        )

    def _finish(self) -> dict[str, Any]:
        now = time.monotonic()
        self.metrics.final_row(now)
        self._checkpoint(now)
        self.metrics.close()
        run = self.config.run
        episodes, solved_at = self.metrics.episodes, self.metrics.solved_at
        summary = {
            "algo": run.algo,
            "env": run.env,
            "workers": run.workers,
            "seed": run.seed,
            "serial": run.serial,
            "backend": run.backend,
            "ray": self._remote_summary() if self.backend.remote else None,
            "stop_reason": self.stop_reason or "error",
            "failure": self.failure,
            "worker_failures": self.failure_policy.failures,
            "target_return": run.target_return if math.isfinite(run.target_return) else None,
            "reached_target": solved_at is not None,
            "time_to_target_s": solved_at[0] if solved_at else None,
            "steps_to_target": solved_at[1] if solved_at else None,
            "mean_return_at_target": solved_at[2] if solved_at else None,
            "resumed_from_step": self.resumed_from_step,
            "learner": self._learner_summary() if self.has_learner else None,
            "global_step": self.counters.global_step,
            "updates": self.counters.policy_version,
            # updates of theta between the theta a gradient (or rollout) came from and its update
            "policy_lag": lag_summary(self.metrics.lags),
            "episodes": episodes.count,
            "return_window": run.return_window,
            "mean_return": None if math.isnan(episodes.mean_return) else episodes.mean_return,
            "wall_time_s": now - self.t_start,
            "startup_s": self.startup_s,
            "steps_per_s": self.counters.global_step / max(now - self.t_start, 1e-9),
            "peak_pss_mb": _finite_or_none(self.metrics.peak_memory["pss_mb"]),
            "peak_uss_mb": _finite_or_none(self.metrics.peak_memory["uss_mb"]),
            "cpu_count": os.cpu_count(),
            # (a Ray cluster joined with --address gives each actor-learner one of the CPUs it declares)
            "oversubscribed": run.workers + self.has_learner > (os.cpu_count() or 1) and run.address is None,
            "pinned": run.pin_workers,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        with open(self.run_dir / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
        try:
            plot_learning_curve(
                self.run_dir / "metrics.csv",
                self.run_dir / "learning_curve.png",
                run.target_return,
                title=f"{run.algo} on {run.env}, {run.workers} workers",
                return_window=run.return_window,
            )
        except ValueError:
            pass
        return summary

    def _remote_summary(self) -> dict[str, Any]:
        out = self.supervisor.summary() if self.supervisor is not None else {}
        return {**out, "mean_policy_lag": self.metrics.mean_policy_lag}

    def _learner_summary(self) -> dict[str, Any]:
        a = self.config.algo
        out = {
            "sync": a.sync,
            "correction": getattr(a, "correction", None),
            "device": getattr(a, "learner_device", "cpu"),
            "mean_policy_lag": self.metrics.mean_policy_lag,
        }
        if self.shared.replay is not None:
            out.update(
                replay_size=self.shared.replay.capacity,
                replay_bytes=self.shared.replay.nbytes,
                replay_ratio=a.replay_ratio,
                replay_inserted=self.shared.replay.inserted,
                learner_updates=self.shared.rate.updates,
            )
        return out

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


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
