"""Start-up and shutdown cost of the main job: what a run costs outside training.

For each repeat, side by side in this process tree: a fresh interpreter that only imports
torch (``python -c "import torch"``), and the main job ``python -m asyncrl.run
--workers 2`` (A3C on CartPole-v1, to its target). From the run's ``summary.json``:
``startup_s`` (process start to training start) and ``wall_time_s`` (training); the rest
of the process wall time is shutdown (final row, checkpoint, summary, learning curve,
exit). Target: process wall time - ``wall_time_s`` <= torch's import time + 1.5 s.

    python benchmarks/startup.py --repeats 5

Writes ``benchmarks/results/startup.{json,md}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, child_env, fmt, parse_args, spread, write_results  # noqa: E402

MARGIN_S = 1.5
"""Seconds allowed outside training beyond torch's own import."""


def torch_import_s() -> float:
    """Wall time of a fresh interpreter that imports torch and exits."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env=child_env())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parse_args(parser, repeats=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            torch_s = torch_import_s()
            summary = asyncrl_run(["--workers", str(args.workers), "--seed", str(i)], Path(tmp) / f"run{i}")
            outside = summary["process_wall_s"] - summary["wall_time_s"]
            rows.append({
                "seed": i, "torch_import_s": torch_s, "process_wall_s": summary["process_wall_s"],
                "wall_time_s": summary["wall_time_s"], "startup_s": summary["startup_s"],
                "shutdown_s": outside - summary["startup_s"], "outside_training_s": outside,
                "budget_s": torch_s + MARGIN_S, "within_budget": outside <= torch_s + MARGIN_S,
                "stop_reason": summary["stop_reason"],
            })
            print(f"repeat {i}: torch import {torch_s:.2f} s; run {summary['process_wall_s']:.2f} s = start-up "
                  f"{summary['startup_s']:.2f} + training {summary['wall_time_s']:.2f} + shutdown "
                  f"{rows[-1]['shutdown_s']:.2f}; outside training {outside:.2f} s (budget {torch_s + MARGIN_S:.2f})",
                  flush=True)
    stats = {key: spread([r[key] for r in rows]) for key in
             ("torch_import_s", "process_wall_s", "wall_time_s", "startup_s", "shutdown_s", "outside_training_s")}
    excess = spread([r["outside_training_s"] - r["torch_import_s"] for r in rows])
    markdown = (
        f"`python benchmarks/startup.py --repeats {args.repeats}` — `python -m asyncrl.run --workers "
        f"{args.workers}` (A3C, CartPole-v1, to its target), median (range) over {args.repeats} repeats, seconds:\n\n"
        "| torch import | process wall | start-up | training (`wall_time_s`) | shutdown | outside training | "
        "outside − torch import |\n|---|---|---|---|---|---|---|\n"
        f"| {fmt(stats['torch_import_s'], 2)} | {fmt(stats['process_wall_s'], 2)} | {fmt(stats['startup_s'], 2)} | "
        f"{fmt(stats['wall_time_s'], 2)} | {fmt(stats['shutdown_s'], 2)} | {fmt(stats['outside_training_s'], 2)} | "
        f"{fmt(excess, 2)} |\n\n"
        f"Target: outside training ≤ torch import + {MARGIN_S} s; met in "
        f"{sum(r['within_budget'] for r in rows)} of {len(rows)} repeats.\n")
    write_results("startup", {"repeats": rows, "stats": stats, "excess_over_torch_import_s": excess,
                              "margin_s": MARGIN_S}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
