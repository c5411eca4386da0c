"""Soft actor-critic with automatic entropy tuning (Haarnoja et al. 2018, "Soft
actor-critic algorithms and applications", Algorithm 1), with asynchronous actors on a
shared-memory replay (``asyncrl.algos.offpolicy``).

One update on a replay minibatch ``(s, a, r, s', d, n)`` (``r`` the n-step discounted
reward, ``d`` whether the episode terminated within the n steps):

- target ``y = r + gamma^n (1 - d) (min_k Q'_k(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(.|s')``;
- critics: ``0.5 sum_k mean (Q_k(s, a) - y)^2``;
- temperature: ``-mean(log alpha (log pi(a_pi|s) + H_target))`` with ``a_pi ~ pi(.|s)``
  (``H_target = -dim(A)`` by default);
- actor, after the critics' step: ``mean(alpha log pi(a_pi|s) - min_k Q_k(s, a_pi))``,
  reparameterised through ``a_pi``;
- targets: ``Q' <- (1 - tau) Q' + tau Q``.

``alpha`` is ``exp(log alpha)`` as it was before this update in the target and the actor
loss (as SB3). The policy is a tanh-squashed Gaussian in ``[-1, 1]^D``, mapped affinely to
the action bounds (``distributions.SquashedGaussian``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import field
from typing import Any

import numpy as np
import torch
from torch import nn

from asyncrl.algos.offpolicy import actor_factory, flat_obs_dim, learner_factory, optimizer_step, polyak, shared_factory
from asyncrl.config import Config
from asyncrl.config.fields import OffPolicyFields, configclass, in_unit_interval, positive
from asyncrl.distributions import ActionSpec, SquashedGaussian
from asyncrl.networks import Critics, NumpyMLP, ObsSpec, SquashedGaussianActor
from asyncrl.registry import REPLAY, AlgoSpec, Preset, register


@configclass
class SACConfig(OffPolicyFields):
    """Soft actor-critic with automatic entropy tuning (Haarnoja et al. 2018, "Soft
    actor-critic algorithms and applications", Algorithm 1): a tanh-squashed Gaussian
    policy, two critics, the entropy coefficient alpha tuned towards ``--target-entropy``.

    Defaults are the paper's (Adam lr 3e-4, batch 256, 256-256 ReLU networks, tau 0.005,
    one update per env step, target entropy ``-dim(A)``); learning starts after 100 steps
    (SB3).
    """

    lr: float = field(default=3e-4, metadata={"help": "learning rate of the actor, critics and alpha"})
    tau: float = field(default=0.005, metadata={"help": "Polyak factor of the target critics"})
    initial_alpha: float = field(default=1.0, metadata={"help": "the entropy coefficient alpha at the start"})
    autotune_alpha: bool = field(default=True, metadata={"help": "tune alpha towards --target-entropy"})
    target_entropy: float | None = field(
        default=None, metadata={"help": "the entropy alpha is tuned towards (default: -dim(A))"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        in_unit_interval(self, "tau")
        positive(self, "initial_alpha")


LOSS_NAMES = ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")
"""Per-update means reported by the learner (``entropy``: ``-log pi`` of the policy's own
actions); columns of ``metrics.csv``."""


class SACModel(nn.Module):
    """The policy (``acting``), two critics, their targets and ``log alpha``.

    Args:
        obs_dim: observation width.
        action: a bounded continuous ``ActionSpec``.
        hidden_sizes: ReLU MLP widths of the policy and each critic.
        initial_alpha: alpha at the start.
    """

    def __init__(self, obs_dim: int, action: ActionSpec, hidden_sizes, initial_alpha: float) -> None:
        super().__init__()
        D = action.shape[0]
        self.acting = SquashedGaussianActor(obs_dim, D, hidden_sizes)
        self.critics = Critics(obs_dim, D, hidden_sizes, 2)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor([math.log(initial_alpha)]))
        self.action_spec = action

    def optimized_parameters(self) -> list[nn.Parameter]:
        return [*self.acting.parameters(), *self.critics.parameters(), self.log_alpha]


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> SACModel:
    """The SAC networks for flat observations ``obs`` and a bounded ``Box`` ``action``.

    Raises:
        NetworkError: if the observations are images.
    """
    return SACModel(
        flat_obs_dim(config, obs), ActionSpec.of(action), config.algo.hidden_sizes, config.algo.initial_alpha
    )


def make_acting(local: SquashedGaussianActor, config: Config, worker_id: int, counters: Any):
    """An actor's policy: ``act(obs [obs_dim], rng, random) -> [D] float32`` in ``[-1, 1]``,
    a sample of the squashed Gaussian (NumPy), or uniform while ``random``."""
    forward = NumpyMLP(local.torso, local.head)
    D = local.action_dim

    def act(obs: np.ndarray, rng: np.random.Generator, random: bool) -> np.ndarray:
        if random:
            return rng.uniform(-1.0, 1.0, D).astype(np.float32)
        out = forward(obs)  # [2D]
        log_std = np.clip(out[D:], local.LOG_STD_MIN, local.LOG_STD_MAX)
        return SquashedGaussian.sample(out[:D], log_std, rng)

    return act


def greedy_action(model: SACModel, obs: torch.Tensor, state=None) -> tuple[np.ndarray, None]:
    """``(tanh(mean) mapped to the bounds, None)`` for one observation ``obs: [obs_dim]``."""
    mean, _ = model.acting(obs.unsqueeze(0).float())
    return model.action_spec.rescale(SquashedGaussian.mode(mean)[0].numpy()), None


def target_entropy(cfg: Any, action_dim: int) -> float:
    """``--target-entropy``, or ``-dim(A)`` (Haarnoja et al. 2018, Section 5)."""
    return -float(action_dim) if cfg.target_entropy is None else float(cfg.target_entropy)


def learn(
    cfg: Any,
    model: SACModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    update: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """One SAC update on a replay sample ``batch`` (``[N, ...]``; see the module docstring)."""
    obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
    discounts = cfg.gamma ** batch["steps"].float() * (~batch["terminated"]).float()  # [N]: gamma^n (1 - d)
    alpha = model.log_alpha.detach().exp()  # [1]
    with torch.no_grad():
        next_actions, next_log_probs = SquashedGaussian.rsample(*model.acting(next_obs))
        next_q = model.target_critics(next_obs, next_actions).min(0).values - alpha * next_log_probs  # [N]
        targets = batch["rewards"] + discounts * next_q  # [N]
    actions_pi, log_probs = SquashedGaussian.rsample(*model.acting(obs))  # [N, D], [N]
    q = model.critics(obs, actions)  # [2, N]
    critic_loss = 0.5 * (q - targets).pow(2).mean(1).sum()
    optimizer_step(optimizer, list(model.critics.parameters()), critic_loss, cfg.max_grad_norm)
    if cfg.autotune_alpha:  # its own step: the critics' gradient norm must not scale alpha's (as SB3)
        H = target_entropy(cfg, actions.shape[1])
        alpha_loss = -(model.log_alpha * (log_probs.detach() + H)).mean()
        optimizer_step(optimizer, [model.log_alpha], alpha_loss, cfg.max_grad_norm)
    q_pi = model.critics(obs, actions_pi).min(0).values  # [N], with the critics just updated
    actor_loss = (alpha * log_probs - q_pi).mean()
    optimizer_step(optimizer, list(model.acting.parameters()), actor_loss, cfg.max_grad_norm)
    polyak(list(model.target_critics.parameters()), list(model.critics.parameters()), cfg.tau)
    return {
        "critic_loss": critic_loss.item(),
        "actor_loss": actor_loss.item(),
        "alpha": alpha.item(),
        "entropy": float(-log_probs.detach().mean()),
        "q_mean": float(q.detach().mean()),
    }


make_shared = shared_factory(build_model)
make_actor = actor_factory(make_acting)
make_learner = learner_factory(learn)

SPEC = register(
    AlgoSpec(
        name="sac",
        family=REPLAY,
        config=SACConfig,
        summary="soft actor-critic, entropy tuned (Haarnoja et al. 2018), asynchronous actors, shared replay",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=make_actor,
        learner=make_learner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"box"}),
        bounded_actions=True,
        observations=frozenset({"vector"}),
        presets=(Preset("Pendulum-v1", {"lr": 1e-3}, "rl-baselines3-zoo's sac.yml"),),
    )
)
