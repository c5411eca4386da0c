"""Training metrics: episode statistics, ``metrics.csv``, TensorBoard, the live
progress display and the learning-curve plot."""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil

BASE_COLUMNS = (
    "global_step",  # env steps summed over all workers
    "wall_time_s",  # seconds since training started
    "episodes",  # episodes finished, all workers
    "mean_return",  # mean return of the last --return-window finished episodes
    "mean_length",  # mean length (env steps) of the same episodes
    "steps_per_s",  # env steps per second over the last interval, all workers
    "updates",  # optimizer updates applied to the shared model (policy version)
    "cpu_percent",  # system-wide CPU use over the last interval, 0-100
    "process_cpu_percent",  # CPU use of this run's processes, 100 = one core
    "pss_mb",  # proportional set size of this run's processes, MiB (Linux; empty elsewhere)
    "uss_mb",  # unique set size of this run's processes, MiB
    "workers_alive",
)


LagCounts = dict[int, int]
"""A policy-lag histogram: ``{lag in updates: number of updates (or rollouts) with it}``."""


def merge_lags(into: LagCounts, counts: Mapping[int, int] | Iterable[int]) -> LagCounts:
    """Add ``counts`` (a histogram, or lags one by one) into ``into``; returns ``into``."""
    items = counts.items() if isinstance(counts, Mapping) else Counter(int(c) for c in counts).items()
    for lag, n in items:
        into[int(lag)] = into.get(int(lag), 0) + int(n)
    return into


class LagMeter:
    """A policy-lag histogram filled one update at a time and emptied by each report (what
    every ``backends.contract.SharedModel`` view keeps for ``drain_lags``)."""

    def __init__(self) -> None:
        self._counts: LagCounts = {}

    def count(self, lag: int) -> None:
        """Count one update with policy lag ``lag``."""
        self._counts[lag] = self._counts.get(lag, 0) + 1

    def drain(self) -> LagCounts:
        """The counts since the last call."""
        counts, self._counts = self._counts, {}
        return counts


def lag_quantile(counts: Mapping[int, int], q: float) -> int:
    """The smallest lag ``L`` with at least a fraction ``q`` of the counted updates at or below
    it (the inverse of the empirical distribution function; ``q`` in (0, 1]).

    Raises:
        ValueError: if ``counts`` is empty or ``q`` is outside (0, 1].
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("no lags counted")
    seen = 0
    for lag in sorted(counts):
        seen += counts[lag]
        if seen >= q * total:
            return lag
    return max(counts)  # (not reached: seen == total at the last lag)


def lag_summary(counts: Mapping[int, int]) -> dict[str, float | int] | None:
    """``{"updates", "mean", "median", "p90", "max"}`` of a lag histogram (lags in updates of
    theta), or None if it is empty."""
    total = sum(counts.values())
    if not total:
        return None
    return {
        "updates": total,
        "mean": sum(lag * n for lag, n in counts.items()) / total,
        "median": lag_quantile(counts, 0.5),
        "p90": lag_quantile(counts, 0.9),
        "max": max(lag for lag, n in counts.items() if n),
    }


class EpisodeStats:
    """Returns and lengths of finished episodes, over all workers."""

    def __init__(self, window: int = 100) -> None:
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.count = int(state["count"])

    def add(self, episode_return: float, length: int) -> None:
        self.returns.append(episode_return)
        self.lengths.append(length)
        self.count += 1

    @property
    def full(self) -> bool:
        """Whether a whole window of episodes has finished."""
        return len(self.returns) == self.returns.maxlen

    @property
    def mean_return(self) -> float:
        """Mean return of the last ``window`` episodes (nan before the first)."""
        return sum(self.returns) / len(self.returns) if self.returns else math.nan

    @property
    def mean_length(self) -> float:
        return sum(self.lengths) / len(self.lengths) if self.lengths else math.nan


def _reopen_csv(path: Path, keep_rows: int | None) -> tuple[Any, list[str]]:
    """Open ``path`` for writing from scratch, returning the file and, when resuming
    (``keep_rows`` given), the first ``keep_rows`` data rows it held, to write back after
    the header: rows written after the checkpoint are dropped, never duplicated."""
    kept = (
        path.read_text().splitlines(keepends=True)[1 : 1 + keep_rows] if keep_rows is not None and path.exists() else []
    )
    return open(path, "w", newline=""), kept


class EpisodeLog:
    """``episodes.csv``: one row per finished episode, in the order the trainer receives
    them: ``global_step`` (T when it ended, env steps), ``worker_id``, ``return``,
    ``length`` (env steps).

    Args:
        run_dir: the run's folder.
        keep_rows: when resuming, keep this many rows (the episodes counted in the
            checkpoint) and append after them.
    """

    COLUMNS = ("global_step", "worker_id", "return", "length")

    def __init__(self, run_dir: Path, keep_rows: int | None = None) -> None:
        self._file, kept = _reopen_csv(Path(run_dir) / "episodes.csv", keep_rows)
        self._csv = csv.writer(self._file)
        self._csv.writerow(self.COLUMNS)
        self._file.writelines(kept)

    def write(self, worker_id: int, episodes: list[tuple[float, int, int]]) -> None:
        for episode_return, length, global_step in episodes:
            self._csv.writerow((global_step, worker_id, f"{episode_return:.6g}", length))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def process_memory(processes: list[psutil.Process]) -> dict[str, float]:
    """Memory of a set of processes, in MiB, counting shared pages once.

    ``pss_mb``: the proportional set size summed (each shared page divided among the
    processes that map it: torch's libraries, mapped by every worker, count once in
    all); ``uss_mb``: the unique set size summed (pages no other process maps). Summed
    RSS would count the shared pages once per process (a 16-worker CartPole run: 4.4 GiB
    of RSS for 0.7 GiB of PSS). PSS needs Linux (``/proc/PID/smaps_rollup``); elsewhere
    ``pss_mb`` is nan and ``uss_mb`` comes from the OS's own accounting (psutil's
    ``memory_full_info``). Processes that exit meanwhile are skipped.
    """
    pss = uss = 0
    has_pss = True
    for proc in processes:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        uss += info.uss
        if hasattr(info, "pss"):
            pss += info.pss
        else:
            has_pss = False
    return {"pss_mb": pss / 2**20 if has_pss else math.nan, "uss_mb": uss / 2**20}


MEMORY_EVERY_S = 10.0
"""Seconds between two memory samples: ``process_memory`` reads every process's
``/proc/PID/smaps_rollup`` (about 2 ms each with torch mapped; 30 ms for 16 workers), and
memory moves slowly; rows in between repeat the last sample."""


class ProcessTreeMonitor:
    """CPU and memory of this process and its worker processes, via psutil."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._memory: dict[str, float] = {}
        self._next_memory = 0.0
        psutil.cpu_percent(interval=None)  # starts the system-wide interval

    def watch(self, pids: list[int]) -> None:
        for pid in [os.getpid(), *pids]:
            if pid not in self._procs:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(interval=None)  # starts this process's interval
                    self._procs[pid] = proc
                except psutil.NoSuchProcess:
                    pass

    def sample(self) -> dict[str, float]:
        """CPU use since the previous call, and memory (``process_memory``) as of the last
        ``MEMORY_EVERY_S`` seconds."""
        cpu = 0.0
        for pid, proc in list(self._procs.items()):
            try:
                cpu += proc.cpu_percent(interval=None)
            except psutil.NoSuchProcess:
                del self._procs[pid]
        now = time.monotonic()
        if now >= self._next_memory:
            self._next_memory = now + MEMORY_EVERY_S
            self._memory = process_memory(list(self._procs.values()))
        return {"cpu_percent": psutil.cpu_percent(interval=None), "process_cpu_percent": cpu, **self._memory}


class MetricsWriter:
    """Rows to ``metrics.csv`` and scalars to TensorBoard, in one call.

    Args:
        run_dir: the run's folder; ``metrics.csv`` and the TensorBoard event files go
            there.
        loss_names: the algorithm's loss metrics, appended as columns.
        tensorboard: write TensorBoard events (needs the ``tensorboard`` package).
        keep_rows: when resuming, keep this many data rows of the existing
            ``metrics.csv`` (those written up to the checkpoint) and append after them.
    """

    def __init__(
        self, run_dir: Path, loss_names: tuple[str, ...], tensorboard: bool = True, keep_rows: int | None = None
    ) -> None:
        self.columns = (*BASE_COLUMNS, *loss_names)
        self._file, kept = _reopen_csv(Path(run_dir) / "metrics.csv", keep_rows)
        self.rows = len(kept)
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
        self._csv.writeheader()
        self._file.writelines(kept)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir), flush_secs=10)

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self._file.flush()
        self.rows += 1
        if self._tb is not None:
            step = int(row["global_step"])
            for key in self.columns[1:]:
                value = row.get(key)
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self._tb.add_scalar(_tb_tag(key), value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def _tb_tag(key: str) -> str:
    if key in ("mean_return", "mean_length", "episodes"):
        return f"episode/{key}"
    if key.endswith("loss") or key == "entropy" or key.startswith("q_"):
        return f"loss/{key}"
    return f"perf/{key}"


class Progress:
    """Live display of a run: env steps, steps/s, episodes, mean return, elapsed and
    remaining time.

    Args:
        mode: ``"rich"`` (a progress bar on stderr), ``"plain"`` (a line on stderr every
            ``plain_every`` seconds), ``"none"``, or ``"auto"`` (rich on a terminal).
        total_steps: T_max, for the bar and the time-remaining estimate.
        max_seconds: the run's time limit (``--max-seconds``), which caps the estimate.
    """

    def __init__(
        self, mode: str, total_steps: int, plain_every: float = 10.0, max_seconds: float | None = None
    ) -> None:
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self.total_steps = total_steps
        self.max_seconds = max_seconds
        self.plain_every = plain_every
        self._last_plain = -math.inf
        self._progress = None
        if mode == "rich":
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("[bold]T[/bold] {task.completed:>9,.0f}"),
                BarColumn(),
                TextColumn("{task.fields[sps]:>7,.0f} steps/s"),
                TextColumn("ep {task.fields[episodes]:>6}"),
                TextColumn("return {task.fields[mean_return]:>7.1f}"),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}"),
                transient=False,
            )
            self._task = self._progress.add_task(
                "train", total=total_steps, sps=0.0, episodes=0, mean_return=math.nan, eta="-"
            )
            self._progress.start()

    def update(self, global_step: int, elapsed_s: float, episodes: int, mean_return: float) -> None:
        sps = global_step / elapsed_s if elapsed_s > 0 else 0.0
        remaining = (self.total_steps - global_step) / sps if sps > 0 else math.inf
        if self.max_seconds is not None:  # whichever comes first: T_max or the time limit
            remaining = min(remaining, max(self.max_seconds - elapsed_s, 0.0))
        eta = _hms(remaining)
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=global_step,
                sps=sps,
                episodes=episodes,
                mean_return=mean_return,
                eta=eta,
            )
        elif self.mode == "plain" and time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            print(
                f"T={global_step:,} steps/s={sps:,.0f} episodes={episodes} "
                f"mean_return={mean_return:.1f} elapsed={_hms(elapsed_s)} eta={eta}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class RunMetrics:
    """A run's statistics as the trainer receives them, and where they go.

    Keeps the window of the last ``return_window`` episodes and the moment it first reaches the
    target (``solved_at``), per-row means of the losses, the mean policy lag; writes
    ``episodes.csv``, ``metrics.csv`` (with TensorBoard) and the live display.

    The row at the target crossing: when the window first reaches ``target_return``, a
    ``metrics.csv`` row is written at once, before any later episode moves the window,
    so that the files agree with a ``target_reached`` stop even when episodes that
    finish after the crossing (many workers drain theirs at the stop) pull the mean back
    below the target.

    Args:
        run_dir: the run's folder.
        loss_names: the algorithm's loss metrics (``metrics.csv`` columns).
        counters: the global counters (``T`` and the update count are read from them).
        t_start: ``time.monotonic()`` at which the run's wall clock reads 0 (earlier for a
            resumed run).
        target_return: the mean return over the window that ends the run.
        total_steps: T_max, for the progress display.
        max_seconds: the run's time limit, for the progress display's estimate (None: none).
        workers_alive: ``() -> int``, how many actor-learner or actor processes run now.
        progress: ``Progress`` mode.
        resumed: a resumed run's checkpoint (its rows and episode window are kept), or None.
        return_window: episodes in the window (``--return-window``).
    """

    def __init__(
        self,
        run_dir: Path,
        loss_names: tuple[str, ...],
        counters: Any,
        t_start: float,
        target_return: float,
        total_steps: int,
        workers_alive: Any,
        progress: str,
        resumed: dict[str, Any] | None = None,
        return_window: int = 100,
        max_seconds: float | None = None,
    ) -> None:
        self.loss_names = loss_names
        self.counters, self.t_start, self.target_return = counters, t_start, target_return
        self.workers_alive = workers_alive
        self.episodes = EpisodeStats(return_window)
        if resumed is not None:
            self.episodes.load_state_dict(resumed["episodes_window"])
        self.solved_at: tuple[float, int, float] | None = None  # (wall_time_s, global_step, mean return)
        self._loss_sums: dict[str, float] = {}
        self._loss_updates = 0
        self._lag_sum, self._lag_batches = 0.0, 0  # policy lag summed over learner batches (A2C, PPO)
        self.lags: LagCounts = {}  # the run's policy-lag histogram (updates, or rollouts for a learner)
        self._last_row = (time.monotonic(), counters.global_step)
        self.peak_memory = {"pss_mb": math.nan, "uss_mb": math.nan}  # the largest over the rows, MiB
        self.writer = MetricsWriter(run_dir, loss_names, keep_rows=resumed["metrics_rows"] if resumed else None)
        self.episode_log = EpisodeLog(run_dir, keep_rows=resumed["episodes"] if resumed else None)
        self.monitor = ProcessTreeMonitor()
        self.progress = Progress(progress, total_steps, max_seconds=max_seconds)

    @property
    def mean_policy_lag(self) -> float | None:
        """Mean policy lag over the learner's batches (A2C, PPO), or None before the first."""
        return self._lag_sum / self._lag_batches if self._lag_batches else None

    def on_stats(self, worker_id: int, stats: dict[str, Any]) -> None:
        """Account one worker report (``WorkerStats.drain`` layout)."""
        self.episode_log.write(worker_id, stats["episodes"])
        for episode_return, length, _ in stats["episodes"]:
            self.episodes.add(episode_return, length)
            if self.solved_at is None and self.episodes.full and self.episodes.mean_return >= self.target_return:
                now = time.monotonic()
                self.solved_at = (now - self.t_start, self.counters.global_step, self.episodes.mean_return)
                self.write_row(now)  # the row at the crossing, before later episodes move the window
        for name, value in stats["loss_sums"].items():
            self._loss_sums[name] = self._loss_sums.get(name, 0.0) + value
        self._loss_updates += stats["updates"]
        merge_lags(self.lags, stats.get("lags", {}))
        if "policy_lag" in stats["loss_sums"]:
            self._lag_sum += stats["loss_sums"]["policy_lag"]
            self._lag_batches += stats["updates"]

    def write_row(self, now: float) -> None:
        """One ``metrics.csv`` row: counters, the episode window, steps/s since the last
        row, CPU and memory, and the losses' means since the last row."""
        step = self.counters.global_step
        last_time, last_step = self._last_row
        self._last_row = (now, step)
        row: dict[str, Any] = {
            "global_step": step,
            "wall_time_s": now - self.t_start,
            "episodes": self.episodes.count,
            "mean_return": self.episodes.mean_return,
            "mean_length": self.episodes.mean_length,
            "steps_per_s": (step - last_step) / (now - last_time) if now > last_time else math.nan,
            "updates": self.counters.policy_version,
            "workers_alive": self.workers_alive(),
            **self.monitor.sample(),
        }
        for name in self.loss_names:
            row[name] = self._loss_sums.get(name, math.nan) / self._loss_updates if self._loss_updates else math.nan
        self._loss_sums, self._loss_updates = {}, 0
        self.writer.write(row)
        self.episode_log.flush()
        for key in ("pss_mb", "uss_mb"):
            if math.isfinite(row[key]) and not row[key] <= self.peak_memory[key]:
                self.peak_memory[key] = row[key]

    def show(self, now: float) -> None:
        """Refresh the live display."""
        self.progress.update(
            self.counters.global_step, now - self.t_start, self.episodes.count, self.episodes.mean_return
        )

    def final_row(self, now: float) -> None:
        """The last display update and the last row."""
        self.show(now)
        self.progress.close()
        self.write_row(now)

    def close(self) -> None:
        """Close the files."""
        self.writer.close()
        self.episode_log.close()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_metrics(path: str | os.PathLike) -> dict[str, list[float]]:
    """Columns of a ``metrics.csv`` as lists of floats (nan where empty)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}


def steady_steps_per_s(path: str | os.PathLike, skip_s: float = 1.0) -> float | None:
    """Env steps/s over the steady part of a run: between the first ``metrics.csv`` row at
    or after ``skip_s`` seconds (start-up excluded) and the last periodic row (the final
    row, written at shutdown, excluded). None if fewer than two such rows.

    Args:
        path: a run's ``metrics.csv``.
        skip_s: seconds of start-up to leave out.
    """
    m = read_metrics(path)
    rows = [(t, s) for t, s in zip(m.get("wall_time_s", []), m.get("global_step", [])) if t >= skip_s]
    rows = rows[:-1]  # the last row is written at shutdown
    if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
        return None
    (t0, s0), (t1, s1) = rows[0], rows[-1]
    return (s1 - s0) / (t1 - t0)


def plot_learning_curve(
    metrics_csv: str | os.PathLike,
    png_path: str | os.PathLike,
    target_return: float | None = None,
    title: str | None = None,
    return_window: int = 100,
) -> None:
    """Plot the mean return of the last ``return_window`` episodes against env steps and
    wall time.

    Args:
        metrics_csv: a run's ``metrics.csv``.
        png_path: where to write the PNG.
        target_return: drawn as a dashed line if finite.
        title: the figure title.

    Raises:
        ValueError: if the CSV has no rows.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend to load

    data = read_metrics(metrics_csv)
    if not data:
        raise ValueError(f"{metrics_csv} has no rows to plot")
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x_key, x_label in (
        (axes[0], "global_step", "env steps T (all workers)"),
        (axes[1], "wall_time_s", "wall time (s)"),
    ):
        ax.plot(data[x_key], data["mean_return"], lw=1.8)
        if target_return is not None and math.isfinite(target_return):
            ax.axhline(target_return, ls="--", c="grey", lw=1, label=f"target {target_return:g}")
            ax.legend(loc="lower right")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean return, last {return_window} episodes")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on: cores, CPU model, memory, OS and versions."""
    import platform

    import gymnasium
    import numpy
    import torch

    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }
