"""Learning Pong from pixels on this machine: one long run, one seed.

Trains ``--algo`` (default PPO with its Atari preset: CleanRL's ppo_atari.py settings, 2
actors x 4 envs) on ``ALE/Pong-v5`` for up to ``--frames`` frames (agent steps x 4) or
``--max-hours``, stopping early once the mean game score of the last 100 episodes
reaches ``--score``. Records the time and frames to the score and the learning curve
against frames and wall time.

    python benchmarks/atari_pong.py --algo ppo --frames 10000000 --max-hours 2

Writes ``benchmarks/results/atari_pong_<algo>.{json,md,png}`` and keeps the run's
``metrics.csv`` beside them; needs ``pip install -e ".[atari]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, parse_args, results_dir, write_results  # noqa: E402

FRAMES_PER_STEP = 4  # AtariPreprocessing's frame skip


def first_crossing(metrics: dict[str, list[float]], score: float) -> tuple[float, float] | None:
    """``(env steps, wall s)`` of the first metrics row whose mean return of the last 100
    episodes is at least ``score``, or None."""
    for step, wall, mean in zip(metrics["global_step"], metrics["wall_time_s"], metrics["mean_return"]):
        if not math.isnan(mean) and mean >= score:
            return step, wall
    return None


def plot(metrics: dict[str, list[float]], score: float, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    frames = [s * FRAMES_PER_STEP / 1e6 for s in metrics["global_step"]]
    hours = [t / 3600 for t in metrics["wall_time_s"]]
    for ax, x, label in ((axes[0], frames, "frames (millions; 4 per agent step)"), (axes[1], hours, "wall time (h)")):
        ax.plot(x, metrics["mean_return"], lw=1.8)
        ax.axhline(score, ls="--", c="grey", lw=1, label=f"score {score:g}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("mean game score, last 100 episodes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    from asyncrl.metrics import read_metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="ppo", choices=["a3c", "a2c", "ppo", "n-step-q", "one-step-q", "one-step-sarsa"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames", type=int, default=10_000_000)
    p.add_argument("--max-hours", type=float, default=2.0)
    p.add_argument("--score", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more asyncrl.run flags")
    args = parse_args(p, frames=8_000, max_hours=0.1)

    steps = args.frames // FRAMES_PER_STEP
    run_args = ["--algo", args.algo, "--env", "ALE/Pong-v5", "--workers", str(args.workers), "--seed", str(args.seed),
                "--total-steps", str(steps), "--max-seconds", str(args.max_hours * 3600),
                "--target-return", str(args.score), *args.extra]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        summary = asyncrl_run(run_args, run_dir, timeout=args.max_hours * 3600 + 900)
        name = f"atari_pong_{args.algo}"
        shutil.copy(run_dir / "metrics.csv", results_dir() / f"{name}_metrics.csv")
        metrics = read_metrics(run_dir / "metrics.csv")
    crossing = first_crossing(metrics, args.score)
    cores = summary["cpu_count"]
    title = (f"{args.algo} on ALE/Pong-v5, {args.workers} {'actors' if summary['learner'] else 'workers'}, "
             f"{cores} cores, seed {args.seed}")
    plot(metrics, args.score, title, results_dir() / f"{name}.png")
    best = max((m for m in metrics["mean_return"] if not math.isnan(m)), default=None)
    result = {
        "command": "python -m asyncrl.run " + " ".join(run_args), "cores": cores, "score": args.score,
        "reached": crossing is not None,
        "frames_to_score": crossing[0] * FRAMES_PER_STEP if crossing else None,
        "hours_to_score": crossing[1] / 3600 if crossing else None,
        "frames": summary["global_step"] * FRAMES_PER_STEP, "wall_time_h": summary["wall_time_s"] / 3600,
        "frames_per_s": summary["steps_per_s"] * FRAMES_PER_STEP, "best_mean_score_100": best,
        "final_mean_score_100": summary["mean_return"], "stop_reason": summary["stop_reason"],
    }
    reached = (f"reached a mean score of {args.score:g} after {result['frames_to_score'] / 1e6:.2f}M frames "
               f"and {result['hours_to_score']:.2f} h" if crossing else
               f"did not reach {args.score:g} (best mean score {best})")
    markdown = (f"# Pong from pixels: {args.algo}\n\n`{result['command']}`\n\n"
                f"On {cores} cores it {reached}; the run stopped ({result['stop_reason']}) at "
                f"{result['frames'] / 1e6:.2f}M frames after {result['wall_time_h']:.2f} h "
                f"({result['frames_per_s']:,.0f} frames/s). Frames = 4 x agent steps.\n\n"
                f"![curve]({name}.png)\n")
    write_results(name, {"result": result, "summary": summary}, markdown)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
