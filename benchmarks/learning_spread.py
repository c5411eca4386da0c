"""The spread of the learning tests' trajectories over seeds and processor math.

A serial run is bit-exact on one processor only: BLAS kernels, vector widths and torch's
own vectorised kernels change the float sums between an Intel and an AMD machine. This
script runs each learning test's configuration under several *math profiles* that this
one machine can exercise, and over several seeds, and records the env steps each run
took to reach its target, so that a test's budget can cover the measured spread.

Profiles (each set before numpy and torch are imported, in a child process):

- ``native``: this machine as it is.
- ``avx2``: what an AMD Zen 2/3 machine (no AVX-512) computes with: torch's AVX2
  kernels (``ATEN_CPU_CAPABILITY=avx2``), MKL's AVX2 path
  (``MKL_ENABLE_INSTRUCTIONS=AVX2``), OpenBLAS's Zen kernels
  (``OPENBLAS_CORETYPE=Zen``) and NumPy without its AVX-512 loops.
- ``zen4``: an AMD Zen 4 machine: torch's AVX-512 kernels, MKL's AVX2 path (MKL takes
  its AVX-512 paths on Intel processors only), OpenBLAS's SkylakeX kernels.
- ``no-mkldnn``: ``torch.backends.mkldnn.enabled = False`` (oneDNN off), with
  OpenBLAS's Haswell kernels.
- ``sse``: the oldest x86-64 paths (torch's default kernels, MKL SSE4.2, OpenBLAS
  Sandybridge): no server processor of today computes so, but it is one more sample of
  how far a trajectory moves when the float sums change.

Usage::

    python benchmarks/learning_spread.py --cases a3c-cartpole --seeds 0 1 2 --profiles native avx2
    python benchmarks/learning_spread.py --smoke     # one tiny case, one profile: seconds

Writes ``benchmarks/results/learning_spread[_NAME].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, child_env, parse_args, spread, write_results  # noqa: E402

NPY_NO_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"

PROFILES: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Zen",
             "NPY_DISABLE_CPU_FEATURES": NPY_NO_AVX512},
    "zen4": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "SkylakeX"},
    "no-mkldnn": {"ASYNCRL_SPREAD_NO_MKLDNN": "1", "OPENBLAS_CORETYPE": "Haswell"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "OPENBLAS_CORETYPE": "Sandybridge", "NPY_DISABLE_CPU_FEATURES": NPY_NO_AVX512 + " AVX2 FMA3 F16C AVX"},
}

# name: (algo, env, workers, budget in env steps, target return or None for the env's, extra run fields,
#        algo overrides). The learning tests (tests/test_learning.py) use the same values.
CASES: dict[str, tuple] = {
    "a3c-cartpole": ("a3c", "CartPole-v1", 1, 300_000, None, {}, {}),
    "ppo-cartpole": ("ppo", "CartPole-v1", 2, 100_000, None, {}, {}),
    "a2c-cartpole": ("a2c", "CartPole-v1", 2, 300_000, None, {}, {}),
    "a3c-cartpole-anneal": ("a3c", "CartPole-v1", 1, 300_000, None, {}, {"lr_anneal": True}),
    "a3c-cartpole-k4": ("a3c", "CartPole-v1", 2, 600_000, None, {}, {"envs_per_actor": 4}),
    "a3c-acrobot": ("a3c", "Acrobot-v1", 1, 300_000, None, {}, {}),
    "a3c-acrobot-2w": ("a3c", "Acrobot-v1", 2, 300_000, None, {}, {}),
    "a2c-acrobot": ("a2c", "Acrobot-v1", 2, 200_000, None, {}, {}),
    "ppo-acrobot": ("ppo", "Acrobot-v1", 2, 300_000, None, {}, {}),
    "one-step-q-cartpole": ("one-step-q", "CartPole-v1", 2, 600_000, None, {}, {}),
    "n-step-q-cartpole": ("n-step-q", "CartPole-v1", 2, 600_000, None, {}, {}),
    "one-step-sarsa-cartpole": ("one-step-sarsa", "CartPole-v1", 2, 600_000, None, {}, {}),
    "a3c-minatar-breakout": ("a3c", "MinAtar/Breakout-v1", 2, 150_000, 4.0, {}, {}),
    "a3c-pendulum": ("a3c", "Pendulum-v1", 1, 400_000, -300.0, {}, {}),
    "ppo-pendulum": ("ppo", "Pendulum-v1", 2, 300_000, -250.0, {}, {}),
    "a3c-pendulum-1m": ("a3c", "Pendulum-v1", 1, 1_000_000, -300.0, {}, {}),
    "ppo-lstm-novel-1m": ("ppo", "asyncrl/CartPoleNoVelocity-v1", 2, 1_000_000, None, {}, {"lstm": True}),
    "a3c-lstm-novel": ("a3c", "asyncrl/CartPoleNoVelocity-v1", 2, 1_000_000, None, {}, {"lstm": True}),
    "ppo-lstm-novel": ("ppo", "asyncrl/CartPoleNoVelocity-v1", 2, 500_000, None, {}, {"lstm": True}),
    "sac-pendulum": ("sac", "Pendulum-v1", 2, 20_000, -200.0, {"return_window": 10}, {}),
    "td3-pendulum": ("td3", "Pendulum-v1", 2, 30_000, -200.0, {"return_window": 10}, {}),
    "ddpg-pendulum": ("ddpg", "Pendulum-v1", 2, 50_000, -250.0, {"return_window": 10}, {}),
    "dqn-cartpole": ("dqn", "CartPole-v1", 2, 150_000, 475.0, {}, {}),
    "reinforce-cartpole": ("reinforce", "CartPole-v1", 2, 500_000, 475.0, {}, {}),
    **{f"{algo}-{name}": (algo, f"tests.toy_envs:{env}", 2, 60_000, 8.0, {}, {})
       for algo in ("a3c", "a2c", "ppo") for name, env in (("multidiscrete", "MatchTargets-v0"),
                                                           ("multibinary", "MatchBits-v0"))},
    "a3c-frozenlake": ("a3c", "FrozenLake-v1", 2, 150_000, 0.5, {}, {}),
    # seconds: a smoke run of the harness itself
    "smoke": ("a3c", "CartPole-v1", 1, 2_000, 30.0, {}, {}),
}

_CHILD = """
import json, os, sys
if os.environ.get("ASYNCRL_SPREAD_NO_MKLDNN"):
    import torch
    torch.backends.mkldnn.enabled = False
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.trainer import Trainer
algo, env, workers, budget, target, run_extra, overrides, seed, run_dir = json.loads(sys.argv[1])
run = RunConfig(algo=algo, env=env, workers=workers, serial=True, seed=seed, total_steps=budget,
                run_dir=run_dir, **({"target_return": target} if target is not None else {}), **run_extra)
summary = Trainer(Config(run=run, algo=algo_config(algo, env, **overrides)), quiet=True).train()
from asyncrl.metrics import read_metrics
m = read_metrics(os.path.join(run_dir, "metrics.csv"))
curve = [(int(s), round(r, 2)) for s, r in zip(m["global_step"], m["mean_return"]) if r == r]
print(json.dumps({**{k: summary[k] for k in ("reached_target", "steps_to_target", "mean_return", "global_step")},
                  "curve": curve[:: max(1, len(curve) // 200)]}))
"""


def run_case(case: str, seed: int, profile: str, timeout: float) -> dict:
    """One serial run of ``case`` with ``seed`` under ``profile``'s processor math."""
    algo, env, workers, budget, target, run_extra, overrides = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        args = json.dumps([algo, env, workers, budget, target, run_extra, overrides, seed, str(Path(tmp) / "run")])
        proc = subprocess.run([sys.executable, "-c", _CHILD, args], capture_output=True, text=True,
                              timeout=timeout, env={**child_env(), **PROFILES[profile]}, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{case} seed {seed} ({profile}) failed: {proc.stderr[-1500:]}")
    return {"case": case, "seed": seed, "profile": profile, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["a3c-cartpole"], choices=sorted(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--profiles", nargs="+", default=["native", "avx2"], choices=sorted(PROFILES))
    parser.add_argument("--name", default="", help="suffix of the results files")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parse_args(parser, argv, cases=["smoke"], seeds=[0], profiles=["avx2"], name="smoke", timeout=300)
    rows = []
    for case in args.cases:
        for profile in args.profiles:
            for seed in args.seeds:
                row = run_case(case, seed, profile, args.timeout)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    lines = ["| case | budget (env steps) | runs | reached | env steps to target: median (min–max) |",
             "|---|---|---|---|---|"]
    for case in args.cases:
        mine = [r for r in rows if r["case"] == case]
        reached = [r["steps_to_target"] for r in mine if r["reached_target"]]
        s = spread(reached)
        cell = "n/a" if s["median"] is None else f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})"
        lines.append(f"| {case} | {CASES[case][3]:,} | {len(mine)} | {len(reached)} | {cell} |")
    detail = ["", "| case | profile | seed | reached | env steps to target | final mean return |", "|---|---|---|---|---|---|"]
    detail += [f"| {r['case']} | {r['profile']} | {r['seed']} | {r['reached_target']} | {r['steps_to_target']} | "
               f"{r['mean_return']:.1f} |" for r in rows]
    profiles = "\n".join(f"- `{p}`: {' '.join(f'{k}={v}' for k, v in PROFILES[p].items()) or '(as is)'}"
                         for p in args.profiles)
    md = (f"Serial runs (`--serial`), seeds {' '.join(map(str, args.seeds))}, processor-math profiles:\n\n"
          f"{profiles}\n\nCommand: `python benchmarks/learning_spread.py --cases {' '.join(args.cases)} "
          f"--seeds {' '.join(map(str, args.seeds))} --profiles {' '.join(args.profiles)}`\n\n" + "\n".join(lines + detail)
          + "\n")
    name = "learning_spread" + (f"_{args.name}" if args.name else "")
    write_results(name, {"profiles": {p: PROFILES[p] for p in args.profiles}, "runs": rows}, md)
    print(md)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
