"""Training metrics: episode statistics, ``metrics.csv``, TensorBoard, the live
progress display and the learning-curve plot."""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil

BASE_COLUMNS = (
    "global_step",  # env steps summed over all workers
    "wall_time_s",  # seconds since training started
    "episodes",  # episodes finished, all workers
    "mean_return_100",  # mean return of the last 100 finished episodes
    "mean_length_100",  # mean length (env steps) of the same episodes
    "steps_per_s",  # env steps per second over the last interval, all workers
    "updates",  # optimizer updates applied to the shared model (policy version)
    "cpu_percent",  # system-wide CPU use over the last interval, 0-100
    "process_cpu_percent",  # CPU use of this run's processes, 100 = one core
    "rss_mb",  # resident memory of this run's processes, MiB
    "workers_alive",
)


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
    kept = path.read_text().splitlines(keepends=True)[1 : 1 + keep_rows] \
        if keep_rows is not None and path.exists() else []
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


class ProcessTreeMonitor:
    """CPU and memory of this process and its worker processes, via psutil."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
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
        """CPU use since the previous call, and resident memory now."""
        cpu = 0.0
        rss = 0
        for pid, proc in list(self._procs.items()):
            try:
                cpu += proc.cpu_percent(interval=None)
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                del self._procs[pid]
        return {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "process_cpu_percent": cpu,
            "rss_mb": rss / 2**20,
        }


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

    def __init__(self, run_dir: Path, loss_names: tuple[str, ...], tensorboard: bool = True,
                 keep_rows: int | None = None) -> None:
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
    if key in ("mean_return_100", "mean_length_100", "episodes"):
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
    """

    def __init__(self, mode: str, total_steps: int, plain_every: float = 10.0) -> None:
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self.total_steps = total_steps
        self.plain_every = plain_every
        self._last_plain = -math.inf
        self._progress = None
        if mode == "rich":
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

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
        eta = _hms(remaining)
        if self._progress is not None:
            self._progress.update(
                self._task, completed=global_step, sps=sps, episodes=episodes,
                mean_return=mean_return, eta=eta,
            )
        elif self.mode == "plain" and time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            print(
                f"T={global_step:,} steps/s={sps:,.0f} episodes={episodes} "
                f"mean_return_100={mean_return:.1f} elapsed={_hms(elapsed_s)} eta={eta}",
                file=sys.stderr, flush=True,
            )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


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


def plot_learning_curve(metrics_csv: str | os.PathLike, png_path: str | os.PathLike,
                        target_return: float | None = None, title: str | None = None) -> None:
    """Plot mean return of the last 100 episodes against env steps and wall time.

    Args:
        metrics_csv: a run's ``metrics.csv``.
        png_path: where to write the PNG.
        target_return: drawn as a dashed line if finite.
        title: the figure title.

    Raises:
        ValueError: if the CSV has no rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_metrics(metrics_csv)
    if not data:
        raise ValueError(f"{metrics_csv} has no rows to plot")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x_key, x_label in (
        (axes[0], "global_step", "env steps T (all workers)"),
        (axes[1], "wall_time_s", "wall time (s)"),
    ):
        ax.plot(data[x_key], data["mean_return_100"], lw=1.8)
        if target_return is not None and math.isfinite(target_return):
            ax.axhline(target_return, ls="--", c="grey", lw=1, label=f"target {target_return:g}")
            ax.legend(loc="lower right")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean return, last 100 episodes")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


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
