"""``python -m asyncrl.evaluate RUN_DIR --episodes N [--video PATH.mp4]``: the greedy
policy's return.

Loads ``RUN_DIR/checkpoint.pt``, rebuilds the model from the checkpoint's config, and
plays ``N`` episodes acting with ``argmax_a pi(a|s)`` (``argmax_a Q(s, a)``; a Gaussian
policy's mean, clipped to the action bounds by the environment; observations normalised
with the run's statistics where it normalised them). Prints
``mean ± std`` of the episode returns: on Atari the unclipped game score of whole games
(the training env's ``--repeat-action-probability`` applies; a run trained with
``--terminal-on-life-loss`` is still evaluated on whole games). ``--video`` records the
first episode with Gymnasium's ``RecordVideo`` (``pip install -e ".[video]"``). Exit code 2
(one line on stderr) if the run folder or checkpoint is missing or corrupt, or the video
cannot be written.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from asyncrl import registry
from asyncrl.checkpoint import CheckpointError, load_checkpoint
from asyncrl.config import CliError, Config, Parser
from asyncrl.envs import EnvError, EnvOptions, check_spaces, make_env
from asyncrl.normalization import NormalizedEnv


def _record_first_episode(env, video: Path):
    """``env`` wrapped to record its first episode into ``video`` (an ``.mp4`` path).

    Raises:
        EnvError: if the ``video`` extra (moviepy) is not installed or the path is not ``.mp4``.
    """
    from gymnasium.error import DependencyNotInstalled
    from gymnasium.wrappers import RecordVideo

    if video.suffix != ".mp4":
        raise EnvError(f"--video must name an .mp4 file, got {video}")
    try:
        import moviepy  # noqa: F401  (RecordVideo's writer)
    except ImportError:
        raise EnvError('--video needs the video extra (moviepy is not installed): pip install -e ".[video]"') from None
    folder = Path(tempfile.mkdtemp(prefix="asyncrl-video-")) / "clips"  # RecordVideo creates it
    try:
        return RecordVideo(
            env, str(folder), episode_trigger=lambda episode: episode == 0, name_prefix="episode", disable_logger=True
        ), folder
    except DependencyNotInstalled as exc:
        raise EnvError(f"--video: {exc}") from None


def evaluate(run_dir: str | Path, episodes: int, seed: int = 10_000, video: str | Path | None = None) -> np.ndarray:
    """Play ``episodes`` greedy episodes with a run's last checkpoint.

    Args:
        run_dir: a run folder holding ``checkpoint.pt``.
        episodes: number of episodes, >= 1.
        seed: seed of the first episode's reset (episode ``i`` uses ``seed + i``); far
            from training seeds by default.
        video: write the first episode to this ``.mp4`` file (Gymnasium's ``RecordVideo``).

    Returns:
        ``[episodes]`` float64 undiscounted episode returns.

    Raises:
        CheckpointError: if the checkpoint is missing, corrupt or does not fit its config.
        EnvError: if the checkpoint's environment cannot be made, or ``video`` cannot be
            written.
    """
    data = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    try:
        config = Config.from_dict(data["config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None
    render_mode = "rgb_array" if video is not None else None
    if video is not None and not os.environ.get("DISPLAY"):
        # MuJoCo renders through GLFW (a display) unless told otherwise; headless, EGL
        os.environ.setdefault("MUJOCO_GL", "egl")
    options = dataclasses.replace(EnvOptions.from_run(config.run), terminal_on_life_loss=False)  # whole games
    env = make_env(config.run.env, seed, options=options, train=False, render_mode=render_mode)
    obs_spec, action = check_spaces(env, config.run.algo)
    algo = registry.get(config.run.algo)
    model = algo.build_model(config, obs_spec, action)
    try:
        model.load_state_dict(data["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint model does not fit its config: {str(exc).splitlines()[0]}") from None
    model.eval()
    normalizer = getattr(model, "normalizer", None)
    if normalizer is not None and getattr(config.algo, "normalize_obs", False):
        # the policy's inputs as in training: the run's statistics, frozen; rewards stay raw
        normalized = NormalizedEnv(env, observations=True, rewards=False, obs_clip=config.algo.obs_clip)
        normalized.load(normalizer)
        env = normalized.env
    folder = None
    if video is not None:
        env, folder = _record_first_episode(env, Path(video))
    returns = np.zeros(episodes)
    try:
        with torch.no_grad():
            for i in range(episodes):
                obs, _ = env.reset(seed=seed + i)
                state = model.initial_state(1) if getattr(model, "recurrent", False) else None  # per episode
                done = False
                while not done:
                    obs_tensor = torch.from_numpy(np.asarray(obs, dtype=obs_spec.np_dtype))
                    action, state = algo.greedy_action(model, obs_tensor, state)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    returns[i] += float(reward)
                    done = terminated or truncated
        env.close()
    except Exception as exc:  # a renderer without its graphics library (MuJoCo's GL, pygame)
        if folder is None:
            raise
        shutil.rmtree(folder.parent, ignore_errors=True)
        raise EnvError(
            f"--video: cannot render {config.run.env}: {type(exc).__name__}: {str(exc).splitlines()[0]} "
            "(MuJoCo: set MUJOCO_GL=egl or osmesa; classic control: pip install pygame)"
        ) from None
    if folder is not None:
        clips = sorted(folder.glob("*.mp4"))
        if not clips:
            raise EnvError(f"--video: no video was written for {config.run.env}")
        target = Path(str(video))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(clips[0], target)
        shutil.rmtree(folder.parent, ignore_errors=True)
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m asyncrl.evaluate", description="Evaluate the greedy policy of a run's checkpoint.")
    parser.add_argument("run_dir", help="run folder containing checkpoint.pt")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play (default: %(default)s)")
    parser.add_argument(
        "--seed",
        type=int,
        default=10_000,
        help="seed of the first episode; episode i uses seed + i (default: %(default)s)",
    )
    parser.add_argument(
        "--video",
        metavar="PATH.mp4",
        default=None,
        help='record the first episode to this file (pip install -e ".[video]")',
    )
    try:
        args = parser.parse_args(argv)
        if args.episodes < 1:
            raise CliError(f"--episodes must be >= 1, got {args.episodes}")
        torch.set_num_threads(1)
        returns = evaluate(args.run_dir, args.episodes, args.seed, args.video)
    except (CliError, CheckpointError, EnvError) as exc:
        print(f"asyncrl.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{returns.mean():.2f} ± {returns.std():.2f} over {args.episodes} episodes "
        f"(min {returns.min():.1f}, max {returns.max():.1f})"
        + (f"; first episode recorded to {args.video}" if args.video else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
