"""Wall time and env steps to solve CartPole-v1: asyncrl algorithms side by side, and
against Stable-Baselines3 with the rl-baselines3-zoo hyperparameters.

For each seed, runs ``python -m asyncrl.run --algo A --workers W --seed S`` for every
``--algos`` entry and each ``--baselines`` SB3 algorithm back to back, in child processes
of this one, and records the wall time and env steps until the mean return of the last
100 episodes first reaches 475. Every clock starts before the model is built and
excludes interpreter start-up; the whole process wall time is recorded too. Ratios
compare each system's median time with the first one's.

    python benchmarks/cartpole_solve.py --algos a3c --baselines ppo --seeds 0 1 2
    python benchmarks/cartpole_solve.py --algos a3c one-step-q one-step-sarsa n-step-q --baselines

Writes ``benchmarks/results/NAME.{json,md}``. SB3 needs ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, fmt, parse_args, run_json, spread, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algos", nargs="+", default=["a3c"])
    parser.add_argument("--baselines", nargs="*", default=["ppo"], choices=["ppo", "a2c"])
    parser.add_argument("--total-steps", type=int, default=1_000_000, help="cap per asyncrl run")
    parser.add_argument("--name", default=None, help="results file stem (default: from the systems)")
    args = parse_args(parser, seeds=[0], total_steps=2_000)

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for algo in args.algos:
                ours = asyncrl_run(["--algo", algo, "--workers", str(args.workers), "--seed", str(seed),
                                    "--total-steps", str(args.total_steps)], Path(tmp) / f"{algo}-{seed}")
                runs.append({"system": f"asyncrl {algo} ({args.workers} workers)", **_pick(ours),
                             "process_wall_s": ours["process_wall_s"]})
                print(_line(runs[-1]), flush=True)
            for algo in args.baselines:
                summary, wall, err = run_json(
                    [sys.executable, str(Path(__file__).parent / "sb3_baseline.py"), "--algo", algo,
                     "--seed", str(seed), *(["--total-steps", "2000"] if args.smoke else [])], timeout=900)
                if summary is None:
                    raise RuntimeError(f"SB3 {algo} failed: {err}")
                runs.append({"system": f"SB3 {algo.upper()} (zoo, {summary['n_envs']} envs)",
                             **_pick(summary), "process_wall_s": wall})
                print(_line(runs[-1]), flush=True)

    systems = list(dict.fromkeys(r["system"] for r in runs))
    table = {}
    for system in systems:
        rows = [r for r in runs if r["system"] == system]
        table[system] = {
            "time_to_target_s": spread([r["time_to_target_s"] for r in rows]),
            "steps_to_target": spread([r["steps_to_target"] for r in rows]),
            "steps_per_s": spread([r["steps_per_s"] for r in rows]),
            "process_wall_s": spread([r["process_wall_s"] for r in rows]),
            "solved": f"{sum(r['reached_target'] for r in rows)}/{len(rows)}",
        }
    first = table[systems[0]]["time_to_target_s"]["median"]
    ratios = {}
    md = [f"CartPole-v1, target 475 (mean return of the last 100 episodes), seeds "
          f"{' '.join(map(str, args.seeds))}; median (min–max).", "",
          f"| system | solved | time to 475 (s) | env steps to 475 | env steps/s | process wall (s) | "
          f"time ÷ {systems[0]} |", "|---|---|---|---|---|---|---|"]
    for system in systems:
        t = table[system]
        median = t["time_to_target_s"]["median"]
        ratios[system] = median / first if median is not None and first else None
        ratio = f"{ratios[system]:.2f}×" if ratios[system] is not None else "n/a"
        md.append(f"| {system} | {t['solved']} | {fmt(t['time_to_target_s'])} | "
                  f"{fmt(t['steps_to_target'], 0)} | {fmt(t['steps_per_s'], 0)} | {fmt(t['process_wall_s'])} | "
                  f"{ratio} |")
    markdown = "\n".join(md) + "\n"
    name = args.name or "cartpole_solve_" + "_".join(args.algos + [f"sb3-{b}" for b in args.baselines])
    write_results(name, {"seeds": args.seeds, "workers": args.workers, "runs": runs, "table": table,
                         "time_ratio_vs_first": ratios}, markdown)
    print(markdown)


def _pick(summary):
    keys = ("seed", "reached_target", "time_to_target_s", "steps_to_target", "global_step",
            "wall_time_s", "steps_per_s")
    return {k: summary.get(k) for k in keys}


def _line(run):
    t = run["time_to_target_s"]
    return (f"{run['system']:<32} seed {run['seed']}: "
            f"{f'{t:.1f} s' if t is not None else 'not solved'} to 475, "
            f"{run['steps_to_target']} steps, {run['steps_per_s']:.0f} steps/s")


if __name__ == "__main__":
    main()
