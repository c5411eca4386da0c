"""Values that several algorithms' presets share, and the environment patterns they cover.

Each algorithm declares its own presets in its ``AlgoSpec`` (``asyncrl.registry.Preset``),
one provenance line each; the measurements behind them are in
``benchmarks/results/presets.md`` and the files it points to.
"""

from __future__ import annotations

import fnmatch
from typing import Any

ATARI = "ALE/*"
"""ale-py's Atari ids (``pip install -e ".[atari]"``)."""

MINATAR = "MinAtar/*"
"""MinAtar's ids (``pip install -e ".[minatar]"``)."""

MUJOCO_IDS = tuple(
    f"{name}-v*"
    for name in (
        "Ant",
        "HalfCheetah",
        "Hopper",
        "Humanoid",
        "HumanoidStandup",
        "InvertedDoublePendulum",
        "InvertedPendulum",
        "Pusher",
        "Reacher",
        "Swimmer",
        "Walker2d",
    )
)
"""Gymnasium's MuJoCo tasks (``pip install -e ".[mujoco]"``), as preset patterns."""

BOX2D_CONTINUOUS_IDS = ("LunarLanderContinuous-v*", "BipedalWalker-v*", "BipedalWalkerHardcore-v*")
"""Gymnasium's continuous-action Box2D tasks (``pip install -e ".[box2d]"``)."""

CONTINUOUS_CONTROL = MUJOCO_IDS + BOX2D_CONTINUOUS_IDS
"""Both of the above."""

RUN_PRESETS: tuple[tuple[str, dict[str, Any], str], ...] = (
    (
        ATARI,
        {"total_steps": 10_000_000},
        "T_max 10M agent steps = 40M frames: an Atari-sized budget (Mnih et al. 2016 plot tens of "
        "millions of frames per game); --target-return and --max-seconds stop a run earlier",
    ),
)
"""Run-level defaults by environment pattern, ``(pattern, values, provenance)``: applied
under the flags given, whatever the algorithm."""


def run_preset(env: str) -> dict[str, Any]:
    """The run-level preset values for ``env`` (the first matching pattern's), or ``{}``."""
    for pattern, values, _ in RUN_PRESETS:
        if fnmatch.fnmatchcase(env, pattern):
            return dict(values)
    return {}


PPO_CONTINUOUS: dict[str, Any] = {
    "envs_per_actor": 1,
    "unroll_length": 1024,
    "minibatch_size": 64,
    "epochs": 10,
    "lr": 3e-4,
    "lr_anneal": True,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "value_clip": 0.2,
    "entropy_coef": 0.0,
    "normalize_obs": True,
    "normalize_reward": True,
}
"""CleanRL's ``ppo_continuous_action.py`` settings, with its one environment's 2048-step
rollouts split over the default 2 actors."""

RMSPROP_PIXELS: dict[str, Any] = {"rms_eps_inside": True, "optim_eps": 0.1}
"""RMSProp as Mnih et al. 2016 write it, ``theta -= lr * grad / sqrt(g + 0.1)``: the
value-based methods' setting on Atari (``benchmarks/results/torso_health.md``)."""

RMSPROP_PIXELS_SOURCE = (
    "Mnih et al. 2016's RMSProp, eps 0.1 inside the root (ChainerRL's A3C too); torch's "
    "killed every CNN unit in 6k steps: benchmarks/results/torso_health.md"
)
"""The provenance line of ``RMSPROP_PIXELS``."""

RMSPROP_TF: dict[str, Any] = {"rms_eps_inside": True, "optim_eps": 1e-5, "rms_init": 1.0}
"""RMSProp as TensorFlow's ``RMSPropOptimizer`` (OpenAI Baselines' A2C; SB3's
``RMSpropTFLike``): ``theta -= lr * grad / sqrt(g + 1e-5)`` with ``g`` starting at 1. A3C's
and A2C's setting on Atari, whose losses are means over their batches
(``benchmarks/results/pong_tuning.md``)."""
