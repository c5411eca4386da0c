"""Stable-Baselines3 PPO or A2C on CartPole-v1 with the rl-baselines3-zoo hyperparameters,
stopped when the mean return of the last 100 episodes reaches the target.

Prints one JSON line: time to target (s, from model construction), env steps to target,
env steps/s. Run by ``cartpole_vs_sb3.py``; needs ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

# rl-baselines3-zoo, hyperparams/ppo.yml and a2c.yml, CartPole-v1 (lin_X: linear from X to 0).
ZOO = {
    "ppo": dict(n_envs=8, n_timesteps=100_000, kwargs=dict(
        n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
        learning_rate="lin_0.001", clip_range="lin_0.2")),
    "a2c": dict(n_envs=8, n_timesteps=500_000, kwargs=dict(ent_coef=0.0)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=sorted(ZOO), default="ppo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--total-steps", type=int, default=None, help="env steps at most (default: the zoo's)")
    parser.add_argument("--smoke", action="store_true", help="2,000 env steps: check that the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.total_steps = 2_000
    torch.set_num_threads(args.threads)

    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    zoo = ZOO[args.algo]
    kwargs = dict(zoo["kwargs"])
    for key in ("learning_rate", "clip_range"):
        if isinstance(kwargs.get(key), str):
            initial = float(kwargs[key].split("_")[1])
            kwargs[key] = lambda progress, initial=initial: progress * initial

    class StopAtTarget(BaseCallback):
        def __init__(self):
            super().__init__()
            self.solved = None

        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer
            if len(buf) == 100 and sum(e["r"] for e in buf) / 100 >= args.target:
                self.solved = (time.perf_counter() - start, self.num_timesteps)
                return False
            return True

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=zoo["n_envs"], seed=args.seed)
    cls = {"ppo": PPO, "a2c": A2C}[args.algo]
    model = cls("MlpPolicy", env, seed=args.seed, device="cpu", verbose=0, **kwargs)
    callback = StopAtTarget()
    model.learn(total_timesteps=args.total_steps or zoo["n_timesteps"], callback=callback)
    wall = time.perf_counter() - start
    buf = model.ep_info_buffer
    print(json.dumps({
        "algo": f"sb3-{args.algo}", "seed": args.seed, "n_envs": zoo["n_envs"],
        "reached_target": callback.solved is not None,
        "time_to_target_s": callback.solved[0] if callback.solved else None,
        "steps_to_target": callback.solved[1] if callback.solved else None,
        "global_step": model.num_timesteps, "wall_time_s": wall,
        "steps_per_s": model.num_timesteps / wall,
        "mean_return": sum(e["r"] for e in buf) / len(buf) if buf else None,
    }))


if __name__ == "__main__":
    main()
