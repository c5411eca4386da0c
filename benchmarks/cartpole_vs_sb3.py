"""Wall time to solve CartPole-v1: asyncrl A3C against Stable-Baselines3 PPO (zoo).

For each seed, runs ``python -m asyncrl.run --workers W --seed S`` and SB3 PPO with the
rl-baselines3-zoo CartPole-v1 hyperparameters back to back, in child processes of this
one, and records the wall time and env steps until the mean return of the last 100
episodes first reaches 475. Both clocks start before the model is built and exclude
interpreter start-up; the whole process wall time is recorded too.

    python benchmarks/cartpole_vs_sb3.py --seeds 0 1 2 --workers 2

Writes ``benchmarks/results/cartpole_vs_sb3.{json,md}``. Needs ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, fmt, run_json, spread, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baselines", nargs="+", default=["ppo"], choices=["ppo", "a2c"])
    parser.add_argument("--name", default="cartpole_vs_sb3")
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            ours = asyncrl_run(["--workers", str(args.workers), "--seed", str(seed)],
                               Path(tmp) / f"a3c-{seed}")
            runs.append({"system": f"asyncrl a3c ({args.workers} workers)", **_pick(ours),
                         "process_wall_s": ours["process_wall_s"]})
            print(_line(runs[-1]), flush=True)
            for algo in args.baselines:
                summary, wall, err = run_json(
                    [sys.executable, str(Path(__file__).parent / "sb3_baseline.py"), "--algo", algo,
                     "--seed", str(seed)], timeout=900)
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
    ours, baseline = systems[0], systems[1]
    ratio = table[ours]["time_to_target_s"]["median"] / table[baseline]["time_to_target_s"]["median"]
    md = ["| system | solved | time to 475 (s) | env steps to 475 | env steps/s | process wall (s) |",
          "|---|---|---|---|---|---|"]
    for system in systems:
        t = table[system]
        md.append(f"| {system} | {t['solved']} | {fmt(t['time_to_target_s'])} | "
                  f"{fmt(t['steps_to_target'], 0)} | {fmt(t['steps_per_s'], 0)} | {fmt(t['process_wall_s'])} |")
    md.append("")
    md.append(f"Median time to 475, {ours} / {baseline}: **{ratio:.2f}×** "
              f"(seeds {' '.join(map(str, args.seeds))}; median (min–max)).")
    markdown = "\n".join(md) + "\n"
    write_results(args.name, {"seeds": args.seeds, "runs": runs, "table": table,
                              "time_ratio_vs_first_baseline": ratio}, markdown)
    print(markdown)


def _pick(summary):
    keys = ("seed", "reached_target", "time_to_target_s", "steps_to_target", "global_step",
            "wall_time_s", "steps_per_s")
    return {k: summary.get(k) for k in keys}


def _line(run):
    t = run["time_to_target_s"]
    return (f"{run['system']:<32} seed {run['seed']}: "
            f"{'%.1f s' % t if t is not None else 'not solved'} to 475, "
            f"{run['steps_to_target']} steps, {run['steps_per_s']:.0f} steps/s")


if __name__ == "__main__":
    main()
