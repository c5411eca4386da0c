"""Off-policy learners and REINFORCE: learning targets, and SAC and DQN against
Stable-Baselines3 side by side.

Tasks (``--tasks``), each over ``--seeds``, every run a child process of this one, one
after another (wall times are on this machine; see the header for its cores):

- ``sac``: our SAC, 2 actors, ``Pendulum-v1`` (rl-baselines3-zoo's hyperparameters: lr
  1e-3, the rest SAC's defaults), until the mean return of the last 10 episodes
  (``--return-window 10``) reaches -200 or 20k env steps; then SB3's SAC with the same
  hyperparameters and replay ratio (one gradient step per env step), to the same target.
- ``td3``: our TD3, 2 actors, ``Pendulum-v1`` (the zoo's: discount 0.98, 10k random
  steps, noise 0.1, lr 1e-3, 400-300 networks): -200 within 30k env steps, last 10 episodes.
- ``ddpg``: our DDPG, same settings: -250 within 50k, last 10 episodes.
- ``dqn``: our DQN, 2 actors, ``CartPole-v1`` (its preset), until the mean return of the
  last 100 episodes reaches 475 or 150k env steps; then SB3's DQN with the same
  hyperparameters and replay ratio (one gradient step per 2 env steps, the target refreshed
  every 500 env steps = 250 updates, 3-step returns, batch 128, lr 5e-4, epsilon to 0.04
  over 8k steps, 256-256 network), except the per-actor final epsilons (SB3's one
  environment uses 0.04; our two actors 0.04 and 0.04^8).
- ``reinforce``: our REINFORCE, 2 actors, ``CartPole-v1``: 475 within 500k env steps.

SB3 runs in one process with torch's default threads (one per core), as a user gets it, or
``--sb3-threads N``; each of our processes uses one thread.

    python benchmarks/offpolicy.py --seeds 0 1 2

Writes ``benchmarks/results/offpolicy_<tasks>.{json,md,png}``; needs ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, learning_run, parse_args, results_dir, run_json, spread, write_results  # noqa: E402

TASKS = {  # name: (algo, env id, score, env-step cap, return window, SB3 hyperparameters or None)
    "sac": ("sac", "Pendulum-v1", -200.0, 20_000, 10,
            {"cls": "SAC", "learning_rate": 1e-3, "buffer_size": 1_000_000, "learning_starts": 100,
             "batch_size": 256, "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1,
             "ent_coef": "auto", "policy_kwargs": {"net_arch": [256, 256]}}),
    "td3": ("td3", "Pendulum-v1", -200.0, 30_000, 10, None),
    "ddpg": ("ddpg", "Pendulum-v1", -250.0, 50_000, 10, None),
    "dqn": ("dqn", "CartPole-v1", 475.0, 150_000, 100,
            {"cls": "DQN", "learning_rate": 5e-4, "batch_size": 128, "buffer_size": 100_000,
             "learning_starts": 1_000, "gamma": 0.99, "target_update_interval": 500, "train_freq": 2,
             "gradient_steps": 1, "n_steps": 3, "exploration_final_eps": 0.04, "exploration_steps": 8_000,
             "max_grad_norm": 10, "policy_kwargs": {"net_arch": [256, 256]}}),
    "reinforce": ("reinforce", "CartPole-v1", 475.0, 500_000, 100, None),
}

_SB3 = r"""
import collections, json, sys, time
import numpy as np
import gymnasium as gym
import stable_baselines3
from stable_baselines3.common.callbacks import BaseCallback

env_id, seed, cap, score, window, hp, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6]), int(sys.argv[7])
if threads:
    import torch
    torch.set_num_threads(threads)
cls = getattr(stable_baselines3, hp.pop("cls"))
if "exploration_steps" in hp:  # SB3 counts the exploration schedule as a share of learn()'s steps
    hp["exploration_fraction"] = hp.pop("exploration_steps") / cap


class Target(BaseCallback):
    def __init__(self):
        super().__init__()
        self.returns = collections.deque(maxlen=window)
        self.curve, self.reached = [], None
    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(info["episode"]["r"])
                if len(self.returns) == window:
                    mean = float(np.mean(self.returns))
                    self.curve.append((self.num_timesteps, time.perf_counter() - start, mean))
                    if mean >= score:
                        self.reached = (self.num_timesteps, time.perf_counter() - start, mean)
                        return False
        return True

start = time.perf_counter()
model = cls("MlpPolicy", gym.make(env_id), seed=seed, device="cpu", verbose=0, **hp)
cb = Target()
model.learn(total_timesteps=cap, callback=cb)
wall = time.perf_counter() - start
import torch
print(json.dumps({"reached_target": cb.reached is not None, "steps_to_target": cb.reached and cb.reached[0],
                  "time_to_target_s": cb.reached and cb.reached[1], "global_step": model.num_timesteps,
                  "wall_time_s": wall, "steps_per_s": model.num_timesteps / wall, "torch_threads": torch.get_num_threads(),
                  "final_mean_return": float(np.mean(cb.returns)) if cb.returns else None,
                  "best_mean_return": max((m for _, _, m in cb.curve), default=None), "curve": cb.curve}))
"""


def ours(task: str, seed: int, tmp: Path) -> dict:
    algo, env, score, cap, window, _ = TASKS[task]
    return learning_run(["--algo", algo, "--env", env, "--workers", "2", "--seed", str(seed), "--total-steps",
                         str(cap), "--target-return", str(score), "--return-window", str(window)],
                        tmp / f"{task}-{seed}")


def sb3(task: str, seed: int, threads: int) -> dict:
    _, env, score, cap, window, hp = TASKS[task]
    out, _, err = run_json([sys.executable, "-c", _SB3, env, str(seed), str(cap), str(score), str(window),
                            json.dumps(hp), str(threads)], timeout=4 * 3600)
    return out or {"error": err}


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    tasks = list(results)
    fig = Figure(figsize=(5 * len(tasks), 4))
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for colour, (system, runs) in zip(("C0", "C2"), results[task].items()):
            for i, run in enumerate(runs):
                if run.get("curve"):
                    steps, _, mean = zip(*run["curve"])
                    ax.plot([s / 1e3 for s in steps], mean, c=colour, lw=1.2, label=system if i == 0 else None)
        algo, env, score, cap, window, _ = TASKS[task]
        ax.set_title(f"{algo} on {env}")
        ax.set_xlabel("env steps (thousands)")
        ax.set_ylabel(f"mean return, last {window} episodes")
        ax.axhline(score, c="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 runs")
    p.add_argument("--sb3-threads", type=int, default=0,
                   help="torch threads of the SB3 process (default 0: torch's default, one per core)")
    p.add_argument("--note", default="", help="conditions of the measurement, written under the command")
    args = parse_args(p, seeds=[0], tasks=["sac"], sb3_threads=1)
    if args.smoke:
        TASKS.update({name: (*task[:3], 1_000, *task[4:]) for name, task in TASKS.items()})

    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for task in args.tasks:
            algo = TASKS[task][0]
            results[task] = {f"asyncrl {algo}": []}
            for seed in args.seeds:
                results[task][f"asyncrl {algo}"].append({"seed": seed, **ours(task, seed, tmp)})
                if TASKS[task][5] is not None and not args.no_sb3:
                    results[task].setdefault(f"SB3 {algo}", []).append({"seed": seed,
                                                                         **sb3(task, seed, args.sb3_threads)})
                print(json.dumps({t: {s: [{x: y for x, y in r.items() if x != "curve"} for r in v]
                                      for s, v in d.items()} for t, d in results.items()}), file=sys.stderr, flush=True)

    lines = ["# Off-policy learners and REINFORCE\n",
             f"`python benchmarks/offpolicy.py --seeds {' '.join(map(str, args.seeds))} --tasks {' '.join(args.tasks)}`. "
             "Runs were sequential child processes of one script; env steps are summed over all actors; ours: 2 "
             "actors + 1 learner, one torch thread each; SB3: one process, "
             + (f"{args.sb3_threads} torch thread(s)." if args.sb3_threads else "torch's default threads (one per core).")
             + (f" {args.note}" if args.note else "") + "\n"]
    for task, systems in results.items():
        algo, env, score, cap, window, _ = TASKS[task]
        lines += [f"\n## {algo} on {env}: mean return of the last {window} episodes ≥ {score:g} within {cap:,} env steps\n",
                  "| system | reached | env steps to target | wall time to target (s) | env steps/s | best mean return |",
                  "|---|---|---|---|---|---|"]
        for system, runs in systems.items():
            ok = [r for r in runs if "error" not in r]
            lines.append(f"| {system} | {sum(bool(r['reached_target']) for r in ok)}/{len(runs)} | "
                         f"{fmt(spread([r['steps_to_target'] for r in ok]), 0)} | "
                         f"{fmt(spread([r['time_to_target_s'] for r in ok]), 1)} | "
                         f"{fmt(spread([r['steps_per_s'] for r in ok]), 0)} | "
                         f"{fmt(spread([r['best_mean_return'] for r in ok]), 1)} |")
        if len(systems) == 2:
            (_, mine), (_, theirs) = systems.items()
            by_seed = {r["seed"]: r for r in mine if r.get("reached_target")}
            ratios = [by_seed[r["seed"]]["time_to_target_s"] / r["time_to_target_s"] for r in theirs
                      if r.get("reached_target") and r["seed"] in by_seed]
            if ratios:
                lines.append(f"\nWall time to the target, ours / SB3's, per seed that both reached: "
                             f"{', '.join(f'{x:.3f}' for x in ratios)}; median {fmt(spread(ratios), 3)}.\n")
        lines.append("\nPer seed:\n")
        for system, runs in systems.items():
            for r in runs:
                if "error" in r:
                    lines.append(f"- {system}, seed {r['seed']}: error {r['error'][-300:]}")
                    continue
                reached = (f"reached {score:g} at {r['steps_to_target']:,} env steps, {r['time_to_target_s']:.1f} s"
                           if r["reached_target"] else f"did not reach {score:g}")
                lines.append(f"- {system}, seed {r['seed']}: {reached}; stopped at {r['global_step']:,} env steps "
                             f"after {r['wall_time_s']:.0f} s ({r['steps_per_s']:,.0f} env steps/s)")
    name = "offpolicy_" + "_".join(args.tasks) + (f"_sb3_{args.sb3_threads}_thread" if args.sb3_threads else "")
    lines.append(f"\n![curves]({name}.png)\n")
    plot(results, results_dir() / f"{name}.png")
    write_results(name, {"args": vars(args), "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
