"""Continuous actions: Gaussian policies on Pendulum, InvertedPendulum and HalfCheetah.

Tasks (``--tasks``), each over ``--seeds``, every run a child process of this one, one
after another (wall times are on this machine; see the header for its cores):

- ``pendulum``: our PPO, 2 actors (its ``Pendulum-v1`` preset), until the mean return of
  the last 100 episodes reaches -250 or 300k env steps.
- ``inverted-pendulum``: our A3C, 2 workers (the paper's Gaussian: softplus variance,
  entropy 1e-4), until ``InvertedPendulum-v5``'s mean return reaches 950 or 500k env steps.
- ``halfcheetah``: our PPO, 2 actors (CleanRL's ``ppo_continuous_action`` settings, the
  MuJoCo preset), for 1M env steps; then, in the same script, Stable-Baselines3's PPO with
  the same hyperparameters (2 environments x 1024 steps, 10 epochs of 64-sample
  minibatches, lr 3e-4 annealed, clip 0.2 on ratio and value, no entropy bonus, 64-64 tanh
  networks, ``VecNormalize`` of observations and rewards clipped at 10), for 1M env steps.
  Reported: the mean return of the last 100 episodes at 1M env steps and the wall time.

    python benchmarks/continuous.py --seeds 0 1 2

Writes ``benchmarks/results/continuous_<tasks>.{json,md,png}``; needs
``pip install -e ".[mujoco,bench]"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, learning_run, parse_args, results_dir, run_json, spread, write_results  # noqa: E402

TASKS = {  # name: (system, algo, env id, score, env-step cap)
    "pendulum": ("asyncrl PPO", "ppo", "Pendulum-v1", -250.0, 300_000),
    "inverted-pendulum": ("asyncrl A3C", "a3c", "InvertedPendulum-v5", 950.0, 500_000),
    "halfcheetah": ("asyncrl PPO", "ppo", "HalfCheetah-v5", 1400.0, 1_000_000),
}

_SB3 = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from asyncrl.envs import mujoco_log_to_console_only
mujoco_log_to_console_only()  # (SB3 makes the env itself: no MUJOCO_LOG.TXT in the working directory)
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

env_id, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class Curve(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rows = []
    def _on_rollout_end(self):
        buf = self.model.ep_info_buffer
        if len(buf) == 100:
            self.rows.append((self.num_timesteps, time.perf_counter() - start, sum(e["r"] for e in buf) / 100))
    def _on_step(self):
        return True

start = time.perf_counter()
env = VecNormalize(make_vec_env(env_id, n_envs=2, seed=seed), norm_obs=True, norm_reward=True, clip_obs=10.0,
                   clip_reward=10.0, gamma=0.99)
model = PPO("MlpPolicy", env, n_steps=1024, batch_size=64, n_epochs=10, learning_rate=lambda f: f * 3e-4,
            gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5,
            max_grad_norm=0.5, seed=seed, device="cpu")
cb = Curve()
model.learn(total_timesteps=steps, callback=cb)
wall = time.perf_counter() - start
buf = model.ep_info_buffer
print(json.dumps({"global_step": model.num_timesteps, "wall_time_s": wall, "steps_per_s": model.num_timesteps / wall,
                  "final_mean_return": sum(e["r"] for e in buf) / len(buf), "curve": cb.rows}))
"""


def ours(algo: str, env: str, seed: int, steps: int, score: float | None, tmp: Path) -> dict:
    return learning_run(["--algo", algo, "--env", env, "--workers", "2", "--seed", str(seed), "--total-steps",
                         str(steps), "--target-return", "inf" if score is None else str(score)],
                        tmp / f"{algo}-{env.replace('/', '_')}-{seed}")


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = [(task, system) for task in results for system in results[task]]
    tasks = list(results)
    fig = Figure(figsize=(5 * (len(tasks) + ("halfcheetah" in tasks)), 4))
    axes = fig.subplots(1, len(tasks) + ("halfcheetah" in tasks), squeeze=False)[0]
    colours = {"asyncrl PPO": "C1", "asyncrl A3C": "C0", "SB3 PPO": "C2"}
    for task, system in panels:
        ax = axes[tasks.index(task)]
        for i, run in enumerate(results[task][system]):
            if run.get("curve"):
                steps, wall, mean = zip(*run["curve"])
                ax.plot([s / 1e6 for s in steps], mean, c=colours[system], lw=1.2, label=system if i == 0 else None)
                if task == "halfcheetah":
                    axes[-1].plot([t / 60 for t in wall], mean, c=colours[system], lw=1.2,
                                  label=system if i == 0 else None)
        ax.set_title(TASKS[task][2])
        ax.set_xlabel("env steps (millions)")
        ax.axhline(TASKS[task][3], c="grey", ls=":", lw=1)
    if "halfcheetah" in tasks:
        axes[-1].set_title("HalfCheetah-v5 against wall time (2 cores)")
        axes[-1].set_xlabel("wall time (min)")
    axes[0].set_ylabel("mean return, last 100 episodes")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--no-sb3", action="store_true", help="skip SB3's PPO on HalfCheetah")
    p.add_argument("--note", default="", help="conditions of the measurement, written under the command")
    args = parse_args(p, seeds=[0], tasks=["halfcheetah"])
    if args.smoke:  # one PPO batch of ours and SB3's
        TASKS.update({name: (*task[:4], 2_048) for name, task in TASKS.items()})

    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for task in args.tasks:
            system, algo, env, score, cap = TASKS[task]
            results[task] = {system: []}
            for seed in args.seeds:
                run = ours(algo, env, seed, cap, None if task == "halfcheetah" else score, tmp)
                results[task][system].append({"seed": seed, **run})
                if task == "halfcheetah" and not args.no_sb3:
                    out, _, err = run_json([sys.executable, "-c", _SB3, env, str(seed), str(cap)], timeout=4 * 3600)
                    results[task].setdefault("SB3 PPO", []).append({"seed": seed, **(out or {"error": err})})
                print(json.dumps({t: {s: [{x: y for x, y in r.items() if x != "curve"} for r in v]
                                      for s, v in d.items()} for t, d in results.items()}), file=sys.stderr, flush=True)

    lines = ["# Continuous actions: Gaussian policies\n",
             f"`python benchmarks/continuous.py --seeds {' '.join(map(str, args.seeds))} --tasks "
             f"{' '.join(args.tasks)}`. Runs were sequential child processes of one script; env steps are summed "
             "over all actors; returns are the mean of the last 100 episodes." + (f" {args.note}" if args.note else "")
             + "\n"]
    for task, systems in results.items():
        _, _, env, score, cap = TASKS[task]
        if task == "halfcheetah":
            lines += [f"\n## {env}: 1M env steps\n",
                      "| system | mean return at 1M (last 100 episodes) | seeds ≥ 1,400 | wall time to 1M (s) | env steps/s |",
                      "|---|---|---|---|---|"]
            for system, runs in systems.items():
                ok = [r for r in runs if "error" not in r]
                finals = [r["final_mean_return"] for r in ok]
                lines.append(f"| {system} | {fmt(spread(finals), 0)} | {sum(f >= score for f in finals)}/{len(runs)} | "
                             f"{fmt(spread([r['wall_time_s'] for r in ok]), 0)} | "
                             f"{fmt(spread([r['steps_per_s'] for r in ok]), 0)} |")
            ours_runs = {r["seed"]: r for r in systems.get("asyncrl PPO", [])}
            ratios = [ours_runs[r["seed"]]["wall_time_s"] / r["wall_time_s"] for r in systems.get("SB3 PPO", [])
                      if "error" not in r and r["seed"] in ours_runs]
            if ratios:
                lines.append(f"\nWall time to 1M env steps, ours / SB3's, per seed: "
                             f"{', '.join(f'{x:.3f}' for x in ratios)}; median {fmt(spread(ratios), 3)}.\n")
        else:
            system = next(iter(systems))
            runs = systems[system]
            lines += [f"\n## {env}: {system}, target {score:g} within {cap:,} env steps\n",
                      "| reached | env steps to target | wall time to target (s) | env steps/s | best mean return |",
                      "|---|---|---|---|---|",
                      f"| {sum(bool(r['reached_target']) for r in runs)}/{len(runs)} | "
                      f"{fmt(spread([r['steps_to_target'] for r in runs]), 0)} | "
                      f"{fmt(spread([r['time_to_target_s'] for r in runs]), 1)} | "
                      f"{fmt(spread([r['steps_per_s'] for r in runs]), 0)} | "
                      f"{fmt(spread([r['best_mean_return'] for r in runs]), 1)} |"]
        lines.append("\nPer seed:\n")
        for system, runs in systems.items():
            for r in runs:
                if "error" in r:
                    lines.append(f"- {system}, seed {r['seed']}: error {r['error'][-300:]}")
                    continue
                target = ""
                if task != "halfcheetah":  # (run to 1M env steps, no target)
                    target = (f"{'reached' if r['reached_target'] else 'did not reach'} {score:g}"
                              + (f" at {r['steps_to_target']:,} env steps, {r['time_to_target_s']:.1f} s; "
                                 if r["reached_target"] else "; "))
                lines.append(f"- {system}, seed {r['seed']}: {target}stopped at {r['global_step']:,} env steps after "
                             f"{r['wall_time_s']:.0f} s ({r['steps_per_s']:,.0f} env steps/s); mean return then "
                             f"{r['final_mean_return']:.1f}")
    name = "continuous_" + "_".join(t.replace("-", "_") for t in args.tasks)
    lines.append(f"\n![curves]({name}.png)\n")
    plot(results, results_dir() / f"{name}.png")
    write_results(name, {"args": vars(args), "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
