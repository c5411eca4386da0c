"""What the asynchronous value-based methods share: the Q-network, its target network,
and the shared optimizer (Mnih et al. 2016, Section 4)."""

from __future__ import annotations

import copy
from typing import cast

import torch

from asyncrl.algos.base import SharedState
from asyncrl.backends.contract import Target
from asyncrl.config import Config
from asyncrl.config.presets import ATARI, MINATAR, RMSPROP_PIXELS, RMSPROP_PIXELS_SOURCE
from asyncrl.distributions import ActionSpec
from asyncrl.networks import ObsSpec, QNetwork, build_q_network
from asyncrl.registry import Preset
from asyncrl.shared import TargetNetwork, optimizer_for, share_model
from asyncrl.sync_round import make_round

LOSS_NAMES = ("td_loss", "q_taken")
"""Per-step means reported by every update; columns of ``metrics.csv``."""


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> QNetwork:
    """The Q-network described by ``config.algo`` for observations ``obs`` (not shared).

    Raises:
        NetworkError: if ``--network`` cannot read ``obs``.
    """
    return build_q_network(obs, action, config.algo.hidden_sizes, config.algo.network)


def greedy_action(model: QNetwork, obs: torch.Tensor, state=None) -> tuple[int, None]:
    """``(argmax_a Q(s, a), None)`` for one observation ``obs: [*obs_shape]`` (no state)."""
    return int(model(obs.unsqueeze(0)).argmax()), None


def make_shared(config: Config, obs: ObsSpec, action: ActionSpec | int) -> SharedState:
    """theta, theta^- (a copy of theta) and the shared optimizer, all in shared memory."""
    a = config.algo
    torch.manual_seed(config.run.seed)
    model = share_model(build_model(config, obs, action))
    target_model = share_model(copy.deepcopy(model))
    optimizer = optimizer_for(a, model.parameters())
    lock = torch.multiprocessing.get_context(config.run.start_method).Lock()
    target = TargetNetwork(target_model, model, a.target_update, lock)
    return SharedState(model=model, optimizer=optimizer, target=target, round=make_round(config, model))


def q_networks(shared: SharedState) -> tuple[QNetwork, QNetwork, Target]:
    """theta and theta^- of a shared state made by ``make_shared``, as ``QNetwork``s, and
    the target network that refreshes theta^-.

    Raises:
        ValueError: if the shared state has no target network.
    """
    if shared.target is None:
        raise ValueError("the value-based methods need the target network of make_shared")
    return cast(QNetwork, shared.model), cast(QNetwork, shared.target.model), shared.target


def presets(cartpole_lr: float) -> tuple[Preset, ...]:
    """The value-based methods' presets; on CartPole-v1 with learning rate ``cartpole_lr``."""
    return (
        Preset(
            "CartPole-v1",
            {
                "optimizer": "adam",
                "lr": cartpole_lr,
                "lr_anneal": True,
                "target_update": 100,
                "hidden_sizes": (64, 64),
                "epsilon_steps": 20_000,
                "final_epsilons": (0.1, 0.01, 0.05),
            },
            "I_target 100 steps, epsilon over 20k steps, Adam annealed to 0: every seed tried solves it with "
            "2 workers in 600k env steps; the paper's Atari settings barely start (benchmarks/results/presets.md)",
        ),
        Preset(ATARI, RMSPROP_PIXELS, RMSPROP_PIXELS_SOURCE),
        Preset(
            MINATAR,
            {"epsilon_steps": 100_000, "target_update": 1_000},
            "epsilon over 100k steps and I_target 1k (MinAtar's own DQN's schedule): n-step Q on Breakout-v1 "
            "reaches 4 at 90k env steps; with the paper's Atari schedule it stays below 1 at 200k "
            "(benchmarks/results/presets.md)",
        ),
    )
