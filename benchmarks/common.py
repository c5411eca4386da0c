"""Helpers shared by the benchmark scripts: run a command, summarise repeats, write results."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("ASYNCRL_BENCH_RESULTS") or REPO / "benchmarks" / "results")
"""Where results go: ``benchmarks/results``, or ``$ASYNCRL_BENCH_RESULTS`` (a smoke run's folder)."""


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None, **smoke: Any) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with a ``--smoke`` flag: tiny budgets and one repeat (the
    ``smoke`` values replace the parsed ones), so that a test can run the script in seconds.
    A smoke run writes its results into a temporary folder (or ``$ASYNCRL_BENCH_RESULTS``),
    never over the committed ones."""
    global RESULTS
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budgets, one repeat: check that the script runs (results go to a temporary "
                             "folder, or $ASYNCRL_BENCH_RESULTS)")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in smoke.items():
            setattr(args, name, value)
        if not os.environ.get("ASYNCRL_BENCH_RESULTS"):
            os.environ["ASYNCRL_BENCH_RESULTS"] = tempfile.mkdtemp(prefix="asyncrl-bench-smoke-")
        RESULTS = Path(os.environ["ASYNCRL_BENCH_RESULTS"])
    return args


def results_dir() -> Path:
    """``RESULTS``, created (read at call time: ``--smoke`` redirects it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS


def child_env() -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH, for child processes."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _timed_run(cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=REPO)
    return proc, time.perf_counter() - start


def run_json(cmd: list[str], timeout: float) -> tuple[dict[str, Any] | None, float, str]:
    """Run ``cmd``; return (its JSON summary or None, process wall time in s, stderr tail)."""
    proc, wall = _timed_run(cmd, timeout)
    if proc.returncode != 0:
        return None, wall, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, ""


def asyncrl_run(args: list[str], run_dir: Path, timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m asyncrl.run ARGS`` and return its ``summary.json`` plus ``process_wall_s``."""
    cmd = [sys.executable, "-m", "asyncrl.run", *args, "--run-dir", str(run_dir), "--progress", "none"]
    proc, wall = _timed_run(cmd, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["process_wall_s"] = wall
    return summary


def learning_run(args: list[str], run_dir: Path, timeout: float = 4 * 3600) -> dict[str, Any]:
    """Run ``python -m asyncrl.run ARGS`` for a learning benchmark and summarise it: the
    summary's target and speed fields, the mean return of the last 100 episodes at the end
    (``final_mean_return``) and at its best, and the learning curve
    ``[(env steps, wall time s, mean return)]`` from ``metrics.csv``."""
    import math

    from asyncrl.metrics import read_metrics

    summary = asyncrl_run(args, run_dir, timeout=timeout)
    m = read_metrics(run_dir / "metrics.csv")
    curve = [(s, t, r) for s, t, r in zip(m["global_step"], m["wall_time_s"], m["mean_return"])
             if not math.isnan(r)]
    return {**{k: summary[k] for k in ("reached_target", "steps_to_target", "time_to_target_s", "global_step",
                                       "wall_time_s", "steps_per_s", "cpu_count")},
            "final_mean_return": summary["mean_return"],
            "best_mean_return": max((r for _, _, r in curve), default=None), "curve": curve}


def spread(values: list[float]) -> dict[str, float | None]:
    """Median, min and max of the finite values (None when there are none)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict[str, float | None], digits: int = 1) -> str:
    """``median (min-max)`` of a ``spread``."""
    if s["median"] is None:
        return "n/a"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def write_results(name: str, payload: dict[str, Any], markdown: str) -> Path:
    """Write ``results/NAME.json`` and ``results/NAME.md``; return the JSON path."""
    from asyncrl.metrics import machine_info

    results = results_dir()
    payload = {"machine": machine_info(), **payload}
    path = results / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    machine = payload["machine"]
    header = (f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores "
              f"({machine['physical_cores']} physical, {machine['logical_cores']} logical), "
              f"{machine['memory_gib']} GiB; Python {machine['python']}, torch {machine['torch']}, "
              f"gymnasium {machine['gymnasium']}.\n\n")
    (results / f"{name}.md").write_text(header + markdown)
    return path


_SPIN = """
import sys, time
end = time.perf_counter() + float(sys.argv[1])
n = 0
while time.perf_counter() < end:
    for _ in range(1000):
        pass
    n += 1
print(n)
"""


def cpu_ceiling(processes: int, seconds: float = 3.0) -> float:
    """Work done by ``processes`` independent CPU-bound Python loops run at once, relative
    to one alone: the most any ``processes``-way parallel speedup can reach on this
    machine right now (SMT siblings, frequency boost and other tenants all lower it)."""
    def run(k: int) -> int:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN, str(seconds)], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        return sum(int(p.communicate()[0]) for p in procs)

    return run(processes) / run(1)
