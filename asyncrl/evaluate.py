"""``python -m asyncrl.evaluate RUN_DIR --episodes N``: the greedy policy's return.

Loads ``RUN_DIR/checkpoint.pt``, rebuilds the model from the checkpoint's config, and
plays ``N`` episodes acting with ``argmax_a pi(a|s)``. Prints ``mean ± std`` of the
episode returns. Exit code 2 (one line on stderr) if the run folder or checkpoint is
missing or corrupt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from asyncrl.algos import algo_module
from asyncrl.checkpoint import CheckpointError, load_checkpoint
from asyncrl.config import CliError, Config, _Parser
from asyncrl.envs import EnvError, check_spaces, make_env


def evaluate(run_dir: str | Path, episodes: int, seed: int = 10_000) -> np.ndarray:
    """Play ``episodes`` greedy episodes with a run's last checkpoint.

    Args:
        run_dir: a run folder holding ``checkpoint.pt``.
        episodes: number of episodes, >= 1.
        seed: seed of the first episode's reset (episode ``i`` uses ``seed + i``); far
            from training seeds by default.

    Returns:
        ``[episodes]`` float64 undiscounted episode returns.

    Raises:
        CheckpointError: if the checkpoint is missing, corrupt or does not fit its config.
        EnvError: if the checkpoint's environment cannot be made.
    """
    data = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    try:
        config = Config.from_dict(data["config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None
    env = make_env(config.run.env, seed)
    obs_dim, num_actions = check_spaces(env, config.run.algo)
    algo = algo_module(config.run.algo)
    model = algo.build_model(config, obs_dim, num_actions)
    try:
        model.load_state_dict(data["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint model does not fit its config: {str(exc).splitlines()[0]}") from None
    model.eval()
    returns = np.zeros(episodes)
    with torch.no_grad():
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                action = algo.greedy_action(model, torch.as_tensor(obs, dtype=torch.float32))
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[i] += float(reward)
                done = terminated or truncated
    env.close()
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m asyncrl.evaluate",
                     description="Evaluate the greedy policy of a run's checkpoint.")
    parser.add_argument("run_dir", help="run folder containing checkpoint.pt")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=10_000,
                        help="seed of the first episode; episode i uses seed + i (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
        if args.episodes < 1:
            raise CliError(f"--episodes must be >= 1, got {args.episodes}")
        torch.set_num_threads(1)
        returns = evaluate(args.run_dir, args.episodes, args.seed)
    except (CliError, CheckpointError, EnvError) as exc:
        print(f"asyncrl.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"{returns.mean():.2f} ± {returns.std():.2f} over {args.episodes} episodes "
          f"(min {returns.min():.1f}, max {returns.max():.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
