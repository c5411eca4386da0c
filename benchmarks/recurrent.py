"""Recurrent policies: A3C-LSTM and PPO-LSTM on a partially observed task, A3C-LSTM on
MinAtar Breakout, and what the LSTM core costs in throughput.

Tasks (``--tasks``), every run a child process of this one, one after another (wall times
are on this machine; see the header for its cores):

- ``a3c``: A3C with ``--lstm`` and feed-forward A3C, 2 workers, on
  ``asyncrl/CartPoleNoVelocity-v1`` (CartPole without its velocities) until the mean
  return of the last 100 episodes reaches 475 or 1M env steps, for each of ``--seeds``.
- ``ppo``: PPO with ``--lstm``, 2 actors, the same task, until 475 or 500k env steps.
- ``minatar``: A3C with and without ``--lstm`` on ``MinAtar/Breakout-v1`` for
  ``--minatar-steps`` env steps (default 2M); the mean return at the end (``--minatar-seeds``).
- ``throughput``: env steps/s of A3C (2 workers) and PPO (2 actors) on the no-velocity task
  with and without ``--lstm``, learning rate 0 (the policy stays as initialised, so that
  episode lengths, and with them the work per step, are the same), ``--repeats`` runs of
  ``--throughput-steps`` each, alternating; medians and ratios.

    python benchmarks/recurrent.py --seeds 0 1 2

Writes ``benchmarks/results/recurrent_<tasks>.{json,md,png}``; ``minatar`` needs
``pip install -e ".[minatar]"``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, learning_run, parse_args, results_dir, spread, write_results  # noqa: E402

ENV = "asyncrl/CartPoleNoVelocity-v1"


def run(algo: str, env: str, seed: int, steps: int, target: float | None, lstm: bool, tmp: Path,
        extra: list[str] | None = None) -> dict:
    run_dir = tmp / f"{algo}-{'lstm' if lstm else 'ff'}-{env.replace('/', '_')}-{seed}-{len(list(tmp.iterdir()))}"
    return learning_run(["--algo", algo, "--env", env, "--workers", "2", "--seed", str(seed), "--total-steps",
                         str(steps), "--target-return", "inf" if target is None else str(target),
                         *(["--lstm"] if lstm else []), *(extra or [])], run_dir)


def _shown_args(argv: list[str]) -> list[str]:
    """The command's arguments without ``--note`` and its text (written after it instead)."""
    if "--note" not in argv:
        return argv
    i = argv.index("--note")
    return argv[:i] + argv[i + 2:]


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = [task for task in ("a3c", "ppo", "minatar") if task in results]
    fig = Figure(figsize=(5 * max(1, len(panels)), 4))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, task in zip(axes, panels):
        for k, (system, runs) in enumerate(results[task].items()):
            for i, r in enumerate(runs):
                if r.get("curve"):
                    steps, _, mean = zip(*r["curve"])
                    ax.plot([s / 1e6 for s in steps], mean, c=f"C{k}", lw=1.2, label=system if i == 0 else None)
        ax.set_title("MinAtar/Breakout-v1" if task == "minatar" else ENV)
        ax.set_xlabel("env steps (millions)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("mean return, last 100 episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=["a3c", "ppo", "minatar", "throughput"],
                   choices=["a3c", "ppo", "minatar", "throughput"])
    p.add_argument("--minatar-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--minatar-steps", type=int, default=2_000_000)
    p.add_argument("--throughput-steps", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--note", default="", help="conditions of the measurement, written under the command")
    args = parse_args(p, seeds=[0], minatar_seeds=[0], minatar_steps=2_000, throughput_steps=1_000, repeats=1)
    caps = {"a3c": 2_000, "ppo": 2_048} if args.smoke else {"a3c": 1_000_000, "ppo": 500_000}

    results: dict = {}
    lines = ["# Recurrent policies\n",
             f"`python benchmarks/recurrent.py {' '.join(_shown_args(sys.argv[1:]))}`. Runs were sequential child "
             "processes of "
             "one script; env steps are summed over all workers; returns are the mean of the last 100 episodes."
             + (f" {args.note}" if args.note else "") + "\n"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        def log():
            print(json.dumps({t: {s: [{x: y for x, y in r.items() if x != "curve"} for r in v] if isinstance(v, list)
                                  else v for s, v in d.items()} for t, d in results.items()}), file=sys.stderr,
                  flush=True)

        if "a3c" in args.tasks:
            results["a3c"] = {"A3C --lstm": [], "A3C feed-forward": []}
            for seed in args.seeds:
                results["a3c"]["A3C --lstm"].append({"seed": seed, **run("a3c", ENV, seed, caps["a3c"], 475, True, tmp)})
                results["a3c"]["A3C feed-forward"].append(
                    {"seed": seed, **run("a3c", ENV, seed, caps["a3c"], 475, False, tmp)})
                log()
        if "ppo" in args.tasks:
            results["ppo"] = {"PPO --lstm": []}
            for seed in args.seeds:
                results["ppo"]["PPO --lstm"].append({"seed": seed, **run("ppo", ENV, seed, caps["ppo"], 475, True, tmp)})
                log()
        if "minatar" in args.tasks:
            results["minatar"] = {"A3C --lstm": [], "A3C feed-forward": []}
            for seed in args.minatar_seeds:
                for name, lstm in (("A3C --lstm", True), ("A3C feed-forward", False)):
                    results["minatar"][name].append(
                        {"seed": seed, **run("a3c", "MinAtar/Breakout-v1", seed, args.minatar_steps, None, lstm, tmp)})
                log()
        if "throughput" in args.tasks:
            results["throughput"] = {}
            for algo in ("a3c", "ppo"):
                rates = {"feed-forward": [], "--lstm": []}
                for _ in range(args.repeats):
                    for name, lstm in (("feed-forward", False), ("--lstm", True)):
                        r = run(algo, ENV, 0, args.throughput_steps, None, lstm, tmp, ["--lr", "0"])
                        rates[name].append(r["steps_per_s"])
                results["throughput"][algo] = rates
                log()

    for task, label, cap in (("a3c", "A3C, 2 workers", caps["a3c"]), ("ppo", "PPO, 2 actors", caps["ppo"])):
        if task in results:
            lines += [f"\n## {ENV}: {label}, target 475 within {cap:,} env steps\n",
                      "| system | reached | env steps to 475 | wall time to 475 (s) | env steps/s | best mean return |",
                      "|---|---|---|---|---|---|"]
            for system, runs in results[task].items():
                lines.append(f"| {system} | {sum(bool(r['reached_target']) for r in runs)}/{len(runs)} | "
                             f"{fmt(spread([r['steps_to_target'] for r in runs]), 0)} | "
                             f"{fmt(spread([r['time_to_target_s'] for r in runs]), 0)} | "
                             f"{fmt(spread([r['steps_per_s'] for r in runs]), 0)} | "
                             f"{fmt(spread([r['best_mean_return'] for r in runs]), 1)} |")
            lines.append("\nPer seed: " + "; ".join(
                f"{system} seed {r['seed']}: " + (f"475 at {r['steps_to_target']:,}" if r["reached_target"] else
                                                   f"best {r['best_mean_return']:.1f} in {r['global_step']:,}")
                for system, runs in results[task].items() for r in runs) + ".\n")
    if "minatar" in results:
        lines += [f"\n## MinAtar/Breakout-v1: A3C, 2 workers, {args.minatar_steps:,} env steps\n",
                  "| system | mean return at the end | best mean return | env steps/s |", "|---|---|---|---|"]
        for system, runs in results["minatar"].items():
            lines.append(f"| {system} | {fmt(spread([r['final_mean_return'] for r in runs]), 1)} | "
                         f"{fmt(spread([r['best_mean_return'] for r in runs]), 1)} | "
                         f"{fmt(spread([r['steps_per_s'] for r in runs]), 0)} |")
    if "throughput" in results:
        lines += [f"\n## Throughput on {ENV}, learning rate 0, {args.throughput_steps:,} env steps per run, "
                  f"{args.repeats} repeats\n",
                  "| algorithm | feed-forward env steps/s | --lstm env steps/s | ratio --lstm / feed-forward |",
                  "|---|---|---|---|"]
        for algo, rates in results["throughput"].items():
            ratios = [b / a for a, b in zip(rates["feed-forward"], rates["--lstm"])]
            lines.append(f"| {algo} | {fmt(spread(rates['feed-forward']), 0)} | {fmt(spread(rates['--lstm']), 0)} | "
                         f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    name = "recurrent_" + "_".join(args.tasks)
    if any(t in results for t in ("a3c", "ppo", "minatar")):
        plot(results, results_dir() / f"{name}.png")
        lines.append(f"\n![curves]({name}.png)\n")
    write_results(name, {"args": vars(args), "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
