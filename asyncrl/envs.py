"""Environment construction: one factory for every worker, evaluation and check."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class EnvError(ValueError):
    """An environment id that cannot be made, or spaces an algorithm cannot use."""


def make_env(env_id: str, seed: int | None = None, worker_id: int = 0) -> gym.Env:
    """Make one Gymnasium environment for actor-learner ``worker_id``.

    Args:
        env_id: a registered Gymnasium id, or ``"module:Id"`` to import ``module``
            (which registers ``Id``) first.
        seed: base seed; the environment's action space is seeded with
            ``seed + worker_id``. The first ``reset`` must pass the same seed.
        worker_id: index of the actor-learner, 0-based.

    Returns:
        The environment, with its registered wrappers (e.g. ``TimeLimit``), so that
        time-limit ends are reported as ``truncated`` and never as ``terminated``.

    Raises:
        EnvError: if ``env_id`` is not registered or its module cannot be imported.
    """
    try:
        env = gym.make(env_id)
    except (gym.error.Error, ModuleNotFoundError, ImportError) as exc:
        raise EnvError(f"cannot make environment {env_id!r}: {exc}") from None
    if seed is not None:
        env.action_space.seed(seed + worker_id)
    return env


def check_spaces(env: gym.Env, algo: str) -> tuple[int, int]:
    """Check that ``algo`` can act in ``env``.

    Returns:
        ``(obs_dim, num_actions)``: the flat observation size and the number of
        discrete actions.

    Raises:
        EnvError: if the action space is not ``Discrete`` or the observation space is
            not a 1-D ``Box``.
    """
    env_id = env.spec.id if env.spec is not None else type(env).__name__
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise EnvError(
            f"--algo {algo} needs a discrete action space, but {env_id} has "
            f"{type(env.action_space).__name__} {env.action_space}"
        )
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise EnvError(
            f"--algo {algo} needs a flat Box observation space, but {env_id} has {space}"
        )
    return int(np.prod(space.shape)), int(env.action_space.n)



def start_worker_env(env_id: str, seed: int, worker_id: int, algo: str) -> tuple[gym.Env, np.ndarray, int]:
    """Make, check and reset actor-learner ``worker_id``'s environment.

    The environment and its action space are seeded with ``seed + worker_id``.

    Returns:
        ``(env, first_obs, obs_dim)``.

    Raises:
        EnvError: if the environment cannot be made or ``algo`` cannot act in it.
    """
    env = make_env(env_id, seed, worker_id)
    obs_dim, _ = check_spaces(env, algo)
    obs, _ = env.reset(seed=seed + worker_id)
    return env, obs, obs_dim
