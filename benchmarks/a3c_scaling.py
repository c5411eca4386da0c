"""A3C throughput with 1 and 2 (or more) Hogwild actor-learners on this machine.

Runs ``python -m asyncrl.run --workers N --total-steps S --target-return inf`` for each
worker count, repeats interleaved (1, 2, 1, 2, ...) so that background load hits every
setting alike, and reports env steps/s over the run's steady state (metrics.csv rows
after the first second: start-up and the final checkpoint excluded), median and range
over repeats, and the ratio of medians to 1 worker. Worker counts above the usable
cores are marked oversubscribed.

    python benchmarks/a3c_scaling.py --workers 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asyncrl.metrics import steady_steps_per_s  # noqa: E402

from common import asyncrl_run, cpu_ceiling, fmt, parse_args, spread, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--total-steps", type=int, default=150_000)
    parser.add_argument("--algo", default="a3c")
    parser.add_argument("--learning", action="store_true",
                        help="train normally; by default --lr 0 freezes the initial policy so that every "
                        "worker count does the same work per step (same episode lengths, full updates)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--run-args", default="", help="more asyncrl.run flags for every run, as one string "
                        "(e.g. \"--hidden-sizes 64 64\")")
    args = parse_args(parser, repeats=1, total_steps=60_000)
    cores = len(os.sched_getaffinity(0))

    runs = []
    ceilings = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            ceilings.append(cpu_ceiling(min(max(args.workers), cores)))
            print(f"repeat {repeat}: CPU ceiling for {min(max(args.workers), cores)} processes "
                  f"{ceilings[-1]:.2f}x", flush=True)
            for workers in args.workers:
                run_dir = Path(tmp) / f"{workers}-{repeat}"
                summary = asyncrl_run(["--algo", args.algo, "--workers", str(workers), "--seed", str(repeat),
                                       "--total-steps", str(args.total_steps), "--target-return", "inf",
                                       "--log-interval", "0.5", *([] if args.learning else ["--lr", "0"]),
                                       *args.run_args.split()],
                                      run_dir)
                runs.append({"workers": workers, "repeat": repeat,
                             "steady_steps_per_s": steady_steps_per_s(run_dir / "metrics.csv"),
                             "overall_steps_per_s": summary["steps_per_s"],
                             "wall_time_s": summary["wall_time_s"]})
                print(f"workers {workers} repeat {repeat}: {runs[-1]['steady_steps_per_s']:.0f} steps/s "
                      f"(overall {summary['steps_per_s']:.0f})", flush=True)

    table = {}
    for workers in args.workers:
        rows = [r for r in runs if r["workers"] == workers]
        table[workers] = {"steady": spread([r["steady_steps_per_s"] for r in rows]),
                          "overall": spread([r["overall_steps_per_s"] for r in rows])}
    base = table[args.workers[0]]["steady"]["median"]
    workload = "learning" if args.learning else "frozen initial policy (--lr 0: full updates, fixed episode lengths)"
    md = [f"{args.algo} {args.run_args} on CartPole-v1, {workload}, {args.total_steps:,} env steps a run, "
          f"{args.repeats} repeats, {cores} usable cores.", "",
          "| workers | env steps/s (steady) | env steps/s (whole run) | ratio to "
          f"{args.workers[0]} worker (medians) | |", "|---|---|---|---|---|"]
    for workers in args.workers:
        t = table[workers]
        note = "oversubscribed" if workers > cores else ""
        md.append(f"| {workers} | {fmt(t['steady'], 0)} | {fmt(t['overall'], 0)} | "
                  f"{t['steady']['median'] / base:.2f}× | {note} |")
    ceiling = spread(ceilings)
    md += ["", f"Machine ceiling: {min(max(args.workers), cores)} independent CPU-bound Python processes run "
               f"{fmt(ceiling, 2)}× the work of one (median, range over repeats); the worker "
               "ratio cannot exceed it."]
    markdown = "\n".join(md) + "\n"
    write_results(args.name or f"{args.algo}_scaling",
                  {"algo": args.algo, "run_args": args.run_args, "usable_cores": cores, "learning": args.learning, "total_steps": args.total_steps,
                   "runs": runs, "cpu_ceiling": ceiling, "table": {str(k): v for k, v in table.items()}},
                  markdown)
    print(markdown)


if __name__ == "__main__":
    main()
