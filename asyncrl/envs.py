"""Environment construction: one factory for every worker, evaluation and check.

Besides any registered Gymnasium id, two families get their standard pipelines, built
from Gymnasium's own wrappers:

- **Atari** (``ALE/Pong-v5``, any ALE id; ``pip install -e ".[atari]"``): the base env
  with ``frameskip=1`` and ``--repeat-action-probability`` (default 0.0, as in Mnih et
  al. 2016 and the ``NoFrameskip-v4`` ids; ALE v5's own default is 0.25), then
  ``AtariPreprocessing`` (no-op starts up to 30, frame skip 4 with max-pooling of the
  last two frames, 84x84 greyscale, ``--terminal-on-life-loss``) and
  ``FrameStackObservation(4)``: observations ``[4, 84, 84] uint8``. One agent step is 4
  frames. For training the rewards are clipped to [-1, 1] (``ClipRewardKeepScore``); the
  game's own score is what episode returns report.
- **MinAtar** (``MinAtar/Breakout-v1`` and the other four games; ``pip install -e
  ".[minatar]"``): the game's channels-last ``bool`` frames become ``[C, 10, 10] uint8``.

The package registers ``asyncrl/CartPoleNoVelocity-v1`` (``cartpole_no_velocity``), a
partially observed task for recurrent policies.

Environments with ``Box`` actions (``Pendulum-v1``; MuJoCo's ``-v5`` tasks with ``pip
install -e ".[mujoco]"``; ``LunarLanderContinuous-v3`` and ``BipedalWalker-v3`` with
``".[box2d]"``) are wrapped in Gymnasium's ``ClipAction``: the Gaussian policies sample
unbounded actions and the environment clips them to the space's bounds
(``bounded_action_space`` still reports those bounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from asyncrl.algos import CONTINUOUS_ACTIONS, CONTINUOUS_ONLY
from asyncrl.distributions import ActionSpec
from asyncrl.networks import ObsSpec


def cartpole_no_velocity(**kwargs: Any) -> gym.Env:
    """CartPole with the cart's and the pole's velocities removed from the observation:
    ``[x, theta]`` float32, a partially observed task that a policy without memory cannot
    solve (registered as ``asyncrl/CartPoleNoVelocity-v1``: 500-step episodes, reward
    threshold 475, as ``CartPole-v1``)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv
    from gymnasium.wrappers import TransformObservation

    env = CartPoleEnv(**kwargs)
    full = env.observation_space
    space = gym.spaces.Box(full.low[[0, 2]], full.high[[0, 2]], dtype=np.float32)
    return TransformObservation(env, lambda obs: np.asarray(obs[[0, 2]], dtype=np.float32), space)


if "asyncrl/CartPoleNoVelocity-v1" not in gym.registry:
    gym.register("asyncrl/CartPoleNoVelocity-v1", entry_point="asyncrl.envs:cartpole_no_velocity",
                 max_episode_steps=500, reward_threshold=475.0)


class EnvError(ValueError):
    """An environment id that cannot be made, or spaces an algorithm cannot use."""


@dataclasses.dataclass(frozen=True)
class EnvOptions:
    """How to build Atari environments (ignored by others).

    Attributes:
        repeat_action_probability: ALE's sticky-action probability.
        terminal_on_life_loss: a lost life ends the episode (Gymnasium's
            ``AtariPreprocessing`` then resets the whole game on the next ``reset``).
    """

    repeat_action_probability: float = 0.0
    terminal_on_life_loss: bool = False

    @classmethod
    def from_run(cls, run: Any) -> "EnvOptions":
        """The options of a ``RunConfig``."""
        return cls(run.repeat_action_probability, run.terminal_on_life_loss)


def env_family(env_id: str) -> str:
    """``"atari"``, ``"minatar"`` or ``"gym"`` (any other id)."""
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        return "atari"
    if env_id.startswith("MinAtar/"):
        return "minatar"
    return "gym"


def _register_family(env_id: str, family: str) -> None:
    """Register the family's ids with Gymnasium (1.x no longer loads plugins itself).

    Raises:
        EnvError: if the family's extra is not installed, naming the ``pip install``.
    """
    try:
        if family == "atari":
            import ale_py

            gym.register_envs(ale_py)
        elif family == "minatar":
            from minatar import gym as minatar_gym

            if env_id not in gym.registry:
                minatar_gym.register_envs()
    except ImportError as exc:
        raise EnvError(f"{env_id} needs the {family} extra ({exc.name} is not installed): "
                       f"pip install -e \".[{family}]\"") from None


class ClipRewardKeepScore(gym.Wrapper):
    """Clip each reward to [-1, 1] (Mnih et al. 2016, Section 8) and keep the game's own
    reward in ``info["score"]``, which is what episode returns report (``game_score``)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["score"] = float(reward)
        return obs, float(np.clip(reward, -1.0, 1.0)), terminated, truncated, info


def game_score(reward: float, info: dict) -> float:
    """The reward to add to the episode's reported return: the unclipped game reward
    where rewards are clipped for training, else ``reward`` itself."""
    return info.get("score", reward)


def _render_kwargs(render_mode: str | None) -> dict[str, Any]:
    return {} if render_mode is None else {"render_mode": render_mode}  # not every env takes the argument


def _atari(env_id: str, options: EnvOptions, train: bool, render_mode: str | None) -> gym.Env:
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    kwargs: dict[str, Any] = {"repeat_action_probability": options.repeat_action_probability}
    if env_id.startswith("ALE/"):
        kwargs["frameskip"] = 1
    env = gym.make(env_id, **kwargs, **_render_kwargs(render_mode))
    try:
        env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                                 terminal_on_life_loss=options.terminal_on_life_loss, scale_obs=False)
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"{env_id} needs the atari extra ({exc}): pip install -e \".[atari]\"") from None
    env = FrameStackObservation(env, 4)  # [4, 84, 84] uint8
    return ClipRewardKeepScore(env) if train else env


class _Uint8Frames(gym.Wrapper):
    """MinAtar renders float frames in [0, 1] and declares no frame rate; video writers
    want uint8 frames and a rate."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def render(self):
        frame = self.env.render()
        return (np.asarray(frame) * 255).astype(np.uint8) if frame is not None else None


def _minatar(env_id: str, render_mode: str | None) -> gym.Env:
    from gymnasium.wrappers import TransformObservation

    env = gym.make(env_id, **_render_kwargs(render_mode))
    height, width, channels = env.observation_space.shape
    space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)
    env = TransformObservation(env, lambda obs: np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.uint8),
                               space)  # [C, 10, 10] uint8
    return _Uint8Frames(env) if render_mode == "rgb_array" else env


def make_env(env_id: str, seed: int | None = None, worker_id: int = 0, options: EnvOptions | None = None,
             train: bool = True, render_mode: str | None = None) -> gym.Env:
    """Make one Gymnasium environment for actor-learner ``worker_id``.

    Args:
        env_id: a registered Gymnasium id, an ALE or MinAtar id (see the module
            docstring), or ``"module:Id"`` to import ``module`` (which registers ``Id``)
            first.
        seed: base seed; the environment's action space is seeded with
            ``seed + worker_id``. The first ``reset`` must pass the same seed.
        worker_id: index of the actor-learner, 0-based.
        options: Atari settings (default: ``EnvOptions()``).
        train: Atari rewards clipped for training (``False``: evaluation, raw scores).
        render_mode: Gymnasium's ``render_mode`` (``"rgb_array"`` for video).

    Returns:
        The environment, with its registered wrappers (e.g. ``TimeLimit``), so that
        time-limit ends are reported as ``truncated`` and never as ``terminated``.

    Raises:
        EnvError: if ``env_id`` is not registered, its module cannot be imported, or
            its family's extra is not installed (the message names the ``pip install``).
    """
    options = options or EnvOptions()
    family = env_family(env_id)
    _register_family(env_id, family)
    try:
        if family == "atari":
            env = _atari(env_id, options, train, render_mode)
        elif family == "minatar":
            env = _minatar(env_id, render_mode)
        else:
            if _extra_of(env_id) == "mujoco":
                _mujoco_log_to_console_only()
            env = gym.make(env_id, **_render_kwargs(render_mode))
    except gym.error.DependencyNotInstalled as exc:
        extra = _extra_of(env_id)
        hint = f': pip install -e ".[{extra}]"' if extra else ""
        raise EnvError(f"{env_id} needs {'the ' + extra + ' extra' if extra else 'a package'} ({exc}){hint}") from None
    except (gym.error.Error, ModuleNotFoundError, ImportError) as exc:
        raise EnvError(f"cannot make environment {env_id!r}: {exc}") from None
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)  # the policy's unbounded samples, clipped to the space's bounds
    if seed is not None:
        env.action_space.seed(seed + worker_id)
    return env


def _mujoco_log_to_console_only() -> None:
    """Keep MuJoCo from writing ``MUJOCO_LOG.TXT`` into the working directory (it logs every
    warning there, e.g. the deprecation warnings of Gymnasium's model files); the warnings
    still reach stderr. MuJoCo releases without ``MjLogConfig`` (before 4) are left as they are."""
    try:
        import mujoco
    except ImportError:
        return  # make_env then names the extra
    log_config = getattr(mujoco, "MjLogConfig", None)
    if log_config is not None:
        config = log_config.get()
        if config.logto_file:
            config.logto_file = False
            log_config.set(config)


def _extra_of(env_id: str) -> str | None:
    """The extra that provides a Gymnasium id's dependencies (MuJoCo, Box2D), if we know it."""
    try:
        entry = str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        return None
    for module, extra in (("gymnasium.envs.mujoco", "mujoco"), ("gymnasium.envs.box2d", "box2d")):
        if entry.startswith(module):
            return extra
    return None


def bounded_action_space(env: gym.Env) -> gym.Space:
    """The action space with its bounds: what ``ClipAction`` (which declares ``(-inf, inf)``)
    clips to, or the space itself."""
    inner: Any = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, gym.wrappers.ClipAction):
            return inner.env.action_space
        inner = inner.env
    return env.action_space


def obs_spec(space: gym.Space) -> ObsSpec | None:
    """The ``ObsSpec`` of an observation space, or None if no network reads it: a 1-D
    ``Box`` (float32 vectors) or a 3-D channels-first one (images; uint8 stays uint8)."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (1, 3):
        return None
    if len(space.shape) == 1:
        return ObsSpec(tuple(space.shape))
    if space.dtype == np.uint8:
        return ObsSpec(tuple(space.shape), "uint8", float(np.max(space.high)))
    return ObsSpec(tuple(space.shape), "float32", 1.0)


def check_spaces(env: gym.Env, algo: str) -> tuple[ObsSpec, ActionSpec]:
    """Check that ``algo`` can act in ``env``.

    Returns:
        ``(obs, action)``: the observation spec and the action spec (``Discrete(n)``, or
        a 1-D ``Box`` for the algorithms in ``algos.CONTINUOUS_ACTIONS``).

    Raises:
        EnvError: if the action space is neither ``Discrete`` nor a 1-D ``Box``, a
            ``Box`` for an algorithm that needs discrete actions, or the observation space
            is neither a 1-D ``Box`` nor a 3-D (channels-first image) one.
    """
    env_id = env.spec.id if env.spec is not None else type(env).__name__
    space = bounded_action_space(env)
    if isinstance(space, gym.spaces.Discrete):
        if algo in CONTINUOUS_ONLY:
            raise EnvError(f"--algo {algo} needs a continuous (Box) action space, but {env_id} has {space}; "
                           f"use --algo dqn for discrete actions")
        action = ActionSpec(n=int(space.n))
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if algo not in CONTINUOUS_ACTIONS:
            raise EnvError(f"--algo {algo} needs a discrete action space, but {env_id} has continuous actions "
                           f"{space}; use --algo {', '.join(sorted(CONTINUOUS_ACTIONS))}")
        action = ActionSpec.box(space.low, space.high)
        if algo in CONTINUOUS_ONLY and not action.bounded:
            raise EnvError(f"--algo {algo} acts in [-1, 1] mapped to the action bounds, but {env_id} has "
                           f"unbounded actions {space}")
    else:
        kinds = "a discrete or a 1-D Box" if algo in CONTINUOUS_ACTIONS else "a discrete"
        raise EnvError(f"--algo {algo} needs {kinds} action space, but {env_id} has {type(space).__name__} {space}")
    spec = obs_spec(env.observation_space)
    if spec is None:
        raise EnvError(f"--algo {algo} needs a flat Box or a (C, H, W) image Box observation space, but "
                       f"{env_id} has {env.observation_space}")
    return spec, action


def start_worker_env(run: Any, worker_id: int, wrap: Callable[[gym.Env], gym.Env] | None = None
                     ) -> tuple[gym.Env, np.ndarray, ObsSpec]:
    """Make, check and reset actor-learner ``worker_id``'s environment for the run
    ``run`` (a ``RunConfig``).

    The environment and its action space are seeded with ``run.seed + worker_id``.

    Args:
        wrap: wraps the checked environment before its first reset (observation
            normalisation, ``asyncrl.normalization``).

    Returns:
        ``(env, first_obs, obs_spec)``; ``first_obs`` has the spec's dtype.

    Raises:
        EnvError: if the environment cannot be made or ``run.algo`` cannot act in it.
    """
    env = make_env(run.env, run.seed, worker_id, EnvOptions.from_run(run))
    spec, _ = check_spaces(env, run.algo)
    if wrap is not None:
        env = wrap(env)
    obs, _ = env.reset(seed=run.seed + worker_id)
    return env, np.asarray(obs, dtype=spec.np_dtype), spec
