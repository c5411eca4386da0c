"""Learning MinAtar Breakout from pixels: A3C and PPO against Stable-Baselines3's PPO.

For each seed: our A3C (2 workers, its MinAtar preset) until the mean return of the
last 100 episodes reaches ``--a3c-score`` (default 10) or ``--a3c-steps`` env steps
(default 2M); our PPO (2 actors x 4 envs, its MinAtar preset) until ``--ppo-score``
(default 20) or ``--ppo-steps`` (5M); and SB3's PPO with its CNN policy on the same 8
environments and settings (``--sb3-steps``; 0 skips it), stopped at the PPO score. Each
run is a child process of this one, one after another; wall times are on this machine
(see the header for its cores). Env steps are agent steps (MinAtar has no frame skip).

    python benchmarks/minatar.py --seeds 0 1 2

Writes ``benchmarks/results/minatar_breakout_<systems>.{json,md,png}``; needs
``pip install -e ".[minatar,bench]"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, learning_run, parse_args, results_dir, run_json, spread, write_results  # noqa: E402

ENV = "MinAtar/Breakout-v1"

_SB3 = r"""
import json, sys, time
import numpy as np, torch, gymnasium as gym
from gymnasium.wrappers import TransformObservation
torch.set_num_threads(1)
from minatar import gym as minatar_gym
minatar_gym.register_envs()
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

seed, steps, score = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

def make():
    env = gym.make("MinAtar/Breakout-v1")
    h, w, c = env.observation_space.shape
    return TransformObservation(env, lambda o: o.transpose(2, 0, 1).astype(np.float32),
                                gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32))

class MinAtarCNN(BaseFeaturesExtractor):  # Young & Tian 2019: conv 16 3x3/1, fc 128
    def __init__(self, space):
        super().__init__(space, 128)
        c, h, w = space.shape
        self.net = torch.nn.Sequential(torch.nn.Conv2d(c, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                       torch.nn.Linear(16 * (h - 2) * (w - 2), 128), torch.nn.ReLU())
    def forward(self, obs):
        return self.net(obs)

class Stop(BaseCallback):
    def __init__(self):
        super().__init__()
        self.crossing, self.rows = None, []
    def _on_rollout_end(self):
        buf = self.model.ep_info_buffer
        if len(buf) == 100:
            mean = sum(e["r"] for e in buf) / 100
            self.rows.append((self.num_timesteps, time.perf_counter() - start, mean))
            if mean >= score and self.crossing is None:
                self.crossing = self.rows[-1]
    def _on_step(self):
        return self.crossing is None

start = time.perf_counter()
env = make_vec_env(make, n_envs=8, seed=seed)
model = PPO("MlpPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=lambda f: f * 2.5e-4,
            clip_range=0.2, ent_coef=0.01, vf_coef=0.5, gae_lambda=0.95, max_grad_norm=0.5, seed=seed, device="cpu",
            policy_kwargs=dict(features_extractor_class=MinAtarCNN, net_arch=[]))
cb = Stop()
model.learn(total_timesteps=steps, callback=cb)
wall = time.perf_counter() - start
print(json.dumps({"reached_target": cb.crossing is not None,
                  "steps_to_target": cb.crossing[0] if cb.crossing else None,
                  "time_to_target_s": cb.crossing[1] if cb.crossing else None,
                  "global_step": model.num_timesteps, "wall_time_s": wall,
                  "steps_per_s": model.num_timesteps / wall,
                  "best_mean_return": max((r[2] for r in cb.rows), default=None), "curve": cb.rows}))
"""


def ours(algo: str, seed: int, steps: int, score: float, tmp: Path) -> dict:
    return learning_run(["--algo", algo, "--env", ENV, "--workers", "2", "--seed", str(seed), "--total-steps",
                         str(steps), "--target-return", str(score)], tmp / f"{algo}-{seed}")


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    colours = {"asyncrl A3C": "C0", "asyncrl PPO": "C1", "SB3 PPO": "C2"}
    for system, runs in results.items():
        for i, run in enumerate(runs):
            if not run["curve"]:
                continue
            steps, wall, mean = zip(*run["curve"])
            label = system if i == 0 else None
            axes[0].plot([s / 1e6 for s in steps], mean, c=colours[system], lw=1.2, label=label)
            axes[1].plot([t / 60 for t in wall], mean, c=colours[system], lw=1.2, label=label)
    axes[0].set_xlabel("env steps (millions)")
    axes[1].set_xlabel("wall time (min)")
    axes[0].set_ylabel("mean return, last 100 episodes")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{ENV}, 2 workers / 8 envs, one curve per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--systems", nargs="+", default=["a3c", "ppo", "sb3"], choices=["a3c", "ppo", "sb3"])
    p.add_argument("--a3c-score", type=float, default=10.0)
    p.add_argument("--a3c-steps", type=int, default=2_000_000)
    p.add_argument("--ppo-score", type=float, default=20.0)
    p.add_argument("--ppo-steps", type=int, default=5_000_000)
    p.add_argument("--sb3-steps", type=int, default=5_000_000)
    p.add_argument("--note", default="", help="conditions of the measurement, written under the command")
    args = parse_args(p, seeds=[0], a3c_steps=2_000, ppo_steps=2_048, sb3_steps=1_024)

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for seed in args.seeds:
            if "a3c" in args.systems:
                results.setdefault("asyncrl A3C", []).append(
                    {"seed": seed, **ours("a3c", seed, args.a3c_steps, args.a3c_score, tmp)})
            if "ppo" in args.systems:
                results.setdefault("asyncrl PPO", []).append(
                    {"seed": seed, **ours("ppo", seed, args.ppo_steps, args.ppo_score, tmp)})
            if "sb3" in args.systems and args.sb3_steps:
                out, _, err = run_json([sys.executable, "-c", _SB3, str(seed), str(args.sb3_steps),
                                        str(args.ppo_score)], timeout=4 * 3600)
                results.setdefault("SB3 PPO", []).append({"seed": seed, **(out or {"error": err, "curve": []})})
            print(json.dumps({k: [{x: y for x, y in r.items() if x != "curve"} for r in v]
                              for k, v in results.items()}), file=sys.stderr, flush=True)
    scores = {"asyncrl A3C": args.a3c_score, "asyncrl PPO": args.ppo_score, "SB3 PPO": args.ppo_score}
    caps = {"asyncrl A3C": args.a3c_steps, "asyncrl PPO": args.ppo_steps, "SB3 PPO": args.sb3_steps}
    lines = [f"# {ENV}: learning from pixels\n",
             f"`python benchmarks/minatar.py --seeds {' '.join(map(str, args.seeds))} --systems "
             f"{' '.join(args.systems)}`. Each run stops at its score (mean return of the last 100 episodes) or "
             "its env-step cap; runs were sequential child processes of one script." + (f" {args.note}" if args.note else "")
             + "\n",
             "| system | score | cap (env steps) | reached | env steps to score | wall time to score (s) | env steps/s "
             "| best mean return |", "|---|---|---|---|---|---|---|---|"]
    for system, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        reached = sum(bool(r["reached_target"]) for r in ok)
        lines.append(
            f"| {system} | {scores[system]:g} | {caps[system]:,} | {reached}/{len(runs)} | "
            f"{fmt(spread([r['steps_to_target'] for r in ok]), 0)} | {fmt(spread([r['time_to_target_s'] for r in ok]), 0)} | "
            f"{fmt(spread([r['steps_per_s'] for r in ok]), 0)} | {fmt(spread([r['best_mean_return'] for r in ok]), 1)} |")
    lines.append("\nPer seed:\n")
    for system, runs in results.items():
        for r in runs:
            lines.append(f"- {system}, seed {r['seed']}: " + (
                f"error {r['error'][-200:]}" if "error" in r else
                f"{'reached' if r['reached_target'] else 'did not reach'} {scores[system]:g}"
                + (f" at {r['steps_to_target']:,} env steps, {r['time_to_target_s']:.0f} s" if r["reached_target"] else "")
                + f"; stopped at {r['global_step']:,} env steps after {r['wall_time_s']:.0f} s "
                  f"({r['steps_per_s']:,.0f} env steps/s); best mean return {r['best_mean_return']}"))
    name = "minatar_breakout_" + "_".join(args.systems)
    lines.append(f"\n![curves]({name}.png)\n")
    plot(results, results_dir() / f"{name}.png")
    write_results(name, {"args": vars(args), "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
