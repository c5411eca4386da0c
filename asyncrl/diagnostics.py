"""Health checks of a trained network's features.

A ReLU torso can *collapse*: units whose pre-activation turned negative on every input
output 0 for good (no gradient reaches their weights again), and the policy, reading
constant features, stays where it started. ``torso_health`` measures it on a batch of
real observations; ``python -m asyncrl.diagnostics RUN_DIR`` measures a run's checkpoint
on frames of its own environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ACTIVE_STD = 1e-6
"""A unit is *active* if its output's standard deviation over the observations exceeds this."""


@dataclasses.dataclass(frozen=True)
class TorsoHealth:
    """Statistics of a torso's output features over a batch of observations.

    Attributes:
        units: width of the torso's output.
        active_units: units whose output varies across the observations (std > ``ACTIVE_STD``).
        dead_units: units that output 0 for every observation (a ReLU that never fires).
        feature_std: mean over units of each unit's standard deviation across observations.
    """

    units: int
    active_units: int
    dead_units: int
    feature_std: float

    @property
    def active_fraction(self) -> float:
        """``active_units / units``."""
        return self.active_units / self.units


@torch.no_grad()
def torso_health(torso: nn.Module, obs: torch.Tensor) -> TorsoHealth:
    """Measure ``torso``'s features on ``obs: [N, *obs_shape]`` (N >= 2, the torso's dtype).

    Raises:
        ValueError: if fewer than two observations are given.
    """
    if obs.shape[0] < 2:
        raise ValueError(f"torso_health needs at least 2 observations, got {obs.shape[0]}")
    features = torso(obs).double()  # [N, units]
    std = features.std(dim=0)  # [units]
    return TorsoHealth(
        units=features.shape[1],
        active_units=int((std > ACTIVE_STD).sum()),
        dead_units=int((features == 0).all(dim=0).sum()),
        feature_std=float(std.mean()),
    )


def collect_observations(env, n: int, seed: int = 0) -> np.ndarray:
    """``[n, *obs_shape]`` observations from ``env`` under a uniform random policy
    (episodes restart as they end; the action space is seeded with ``seed``)."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames = []
    for _ in range(n):
        frames.append(np.asarray(obs))
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(frames)


def checkpoint_health(run_dir: str | Path, observations: int = 300, seed: int = 0) -> TorsoHealth:
    """``torso_health`` of a run's checkpointed model (its policy's torso) on
    ``observations`` frames of the run's environment played at random.

    Raises:
        CheckpointError: if the checkpoint is missing or corrupt.
        EnvError: if its environment cannot be made.
        ValueError: if the model has no torso to measure.
    """
    from asyncrl import registry
    from asyncrl.checkpoint import CheckpointError, load_checkpoint
    from asyncrl.config import Config
    from asyncrl.envs import EnvOptions, check_spaces, make_env

    data = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    try:
        config = Config.from_dict(data["config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None
    env = make_env(config.run.env, seed, options=EnvOptions.from_run(config.run), train=False)
    obs_spec, action = check_spaces(env, config.run.algo)
    model = registry.get(config.run.algo).build_model(config, obs_spec, action)
    model.load_state_dict(data["model"])
    torso = getattr(model, "torso", None)
    if torso is None:
        raise ValueError(f"--algo {config.run.algo}'s model has no torso to measure")
    frames = collect_observations(env, observations, seed)
    env.close()
    return torso_health(torso, torch.from_numpy(frames.astype(obs_spec.np_dtype, copy=False)))


def main(argv: list[str] | None = None) -> int:
    from asyncrl.checkpoint import CheckpointError
    from asyncrl.envs import EnvError

    parser = argparse.ArgumentParser(
        prog="python -m asyncrl.diagnostics",
        description="Measure a run's torso: active and dead units on its own env's frames.",
    )
    parser.add_argument("run_dir", help="run folder containing checkpoint.pt")
    parser.add_argument("--observations", type=int, default=300, help="frames played at random (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        health = checkpoint_health(args.run_dir, args.observations)
    except (CheckpointError, EnvError, ValueError) as exc:
        print(f"asyncrl.diagnostics: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{health.active_units}/{health.units} units active, {health.dead_units} dead, "
        f"mean feature std {health.feature_std:.4g} over {args.observations} frames"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
