"""The batched learner (A2C, PPO) on CartPole-v1: against Stable-Baselines3, and sync vs async.

Part 1, against SB3 with the rl-baselines3-zoo hyperparameters (8 environments each):
our PPO and A2C (``--sync``, 2 actors x 4 envs, the CartPole-v1 presets, which are the
zoo's values) and our PPO in its fastest layout on 2 cores (1 actor x 8 envs,
``--async --correction vtrace``: the learner and the actor each keep a core busy),
beside SB3's PPO and A2C, seed by seed, in child processes of this one. Reports wall
time and env steps to 475, and env steps/s.

Part 2, sync vs async: A2C and PPO at 2 and 4 actors (8 environments in all, so every
row trains on the same batches), ``--sync``, ``--async`` and ``--async --correction
vtrace``: env steps/s, time to 475, and the mean policy lag (learner version minus the
version that acted, averaged over batches).

    python benchmarks/batched_learner.py --seeds 0 1 2
    python benchmarks/batched_learner.py --part sync-async --seeds 0

Writes ``benchmarks/results/batched_learner_*.{json,md}``; needs ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, fmt, parse_args, run_json, spread, write_results  # noqa: E402

SB3_FLAGS: list[str] = []  # more sb3_baseline.py flags
TOTAL_STEPS = {"ppo": 100_000, "a2c": 500_000}  # the zoo's n_timesteps (PPO's lr and clip anneal over them)

OURS = {
    "asyncrl PPO (sync, 2 actors x 4 envs)": ["--algo", "ppo", "--workers", "2", "--envs-per-actor", "4"],
    "asyncrl PPO (async+V-trace, 1 actor x 8 envs)": ["--algo", "ppo", "--workers", "1", "--envs-per-actor", "8",
                                                      "--async", "--correction", "vtrace"],
    "asyncrl A2C (sync, 2 actors x 4 envs)": ["--algo", "a2c", "--workers", "2", "--envs-per-actor", "4"],
}
BASELINES = {"SB3 PPO (zoo, 8 envs)": "ppo", "SB3 A2C (zoo, 8 envs)": "a2c"}
COMPARE = [  # (ours, SB3, what is compared)
    ("asyncrl PPO (sync, 2 actors x 4 envs)", "SB3 PPO (zoo, 8 envs)", "time"),
    ("asyncrl PPO (async+V-trace, 1 actor x 8 envs)", "SB3 PPO (zoo, 8 envs)", "time"),
    ("asyncrl A2C (sync, 2 actors x 4 envs)", "SB3 A2C (zoo, 8 envs)", "steps_per_s"),
]
MODES = {"sync": ["--sync"], "async": ["--async"], "async + V-trace": ["--async", "--correction", "vtrace"]}


def _algo_of(args: list[str]) -> str:
    return args[args.index("--algo") + 1]


def _record(system: str, summary: dict, process_wall: float) -> dict:
    learner = summary.get("learner") or {}
    return {"system": system, "process_wall_s": process_wall, "mean_policy_lag": learner.get("mean_policy_lag"),
            **{k: summary.get(k) for k in ("seed", "reached_target", "time_to_target_s", "steps_to_target",
                                           "global_step", "wall_time_s", "steps_per_s")}}


def _line(run: dict) -> str:
    t = run["time_to_target_s"]
    lag = run["mean_policy_lag"]
    return (f"{run['system']:<48} seed {run['seed']}: {f'{t:.1f} s' if t is not None else 'not solved'} to 475, "
            f"{run['steps_to_target']} steps, {run['steps_per_s']:.0f} steps/s"
            + (f", policy lag {lag:.2f}" if lag is not None else ""))


def _table(runs: list[dict]) -> dict[str, dict]:
    table = {}
    for system in dict.fromkeys(r["system"] for r in runs):
        rows = [r for r in runs if r["system"] == system]
        table[system] = {
            "solved": f"{sum(bool(r['reached_target']) for r in rows)}/{len(rows)}",
            **{key: spread([r[key] for r in rows])
               for key in ("time_to_target_s", "steps_to_target", "steps_per_s", "mean_policy_lag")},
        }
    return table


def vs_sb3(seeds: list[int], tmp: Path) -> None:
    runs = []
    for seed in seeds:
        for system, args in OURS.items():
            algo = _algo_of(args)
            summary = asyncrl_run([*args, "--seed", str(seed), "--total-steps", str(TOTAL_STEPS[algo])],
                                  tmp / f"{len(runs)}")
            runs.append(_record(system, summary, summary["process_wall_s"]))
            print(_line(runs[-1]), flush=True)
        for system, algo in BASELINES.items():
            summary, wall, err = run_json([sys.executable, str(Path(__file__).parent / "sb3_baseline.py"),
                                           "--algo", algo, "--seed", str(seed), *SB3_FLAGS], timeout=900)
            if summary is None:
                raise RuntimeError(f"SB3 {algo} failed: {err}")
            runs.append(_record(system, summary, wall))
            print(_line(runs[-1]), flush=True)
    table = _table(runs)
    md = [f"CartPole-v1, target 475 (mean return of the last 100 episodes), seeds {' '.join(map(str, seeds))}, "
          f"{os.cpu_count()} cores; median (min–max). Time from model construction; process start-up excluded.", "",
          "| system | solved | time to 475 (s) | env steps to 475 | env steps/s |", "|---|---|---|---|---|"]
    for system, t in table.items():
        md.append(f"| {system} | {t['solved']} | {fmt(t['time_to_target_s'])} | {fmt(t['steps_to_target'], 0)} | "
                  f"{fmt(t['steps_per_s'], 0)} |")
    md += ["", "| ours | SB3 | ratio of medians |", "|---|---|---|"]
    ratios = {}
    for ours, theirs, what in COMPARE:
        a, b = table[ours], table[theirs]
        if what == "time":
            x, y, label = a["time_to_target_s"]["median"], b["time_to_target_s"]["median"], "time to 475"
        else:
            x, y, label = a["steps_per_s"]["median"], b["steps_per_s"]["median"], "env steps/s"
        ratios[f"{ours} / {theirs}: {label}"] = x / y if x and y else None
        md.append(f"| {ours} | {theirs} | {label}: {x / y:.2f}× |" if x and y else f"| {ours} | {theirs} | n/a |")
    markdown = "\n".join(md) + "\n"
    write_results("batched_learner_vs_sb3", {"seeds": seeds, "runs": runs, "table": table, "ratios": ratios},
                  markdown)
    print(markdown)


def sync_async(seeds: list[int], actors: list[int], tmp: Path, envs: int = 8) -> None:
    runs = []
    for seed in seeds:
        for algo in ("a2c", "ppo"):
            for n in actors:
                for mode, flags in MODES.items():
                    system = f"{algo.upper()}, {n} actors x {envs // n} envs, {mode}"
                    summary = asyncrl_run(["--algo", algo, "--workers", str(n), "--envs-per-actor", str(envs // n),
                                           *flags, "--seed", str(seed), "--total-steps", str(TOTAL_STEPS[algo])],
                                          tmp / f"{len(runs)}")
                    runs.append(_record(system, summary, summary["process_wall_s"]))
                    print(_line(runs[-1]), flush=True)
    table = _table(runs)
    md = [f"CartPole-v1, {envs} environments in all, seeds {' '.join(map(str, seeds))}, {os.cpu_count()} cores; "
          "median (min–max). Policy lag: learner version − behaviour version, averaged over batches "
          "(0 when synchronous).", "",
          "| algorithm, actors, mode | solved | env steps/s | time to 475 (s) | env steps to 475 | mean policy lag |",
          "|---|---|---|---|---|---|"]
    for system, t in table.items():
        md.append(f"| {system} | {t['solved']} | {fmt(t['steps_per_s'], 0)} | {fmt(t['time_to_target_s'])} | "
                  f"{fmt(t['steps_to_target'], 0)} | {fmt(t['mean_policy_lag'], 2)} |")
    markdown = "\n".join(md) + "\n"
    write_results("batched_learner_sync_async", {"seeds": seeds, "actors": actors, "runs": runs, "table": table},
                  markdown)
    print(markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--part", choices=["all", "vs-sb3", "sync-async"], default="all")
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 4], help="actor counts of the sync-async part")
    args = parse_args(parser, seeds=[0], actors=[2])
    if args.smoke:
        TOTAL_STEPS.update(ppo=2_048, a2c=2_048)
        SB3_FLAGS.append("--smoke")
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "vs-sb3"):
            vs_sb3(args.seeds, Path(tmp))
        if args.part in ("all", "sync-async"):
            sync_async(args.seeds, args.actors, Path(tmp))


if __name__ == "__main__":
    main()
