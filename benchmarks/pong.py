"""Pong on this machine's cores: time and frames to a mean game score of 18, per
configuration and seed, beside the published CPU trainers in core-hours.

Configurations (``CONFIGS``): ``a3c``, the main command (``python -m asyncrl.run --env
ALE/Pong-v5``: A3C with its Atari preset and default workers), with a 60-minute budget;
``a3c-paac``, A3C's actor-learners with 16 environments each and PAAC's settings
(Clemente et al. 2017: 32 environments in all, t_max 5, the loss's mean over the batch,
learning rate 0.0007 x 32 annealed, RMSProp with eps 0.1 inside the root, gradient norm
clipped at 3, entropy 0.02, value loss weight 0.25), with 45 minutes; ``a3c-adam``, the same
layout with PPO's optimisation (CleanRL's ``ppo_atari.py``: Adam, lr 2.5e-4, eps 1e-5,
gradient norm 0.5, advantages normalised per batch) and the loss's mean, with 45 minutes;
``a3c-a2c``, the same layout with OpenAI Baselines' A2C optimisation (RMSProp as TensorFlow's:
eps 1e-5 inside the root, squared-gradient average starting at 1; lr 7e-4, gradient norm 0.5,
entropy 0.01, value loss weight 0.5, the loss's mean), with 45 minutes — A3C's Atari preset
before its learning rate doubled; ``a3c-lr2x``, the same at lr 1.4e-3 (the run that chose the
preset's learning rate; now the preset's own, so ``a3c`` runs it too), with 45 minutes.
Each run stops at the score (``--target-return 18``:
the mean whole-game score of the last 100 games), at its time budget, or at the Atari
preset's T_max. Runs go one at a time, so each has the cores to itself.

    python benchmarks/pong.py --configs a3c --seeds 0 1 2

Writes ``benchmarks/results/pong.{json,md}``, one figure per configuration
(``pong_<config>.png``: score against wall time and against frames, one line per seed) and
each run's ``metrics.csv`` and ``summary.json`` under ``benchmarks/results/pong_runs/``.
Results of earlier invocations for other configurations or seeds are kept and merged;
``--report-only`` rewrites the table and the figures from them without running.
Needs ``pip install -e ".[atari,bench]"``. Frames = 4 x agent steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from atari_pong import FRAMES_PER_STEP, first_crossing  # noqa: E402

from common import asyncrl_run, parse_args, results_dir, write_results  # noqa: E402

ENV = "ALE/Pong-v5"
SCORE = 18.0
CONFIGS: dict[str, tuple[list[str], float]] = {
    "a3c": ([], 60.0),
    "a3c-paac": (["--envs-per-actor", "16", "--loss-reduction", "mean", "--lr", "0.0224", "--max-grad-norm", "3",
                  "--entropy-coef", "0.02", "--value-coef", "0.25", "--lr-anneal"], 45.0),
    "a3c-adam": (["--envs-per-actor", "16", "--loss-reduction", "mean", "--normalize-advantages", "--optimizer",
                  "adam", "--lr", "2.5e-4", "--optim-eps", "1e-5", "--max-grad-norm", "0.5"], 45.0),
    "a3c-a2c": (["--envs-per-actor", "16", "--loss-reduction", "mean", "--optim-eps", "1e-5", "--rms-init", "1",
                 "--max-grad-norm", "0.5", "--lr", "7e-4"], 45.0),
    "a3c-lr2x": (["--lr", "1.4e-3"], 45.0),
}
"""name -> (flags after ``--env ALE/Pong-v5``, minutes of wall time)."""

ANCHORS = [  # (system, hardware, minutes to solve, core-hours; None where not published)
    ("ikostrikov/pytorch-a3c (README)", "16 processes, CPU only", 15, 4.0),
    ("openai/universe-starter-agent (README)", "16 workers, CPU only", 30, 8.0),
    ("CleanRL PPO + EnvPool (37 implementation details of PPO)", "24 CPUs + 1 GPU", 5, 2.0),
    ("PAAC (Clemente et al. 2017)", "4 cores + 1 GPU", 21, 1.4),
]


def run_one(name: str, seed: int, minutes: float, tmp: Path) -> dict:
    from asyncrl.metrics import read_metrics

    flags, _ = CONFIGS[name]
    args = ["--env", ENV, *flags, "--seed", str(seed), "--target-return", str(SCORE),
            "--max-seconds", str(minutes * 60), "--log-interval", "10"]
    run_dir = tmp / f"{name}-{seed}"
    summary = asyncrl_run(args, run_dir, timeout=minutes * 60 + 900)
    keep = results_dir() / "pong_runs"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "metrics.csv", keep / f"{name}_seed{seed}_metrics.csv")
    shutil.copy(run_dir / "summary.json", keep / f"{name}_seed{seed}_summary.json")
    metrics = read_metrics(run_dir / "metrics.csv")
    crossing = first_crossing(metrics, SCORE)
    scores = [m for m in metrics["mean_return"] if not math.isnan(m)]
    return {
        "config": name, "seed": seed, "command": "python -m asyncrl.run " + " ".join(args),
        "minutes_budget": minutes, "reached": crossing is not None,
        "frames_to_score": crossing[0] * FRAMES_PER_STEP if crossing else None,
        "minutes_to_score": crossing[1] / 60 if crossing else None,
        "frames": summary["global_step"] * FRAMES_PER_STEP, "minutes": summary["wall_time_s"] / 60,
        "frames_per_s": summary["steps_per_s"] * FRAMES_PER_STEP,
        "final_score": summary["mean_return"], "best_score": max(scores, default=None),
        "stop_reason": summary["stop_reason"], "workers": summary.get("workers"),
        "curve": [(s * FRAMES_PER_STEP, t, r) for s, t, r in
                  zip(metrics["global_step"], metrics["wall_time_s"], metrics["mean_return"]) if not math.isnan(r)],
    }


def plot(name: str, runs: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for run in runs:
        frames = [f / 1e6 for f, _, _ in run["curve"]]
        minutes = [t / 60 for _, t, _ in run["curve"]]
        scores = [r for _, _, r in run["curve"]]
        axes[0].plot(frames, scores, lw=1.5, label=f"seed {run['seed']}")
        axes[1].plot(minutes, scores, lw=1.5, label=f"seed {run['seed']}")
    for ax, label in ((axes[0], "frames (millions; 4 per agent step)"), (axes[1], "wall time (min)")):
        ax.axhline(SCORE, ls="--", c="grey", lw=1)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("mean game score, last 100 games")
    fig.suptitle(f"{name} on {ENV}: {' '.join(CONFIGS[name][0]) or 'the Atari preset'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def score(value: float | None) -> str:
    """A score for the table; "-" where no game ended (a short or smoke run)."""
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def median_minutes(runs: list[dict]) -> tuple[str, float]:
    """The median of the runs' minutes to 18, as ``("", minutes)``; ``("> ", minutes)`` where it
    falls on a run that did not reach 18 (that run counts as its whole budget: a lower bound)."""
    exact = statistics.median([r["minutes_to_score"] if r["reached"] else math.inf for r in runs])
    if math.isfinite(exact):
        return "", exact
    return "> ", statistics.median([r["minutes_to_score"] if r["reached"] else r["minutes"] for r in runs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=None, help="override every configuration's budget")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite pong.md and the figures from the runs in pong.json")
    args = parse_args(p, configs=["a3c"], seeds=[0], minutes=0.15)
    if args.report_only:
        args.configs = []
    from asyncrl.metrics import machine_info

    cores = len(os.sched_getaffinity(0))
    machine = f"{cores} cores, {machine_info()['cpu_model']}"
    path = results_dir() / "pong.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() and not args.smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for seed in args.seeds:
                minutes = args.minutes or CONFIGS[name][1]
                result = {**run_one(name, seed, minutes, Path(tmp)), "machine": machine, "cores": cores}
                runs = [r for r in runs if (r["config"], r["seed"]) != (name, seed)] + [result]
                print(json.dumps({k: v for k, v in result.items() if k != "curve"}), flush=True)
    lines = [
        f"# Pong ({ENV}) to a mean game score of {SCORE:g}\n",
        "Each row one run, alone on the machine; frames = 4 x agent steps; core-hours = minutes x cores / 60. "
        "`python benchmarks/pong.py --configs CONFIG --seeds SEED`.\n",
        "| config | seed | machine | reached | minutes to 18 | frames to 18 | core-hours to 18 | frames/s | "
        "final / best score | stop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["config"], r["seed"])):
        if r["reached"]:
            minutes, frames, bound = r["minutes_to_score"], r["frames_to_score"], ""
        else:  # not reached: the whole run is a lower bound
            minutes, frames, bound = r["minutes"], r["frames"], "> "
        lines.append(
            f"| {r['config']} | {r['seed']} | {r['machine']} | {r['reached']} | {bound}{minutes:.1f} | "
            f"{bound}{frames / 1e6:.2f}M | {bound}{minutes * r['cores'] / 60:.2f} | {r['frames_per_s']:,.0f} | "
            f"{score(r['final_score'])} / {score(r['best_score'])} | {r['stop_reason']} |"
        )
    lines += ["", "Per configuration (medians over its seeds; a run that did not reach 18 took longer than its "
              "budget, so where the median falls on one it is a lower bound, marked >):", ""]
    for name in sorted({r["config"] for r in runs}):
        mine = [r for r in runs if r["config"] == name]
        bound, minutes = median_minutes(mine)
        lines.append(f"- `{name}`: {sum(r['reached'] for r in mine)} of {len(mine)} seeds reached 18; median "
                     f"{bound}{minutes:.1f} min ({bound}{minutes * mine[0]['cores'] / 60:.2f} core-hours); "
                     f"median {statistics.median([r['frames_per_s'] for r in mine]):,.0f} frames/s. "
                     f"![{name}](pong_{name}.png)")
        if not args.smoke:
            plot(name, mine, results_dir() / f"pong_{name}.png")
    lines += ["", "## Published anchors (Pong solved)", "", "| system | hardware | minutes | core-hours |",
              "|---|---|---|---|", *[f"| {s} | {h} | {m} | ≈ {c} |" for s, h, m, c in ANCHORS]]
    write_results("pong", {"runs": runs, "anchors": ANCHORS, "score": SCORE}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
