"""Twin delayed deep deterministic policy gradient (TD3, Fujimoto et al. 2018, Algorithm 1),
and DDPG (Lillicrap et al. 2016) as its special case (one critic, no target smoothing, no
delay), with asynchronous actors on a shared-memory replay (``asyncrl.algos.offpolicy``).

One update on a replay minibatch ``(s, a, r, s', d, n)``:

- target action ``a' = clip(mu'(s') + clip(eps, -c, c), -1, 1)``, ``eps ~ N(0, sigma~^2)``
  (target policy smoothing; none for DDPG);
- target ``y = r + gamma^n (1 - d) min_k Q'_k(s', a')``;
- critics: ``sum_k mean (Q_k(s, a) - y)^2``;
- every ``--policy-delay`` updates: actor ``-mean Q_1(s, mu(s))``, then the targets
  ``theta' <- (1 - tau) theta' + tau theta`` of the actor and the critics.

Actors act with ``mu(s) + N(0, --action-noise^2)`` clipped to ``[-1, 1]`` (mapped affinely
to the action bounds), uniformly at random before ``--learning-starts``.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any

import numpy as np
import torch
from torch import nn

from asyncrl.algos.offpolicy import actor_factory, flat_obs_dim, learner_factory, optimizer_step, polyak, shared_factory
from asyncrl.config import Config
from asyncrl.config.fields import OffPolicyFields, configclass, flag, in_unit_interval
from asyncrl.distributions import ActionSpec
from asyncrl.networks import Critics, DeterministicActor, NumpyMLP, ObsSpec
from asyncrl.registry import REPLAY, AlgoSpec, Preset, register


@configclass
class TD3Config(OffPolicyFields):
    """Twin delayed DDPG (Fujimoto et al. 2018): two critics and the smaller of their
    targets, target policy smoothing, the actor and the targets updated every
    ``--policy-delay`` critic updates.

    Defaults are the paper's (Adam lr 1e-3, tau 0.005, exploration noise 0.1, target noise
    0.2 clipped at 0.5, policy delay 2, one update per env step) with SB3's batch of 256
    and 256-256 ReLU networks (the paper: 100, and 400-300).
    """

    lr: float = field(default=1e-3, metadata={"help": "learning rate of the actor's and critics' optimizer"})
    tau: float = field(default=0.005, metadata={"help": "Polyak factor of the target networks"})
    policy_delay: int = field(default=2, metadata={"help": "critic updates per actor and target update"})
    action_noise: float = field(
        default=0.1, metadata={"help": "std of the actors' Gaussian exploration noise, in units of half the range"}
    )
    target_noise: float = field(default=0.2, metadata={"help": "std of the target policy smoothing noise"})
    target_noise_clip: float = field(default=0.5, metadata={"help": "clip of the target policy smoothing noise"})
    n_critics: int = field(default=2, metadata={"help": "critics; targets take the smallest (1: DDPG)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        in_unit_interval(self, "tau")
        if self.policy_delay < 1 or self.n_critics < 1:
            raise ValueError(f"--policy-delay and --n-critics must be >= 1, got {self.policy_delay}, {self.n_critics}")
        for name in ("action_noise", "target_noise", "target_noise_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")


LOSS_NAMES = ("critic_loss", "actor_loss", "q_mean")
"""Per-update means reported by the learner (``actor_loss`` averages the updates that made
one); columns of ``metrics.csv``."""


class TD3Model(nn.Module):
    """The deterministic policy (``acting``), ``n_critics`` critics and their targets.

    Args:
        obs_dim: observation width.
        action: a bounded continuous ``ActionSpec``.
        hidden_sizes: ReLU MLP widths of the policy and each critic.
        n_critics: 2 for TD3, 1 for DDPG.
    """

    def __init__(self, obs_dim: int, action: ActionSpec, hidden_sizes, n_critics: int) -> None:
        super().__init__()
        D = action.shape[0]
        self.acting = DeterministicActor(obs_dim, D, hidden_sizes)
        self.critics = Critics(obs_dim, D, hidden_sizes, n_critics)
        self.target_acting = copy.deepcopy(self.acting).requires_grad_(False)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.action_spec = action

    def optimized_parameters(self) -> list[nn.Parameter]:
        return [*self.acting.parameters(), *self.critics.parameters()]


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> TD3Model:
    """The TD3/DDPG networks for flat observations ``obs`` and a bounded ``Box`` ``action``.

    Raises:
        NetworkError: if the observations are images.
    """
    return TD3Model(flat_obs_dim(config, obs), ActionSpec.of(action), config.algo.hidden_sizes, config.algo.n_critics)


def make_acting(local: DeterministicActor, config: Config, worker_id: int, counters: Any):
    """An actor's policy: ``act(obs, rng, random) -> [D] float32``: ``mu(s)`` plus Gaussian
    noise, clipped to ``[-1, 1]``; uniform while ``random``."""
    forward = NumpyMLP(local.torso, local.head)
    sigma = config.algo.action_noise
    D = local.head.out_features

    def act(obs: np.ndarray, rng: np.random.Generator, random: bool) -> np.ndarray:
        if random:
            return rng.uniform(-1.0, 1.0, D).astype(np.float32)
        action = np.tanh(forward(obs)) + sigma * rng.standard_normal(D)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act


def greedy_action(model: TD3Model, obs: torch.Tensor, state=None) -> tuple[np.ndarray, None]:
    """``(mu(s) mapped to the bounds, None)`` for one observation ``obs: [obs_dim]``."""
    return model.action_spec.rescale(model.acting(obs.unsqueeze(0).float())[0].numpy()), None


def learn(
    cfg: Any,
    model: TD3Model,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    update: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """One TD3 (or DDPG) update on a replay sample ``batch`` (see the module docstring)."""
    obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
    discounts = cfg.gamma ** batch["steps"].float() * (~batch["terminated"]).float()  # [N]
    with torch.no_grad():
        next_actions = model.target_acting(next_obs)  # [N, D]
        if cfg.target_noise > 0:
            noise = (torch.randn_like(next_actions) * cfg.target_noise).clamp(
                -cfg.target_noise_clip, cfg.target_noise_clip
            )
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
        targets = batch["rewards"] + discounts * model.target_critics(next_obs, next_actions).min(0).values  # [N]
    q = model.critics(obs, actions)  # [K, N]
    critic_loss = (q - targets).pow(2).mean(1).sum()
    optimizer_step(optimizer, list(model.critics.parameters()), critic_loss, cfg.max_grad_norm)
    metrics = {"critic_loss": critic_loss.item(), "q_mean": q.detach().mean().item()}
    if (update + 1) % cfg.policy_delay == 0:
        actor_loss = -model.critics.first(obs, model.acting(obs)).mean()
        optimizer_step(optimizer, list(model.acting.parameters()), actor_loss, cfg.max_grad_norm)
        polyak(list(model.target_critics.parameters()), list(model.critics.parameters()), cfg.tau)
        polyak(list(model.target_acting.parameters()), list(model.acting.parameters()), cfg.tau)
        metrics["actor_loss"] = actor_loss.item() * cfg.policy_delay  # (WorkerStats averages over every update)
    return metrics


make_shared = shared_factory(build_model)
make_actor = actor_factory(make_acting)
make_learner = learner_factory(learn)

PENDULUM = Preset(
    "Pendulum-v1",
    {
        "gamma": 0.98,
        "replay_size": 200_000,
        "learning_starts": 10_000,
        "action_noise": 0.1,
        "lr": 1e-3,
        "hidden_sizes": (400, 300),
    },
    "rl-baselines3-zoo's td3.yml and ddpg.yml",
)
"""TD3's and DDPG's preset on Pendulum-v1."""

SPEC = register(
    AlgoSpec(
        name="td3",
        family=REPLAY,
        config=TD3Config,
        summary="twin delayed DDPG (Fujimoto et al. 2018) with asynchronous actors on a shared replay",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=make_actor,
        learner=make_learner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"box"}),
        bounded_actions=True,
        observations=frozenset({"vector"}),
        presets=(PENDULUM,),
    )
)
