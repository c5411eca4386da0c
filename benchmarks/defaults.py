"""The general defaults beyond the presets: every discrete algorithm on Acrobot-v1 and
CartPole-v1 with no flag but ``--env``, ``--workers 2`` and ``--seed``.

Acrobot-v1 has no preset: the algorithms' general defaults must reach its threshold (mean
return of the last 100 episodes >= -100) within 500k env steps. No general default depends
on ``--total-steps`` (no learning rate or clip is annealed, and epsilon anneals over a
fixed number of env steps), so an Acrobot run is given ``--total-steps 500000``: the same
run as the default 1M-step one, stopped where the requirement ends. CartPole-v1 runs
exactly as a user's ``python -m asyncrl.run --algo A --workers 2`` does (its presets,
``--total-steps`` 1M). Every run stops at the env's threshold.

    python benchmarks/defaults.py --seeds 0 1 2

Writes ``benchmarks/results/defaults.{json,md}`` (env steps and wall time to the
threshold per seed, on this machine's cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, fmt, parse_args, spread, write_results  # noqa: E402

ALGOS = ["a3c", "one-step-q", "one-step-sarsa", "n-step-q", "a2c", "ppo"]
BUDGETS = {"Acrobot-v1": 500_000, "CartPole-v1": None}
"""Env steps within which the threshold must be reached (None: the default --total-steps)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS)
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    args = parse_args(parser, seeds=[0], algos=["a3c"], envs=["Acrobot-v1"])
    budgets = {env: 2_000 for env in BUDGETS} if args.smoke else BUDGETS
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            for algo in args.algos:
                for seed in args.seeds:
                    flags = ["--algo", algo, "--env", env, "--workers", str(args.workers), "--seed", str(seed)]
                    if budgets[env] is not None:
                        flags += ["--total-steps", str(budgets[env])]
                    s = asyncrl_run(flags, Path(tmp) / f"{algo}-{env}-{seed}", timeout=1800)
                    runs.append({"algo": algo, "env": env, "seed": seed, "command": "python -m asyncrl.run " +
                                 " ".join(flags), "reached": s["reached_target"],
                                 "steps_to_target": s["steps_to_target"], "time_to_target_s": s["time_to_target_s"],
                                 "global_step": s["global_step"], "wall_time_s": s["wall_time_s"],
                                 "mean_return": s["mean_return"], "target": s["target_return"],
                                 "cpu_count": s["cpu_count"], "oversubscribed": s["oversubscribed"]})
                    r = runs[-1]
                    print(f"{algo:15s} {env:12s} seed {seed}: " + (
                        f"{r['target']} reached at T={r['steps_to_target']:,} in {r['time_to_target_s']:.1f} s"
                        if r["reached"] else
                        f"not reached in {r['global_step']:,} env steps ({r['wall_time_s']:.0f} s), "
                        f"mean return {r['mean_return']:.1f}"), flush=True)
    lines = [f"`python benchmarks/defaults.py --seeds {' '.join(map(str, args.seeds))}`: `--workers {args.workers}` "
             f"on {runs[0]['cpu_count']} cores, no other flag (Acrobot-v1: `--total-steps 500000`, see the script). "
             "Env steps and wall seconds to the threshold, median (range) over the seeds that reached it.\n",
             "| algorithm | env | reached | env steps to threshold | seconds to threshold | per seed (env steps, "
             "or the final mean return if not reached) |", "|---|---|---|---|---|---|"]
    for env in args.envs:
        for algo in args.algos:
            rows = [r for r in runs if r["algo"] == algo and r["env"] == env]
            hit = [r for r in rows if r["reached"]]
            per_seed = ", ".join(f"{r['steps_to_target']:,}" if r["reached"] else f"({r['mean_return']:.0f})"
                                 for r in rows)
            lines.append(f"| {algo} | {env} | {len(hit)}/{len(rows)} | "
                         f"{fmt(spread([r['steps_to_target'] for r in hit]), 0)} | "
                         f"{fmt(spread([r['time_to_target_s'] for r in hit]), 1)} | {per_seed} |")
    markdown = "\n".join(lines) + "\n"
    write_results("defaults", {"runs": runs, "workers": args.workers, "budgets": BUDGETS}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
