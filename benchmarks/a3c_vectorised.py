"""A3C's end-to-end training throughput on Pong with ``--envs-per-actor k``, beside
Stable-Baselines3's A2C.

Each measurement is a child process of this one, in alternating order per repeat:

- asyncrl A3C, 2 actor-learners (one per core), ``k`` environments each, the paper's
  network (conv 16 8x8/4, conv 32 4x4/2, fc 256), frozen policy (``--lr 0``: every update
  is computed and applied, the weights do not move, so every repeat plays the same kind of
  games); ``k = 1`` is the paper's actor-learner;
- the same with ``--network nature2015`` (the DQN paper's network, SB3's ``CnnPolicy``);
- SB3 A2C, 16 environments (``SubprocVecEnv``; rl-baselines3-zoo's Atari settings, one
  torch thread), whose ``CnnPolicy`` is the DQN paper's network.

Figures are frames/s (frames = 4 x agent steps) over the run after its first
``SKIP_S`` seconds; medians (min-max) over ``--repeats``; per core = total / cores.

    python benchmarks/a3c_vectorised.py --repeats 3

Writes ``benchmarks/results/a3c_vectorised.{json,md}``; needs ``pip install -e ".[atari,bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atari_throughput  # noqa: E402
from atari_throughput import ENV, FRAMES, sb3  # noqa: E402

from common import asyncrl_run, fmt, parse_args, spread, write_results  # noqa: E402

WORKERS = 2
TARGET = 3400.0
"""The frames/s per core the vectorised actor-learner is asked to reach (issue: Pong on two cores)."""


def a3c(k: int, network: str, steps_per_worker: int, tmp: Path, tag: str, skip_s: float) -> float:
    """Steady total frames/s of 2 A3C actor-learners with ``k`` environments each, ``--lr 0``."""
    from asyncrl.metrics import steady_steps_per_s

    run_dir = tmp / f"a3c-{k}-{network}-{tag}"
    asyncrl_run(["--algo", "a3c", "--env", ENV, "--workers", str(WORKERS), "--envs-per-actor", str(k),
                 "--network", network, "--lr", "0", "--total-steps", str(steps_per_worker * WORKERS),
                 "--log-interval", "1"], run_dir)
    return steady_steps_per_s(run_dir / "metrics.csv", skip_s=skip_s) * FRAMES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 4, 8, 16], help="k values of the paper's network")
    p.add_argument("--seconds", type=float, default=30.0, help="about how long each A3C measurement runs")
    p.add_argument("--skip-sb3", action="store_true")
    args = parse_args(p, repeats=1, envs=[1, 4], seconds=4.0)
    skip_s = 0.0 if args.smoke else 3.0
    if args.smoke:
        atari_throughput.STEPS["a2c"] = 2_000
    cores = len(os.sched_getaffinity(0))
    # agent steps per actor-learner for about --seconds (measured: ~560/s at k = 1, ~1,100/s at k >= 8)
    steps = {k: int(args.seconds * (560 if k == 1 else 1100)) for k in args.envs}
    configs = [(k, "nature") for k in args.envs] + [(max(args.envs), "nature2015")]
    names = {c: f"asyncrl A3C, {WORKERS} actor-learners x {c[0]} envs, {c[1]}" for c in configs}
    sb3_name = "SB3 A2C, 16 envs (SubprocVecEnv), nature2015"
    raw: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.repeats):
            order = configs + ([] if args.skip_sb3 else [None])
            for config in order if r % 2 == 0 else order[::-1]:
                if config is None:
                    name, value = sb3_name, sb3("a2c", "subproc")
                else:
                    name, value = names[config], a3c(*config, steps[config[0]], tmp, str(r), skip_s)
                raw.setdefault(name, []).append(value)
                print(f"repeat {r}: {name}: {value:,.0f} frames/s", file=sys.stderr, flush=True)
    summary = {name: spread(values) for name, values in raw.items()}
    base = names[(args.envs[0], "nature")]
    ratios = {name: spread([v / b for v, b in zip(values, raw[base])]) for name, values in raw.items()}
    lines = [
        f"# A3C with k environments per actor-learner ({ENV}; frames = 4 x agent steps)\n",
        f"Medians (min–max) over {args.repeats} repeats, {WORKERS} actor-learners on {cores} cores, frozen "
        f"policy (`--lr 0`); `python benchmarks/a3c_vectorised.py --repeats {args.repeats}`. Target: "
        f"{TARGET:,.0f} frames/s per core with the paper's network.\n",
        f"| system | frames/s | frames/s per core | ÷ {base} |",
        "|---|---|---|---|",
        *[f"| {name} | {fmt(summary[name], 0)} | {summary[name]['median'] / cores:,.0f} | "
          f"{fmt(ratios[name], 2)} |" for name in raw],
    ]
    write_results("a3c_vectorised", {"raw": raw, "summary": summary, "ratios": ratios, "cores": cores,
                                     "target_per_core": TARGET}, "\n".join(lines) + "\n")
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
