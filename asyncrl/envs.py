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
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np

from asyncrl import registry
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
    full = cast(gym.spaces.Box, env.observation_space)
    space = gym.spaces.Box(full.low[[0, 2]], full.high[[0, 2]], dtype=np.float32)
    return TransformObservation(env, lambda obs: np.asarray(obs[[0, 2]], dtype=np.float32), space)


if "asyncrl/CartPoleNoVelocity-v1" not in gym.registry:
    gym.register(
        "asyncrl/CartPoleNoVelocity-v1",
        entry_point="asyncrl.envs:cartpole_no_velocity",
        max_episode_steps=500,
        reward_threshold=475.0,
    )


class EnvError(ValueError):
    """An environment id that cannot be made, or spaces an algorithm cannot use."""


@dataclasses.dataclass(frozen=True)
class EnvOptions:
    """How to build Atari environments (ignored by others).

    Attributes:
        repeat_action_probability: ALE's sticky-action probability.
        terminal_on_life_loss: a lost life ends the learner's episode and the game goes
            on (``EpisodicLife``); episode returns stay whole-game scores.
    """

    repeat_action_probability: float = 0.0
    terminal_on_life_loss: bool = False

    @classmethod
    def from_run(cls, run: Any) -> EnvOptions:
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
        raise EnvError(
            f'{env_id} needs the {family} extra ({exc.name} is not installed): pip install -e ".[{family}]"'
        ) from None


class ClipRewardKeepScore(gym.Wrapper):
    """Clip each reward to [-1, 1] (Mnih et al. 2016, Section 8) and keep the game's own
    reward in ``info["score"]``, which is what episode returns report (``game_score``)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["score"] = float(reward)
        return obs, float(np.clip(reward, -1.0, 1.0)), terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner, and only a lost game resets the game
    (Mnih et al. 2015; OpenAI Baselines' and SB3's ``EpisodicLifeEnv``): after a life is
    lost, ``reset`` continues the same game with a no-op step. Such an end carries
    ``info["life_lost"] = True``, so that episode statistics (``game_over``) keep whole-game
    scores. (Gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` resets the
    whole game after every lost life instead.)"""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if not self.game_over and 0 < lives < self.lives:
            terminated = True
            info = {**info, "life_lost": True}
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)  # the same game, one life less
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = cast(Any, self.env.unwrapped).ale.lives()  # (an ALE env)
        return obs, info


def game_over(terminated: bool, truncated: bool, info: dict) -> bool:
    """Whether a step ended the game, which episode statistics count as one episode: the
    episode's end, unless it only lost a life (``EpisodicLife``)."""
    return (terminated or truncated) and not info.get("life_lost", False)


def game_score(reward: SupportsFloat, info: dict) -> float:
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
        env = AtariPreprocessing(
            env,
            noop_max=30,
            frame_skip=4,
            screen_size=84,
            grayscale_obs=True,
            terminal_on_life_loss=False,
            scale_obs=False,
        )
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f'{env_id} needs the atari extra ({exc}): pip install -e ".[atari]"') from None
    if options.terminal_on_life_loss:
        env = EpisodicLife(env)
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
    height, width, channels = cast(gym.spaces.Box, env.observation_space).shape
    space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)
    env = TransformObservation(
        env, lambda obs: np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.uint8), space
    )  # [C, 10, 10] uint8
    return _Uint8Frames(env) if render_mode == "rgb_array" else env


def make_env(
    env_id: str,
    seed: int | None = None,
    worker_id: int = 0,
    options: EnvOptions | None = None,
    train: bool = True,
    render_mode: str | None = None,
) -> gym.Env:
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
                mujoco_log_to_console_only()
            env = gym.make(env_id, **_render_kwargs(render_mode))
    except gym.error.DependencyNotInstalled as exc:
        extra = _extra_of(env_id)
        hint = f': pip install -e ".[{extra}]"' if extra else ""
        raise EnvError(f"{env_id} needs {'the ' + extra + ' extra' if extra else 'a package'} ({exc}){hint}") from None
    except (gym.error.Error, ModuleNotFoundError, ImportError) as exc:
        raise EnvError(f"cannot make environment {env_id!r}: {exc}") from None
    env = _observation_pipeline(env, env_id)
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)  # the policy's unbounded samples, clipped to the space's bounds
    if seed is not None:
        env.action_space.seed(seed + worker_id)
    return env


FLATTENED_SPACES = (
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
    gym.spaces.Tuple,
    gym.spaces.Dict,
)
"""Observation spaces the pipeline flattens into float32 vectors (``Discrete``: one-hot)."""


def _holds_image(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Box):
        return len(space.shape) >= 2
    if isinstance(space, gym.spaces.Tuple):
        return any(_holds_image(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Dict):
        return any(_holds_image(s) for s in space.spaces.values())
    return False


def image_layout(shape: tuple[int, ...]) -> str:
    """``"chw"`` or ``"hwc"`` for a 3-D image shape: the channel axis is the smallest one,
    first or last (SB3's ``is_image_space_channels_first``), or ``"unknown"`` where the
    smallest axis is the middle one or both ends tie (``(3, 84, 3)``)."""
    smallest = min(shape)
    first, last = shape[0] == smallest, shape[-1] == smallest
    if first and not last:
        return "chw"
    if last and not first:
        return "hwc"
    return "unknown"


def _observation_pipeline(env: gym.Env, env_id: str) -> gym.Env:
    """What every network reads: flat float32 vectors or ``(C, H, W)`` images.

    Channels-last images (``CarRacing-v3``'s ``(96, 96, 3)``) are transposed once, here;
    ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, ``Tuple`` and ``Dict`` observations
    are flattened with Gymnasium's ``FlattenObservation`` (one-hot for ``Discrete``) and
    cast to float32.

    Raises:
        EnvError: for a 3-D ``Box`` whose channel axis cannot be told, or a ``Tuple`` /
            ``Dict`` that holds an image.
    """
    from gymnasium.wrappers import FlattenObservation, TransformObservation

    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        layout = image_layout(space.shape)
        if layout == "unknown":
            raise EnvError(
                f"{env_id}: cannot tell the channel axis of images {space.shape} (neither the first nor "
                "the last axis is the smallest); wrap the env to give (C, H, W) or (H, W, C) images"
            )
        if layout == "hwc":
            chw = gym.spaces.Box(
                np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)), dtype=space.dtype
            )
            env = TransformObservation(env, lambda obs: np.ascontiguousarray(np.transpose(obs, (2, 0, 1))), chw)
        return env
    if isinstance(space, FLATTENED_SPACES):
        if _holds_image(space):
            raise EnvError(
                f"{env_id} has a {type(space).__name__} observation space holding an image ({space}); "
                "supported: flat vectors, (C, H, W) or (H, W, C) images, and Discrete, MultiDiscrete, "
                "MultiBinary, Tuple or Dict spaces of vectors (flattened)"
            )
        env = FlattenObservation(env)
        flat = cast(gym.spaces.Box, env.observation_space)
        space = gym.spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32)
        env = TransformObservation(env, lambda obs: np.asarray(obs, dtype=np.float32), space)  # [obs_dim] float32
    return env


def mujoco_log_to_console_only() -> None:
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
    ``Box`` (float32 vectors) or a 3-D channels-first one (images; uint8 stays uint8) —
    what ``make_env``'s observation pipeline gives for the spaces it takes."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (1, 3):
        return None
    if len(space.shape) == 1:
        return ObsSpec(tuple(space.shape))
    if space.dtype == np.uint8:
        return ObsSpec(tuple(space.shape), "uint8", float(np.max(space.high)))
    return ObsSpec(tuple(space.shape), "float32", 1.0)


def check_spaces(env: gym.Env, algo: str) -> tuple[ObsSpec, ActionSpec]:
    """Check that algorithm ``algo`` can act in ``env`` and read its observations
    (``AlgoSpec.actions``, ``bounded_actions`` and ``observations``).

    Returns:
        ``(obs, action)``: the observation spec and the action spec (``Discrete(n)``, a
        1-D ``Box``, ``MultiDiscrete`` or ``MultiBinary``).

    Raises:
        EnvError: if the algorithm cannot act in the action space (the message names those
            that can) or read the observations, which must be a 1-D ``Box`` or a 3-D
            (channels-first image) one after ``make_env``'s pipeline.
        ValueError: if ``algo`` is not registered.
    """
    spec = registry.get(algo)
    env_id = env.spec.id if env.spec is not None else type(env).__name__
    space = bounded_action_space(env)
    if isinstance(space, gym.spaces.Discrete):
        kind = "discrete"
        action = ActionSpec(n=int(space.n))
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        kind = "box"
        action = ActionSpec.box(space.low, space.high)
    elif isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and len(space.shape) == 1:
        kind = "multi"
        if isinstance(space, gym.spaces.MultiBinary):
            action = ActionSpec.multi_binary(space.shape[0])
        elif np.any(np.asarray(space.start) != 0):
            raise EnvError(f"--algo {algo} needs a MultiDiscrete action space starting at 0, but {env_id} has {space}")
        else:
            action = ActionSpec.multi_discrete(space.nvec)
    else:
        raise EnvError(
            f"--algo {algo} needs {_action_kinds(spec.actions)} action space, but {env_id} has "
            f"{type(space).__name__} {space}"
        )
    if kind not in spec.actions:
        others = registry.names(lambda s: kind in s.actions)
        raise EnvError(
            f"--algo {algo} needs {_action_kinds(spec.actions)} action space, but {env_id} has "
            f"{_KIND_WORDS[kind]} actions {space}; use --algo {', '.join(others)}"
        )
    if kind == "box" and spec.bounded_actions and not action.bounded:
        raise EnvError(
            f"--algo {algo} acts in [-1, 1] mapped to the action bounds, but {env_id} has unbounded actions {space}"
        )
    obs = obs_spec(env.observation_space)
    if obs is None:
        raise EnvError(
            f"--algo {algo} needs a flat Box or a (C, H, W) image Box observation space, but "
            f"{env_id} has {env.observation_space}"
        )
    if ("image" if obs.is_image else "vector") not in spec.observations:
        raise EnvError(f"{env_id}: --algo {algo} takes flat observations, got {obs.describe()}")
    return obs, action


_KIND_WORDS = {"discrete": "discrete", "box": "continuous", "multi": "MultiDiscrete/MultiBinary"}


def _action_kinds(kinds: frozenset[str]) -> str:
    """The action spaces of ``registry.ACTION_KINDS`` ``kinds``, in words: ``a discrete``."""
    if kinds == {"discrete"}:
        return "a discrete"
    if kinds == {"box"}:
        return "a continuous (Box)"
    if kinds == {"discrete", "box"}:
        return "a discrete or a 1-D Box"
    words = [
        w
        for k, w in (("discrete", "Discrete"), ("box", "1-D Box"), ("multi", "MultiDiscrete or MultiBinary"))
        if k in kinds
    ]
    return "a " + ", ".join(words[:-1]) + " or " + words[-1]


def start_worker_env(
    run: Any, worker_id: int, wrap: Callable[[gym.Env], gym.Env] | None = None
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
