"""Advantage actor-critic on batched rollouts (A2C): A3C's loss, one learner, many actors.

The learner's update on a ``[T, B]`` batch: one forward pass over the ``T + 1``
observations of every rollout; advantages from GAE(lambda) (lambda = 1: A3C's n-step
returns, Mnih et al. 2016, Algorithm S3) or, with ``--correction vtrace``, from V-trace
(Espeholt et al. 2018); the actor-critic loss averaged over the ``T * B`` steps; one
clipped optimizer step (``asyncrl.updaters``). Actors and slots: ``asyncrl.algos.batched``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from asyncrl.algos.batched import (
    Actor,
    advantage_estimates,
    build_model,
    greedy_action,
    learner_factory,
    make_shared,
    recurrent_inputs,
)
from asyncrl.config.fields import BatchedFields, configclass
from asyncrl.config.presets import ATARI, CONTINUOUS_CONTROL, RMSPROP_TF
from asyncrl.losses import normalized
from asyncrl.registry import BATCHED, AlgoSpec, Preset, register
from asyncrl.shared import linear_lr


@configclass
class A2CConfig(BatchedFields):
    """Advantage actor-critic on batched rollouts (A2C; Mnih et al. 2016's A3C made
    synchronous, as in OpenAI baselines).

    Defaults are OpenAI baselines' A2C: RMSProp lr 7e-4, alpha 0.99, eps 1e-5, grad-norm
    0.5, value coef 0.5, entropy 0.01, 5-step rollouts, n-step returns (GAE lambda 1).
    """


LOSS_NAMES = ("policy_loss", "value_loss", "entropy", "policy_lag")
"""Per-batch means reported by the learner; columns of ``metrics.csv``."""


def learn(
    cfg: Any, updater: Any, batch: dict[str, torch.Tensor], progress: float, rng: np.random.Generator
) -> dict[str, float]:
    """One A2C update on ``batch`` (``RolloutSlots.batch`` layout, ``[T, B]``) through
    ``updater`` (``asyncrl.updaters``).

    Returns:
        ``policy_loss``, ``value_loss``, ``entropy`` (per-step means).
    """
    obs, actions = batch["obs"], batch["actions"]
    T, B = actions.shape[:2]
    estimates = advantage_estimates(cfg, updater, batch, behaviour_critic=False)
    device = actions.device
    N = T * B
    lr = linear_lr(cfg.lr, progress, 1.0) if cfg.lr_anneal else None
    advantages = torch.from_numpy(estimates.advantages.reshape(N)).to(device)
    if cfg.normalize_advantages:
        advantages = normalized(advantages)
    sequences: dict[str, Any] = {}
    if updater.recurrent:  # the whole [T, B] batch, unrolled through time
        state, resets = recurrent_inputs(batch)
        sequences = {"state": state, "resets": resets[:T]}
    return updater.step(
        obs[:T] if updater.recurrent else obs[:T].flatten(0, 1),
        "actor_critic",
        lr,  # [T, B, ...] or [N, ...]
        **sequences,
        actions=actions.flatten(0, 1),  # [N, *action_shape]
        returns=torch.from_numpy(estimates.returns.reshape(N)).to(device),
        advantages=advantages,
        value_coef=cfg.value_coef,
        entropy_coef=cfg.entropy_coef,
    )


Learner = learner_factory(learn)


SPEC = register(
    AlgoSpec(
        name="a2c",
        family=BATCHED,
        config=A2CConfig,
        summary="advantage actor-critic on batched rollouts, sync or async (A2C; Mnih et al. 2016's loss)",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=Actor,
        learner=Learner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"discrete", "box", "multi"}),
        backends=frozenset({"shm", "ray"}),
        methods={"a2c-sync": ("--sync",), "a2c-async": ("--async",)},
        study="quick",
        presets=(
            Preset(
                "CartPole-v1",
                {"entropy_coef": 0.0, "envs_per_actor": 4},
                "rl-baselines3-zoo's a2c.yml (8 environments: 4 per actor with 2 actors)",
            ),
            Preset(
                ATARI,
                {
                    "envs_per_actor": 8,
                    "value_coef": 0.25,
                    "lstm_size": 256,
                    **RMSPROP_TF,
                },
                "rl-baselines3-zoo's a2c.yml (16 environments, value coefficient 0.25, RMSProp as its RMSpropTFLike: "
                "eps 1e-5 inside the root, squared-gradient average starting at 1); eps 0.1 froze the policy of "
                "A2C's mean loss "
                "(benchmarks/results/pong_tuning.md)",
            ),
            *(
                Preset(
                    pattern,
                    {"normalize_obs": True, "normalize_reward": True, "entropy_coef": 0.0},
                    "rl-baselines3-zoo's a2c.yml (VecNormalize, no entropy bonus)",
                )
                for pattern in (*CONTINUOUS_CONTROL, "Pendulum-v1")
            ),
        ),
    )
)
