"""Deep Q-network (Mnih et al. 2015, Algorithm 1) with asynchronous epsilon-greedy actors on
a shared-memory replay, as Ape-X (Horgan et al. 2018) lays it out
(``asyncrl.algos.offpolicy``); double DQN targets with ``--double-q`` (van Hasselt et al.
2016).

One update on a replay minibatch ``(s, a, r, s', d, n)``:

- target ``y = r + gamma^n (1 - d) max_a' Q(s', a'; theta^-)`` (double DQN:
  ``Q(s', argmax_a' Q(s', a'; theta); theta^-)``);
- loss: the Huber loss of ``Q(s, a; theta) - y`` (the paper's error clipping), averaged;
  gradient norm clipped at ``--max-grad-norm``;
- ``theta^- <- theta`` every ``--target-update`` updates.

Actor ``i`` of ``N`` anneals epsilon linearly from 1 over ``--epsilon-steps`` env steps
(``T``, all actors) to ``epsilon_i = epsilon ** (1 + alpha * i / (N - 1))`` (Ape-X; one
actor: ``epsilon``), with ``--final-epsilon`` as ``epsilon`` and ``--epsilon-alpha`` as ``alpha``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asyncrl.algos.offpolicy import actor_factory, learner_factory, optimizer_step, shared_factory
from asyncrl.config import Config
from asyncrl.distributions import ActionSpec
from asyncrl.exploration import ape_x_epsilon, epsilon_at, epsilon_greedy
from asyncrl.networks import ObsSpec, QNetwork, build_q_network, fast_forward

LOSS_NAMES = ("td_loss", "q_taken")
"""Per-update means reported by the learner; columns of ``metrics.csv``."""


class DQNModel(nn.Module):
    """The online Q-network (``acting``) and its target network."""

    def __init__(self, q: QNetwork, action: ActionSpec) -> None:
        super().__init__()
        self.acting = q
        self.target = copy.deepcopy(q).requires_grad_(False)
        self.action_spec = action

    def optimized_parameters(self) -> list[nn.Parameter]:
        return list(self.acting.parameters())


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> DQNModel:
    """The Q-network (ReLU MLP, or ``--network``'s CNN for images) and its target.

    Raises:
        NetworkError: if ``--network`` cannot read ``obs``.
    """
    a = config.algo
    return DQNModel(build_q_network(obs, action, a.hidden_sizes, a.network, activation="relu"), ActionSpec.of(action))


def make_acting(local: QNetwork, config: Config, worker_id: int, counters: Any):
    """An actor's policy: ``act(obs, rng, random) -> int``, epsilon-greedy in ``Q(s, .)``
    (uniform while ``random``)."""
    forward = fast_forward(local.torso, local.head)
    final = ape_x_epsilon(config.algo.final_epsilon, config.algo.epsilon_alpha, worker_id, config.run.workers)
    anneal = config.algo.epsilon_steps
    n = local.head.out_features

    def act(obs: np.ndarray, rng: np.random.Generator, random: bool) -> int:
        if random:
            return int(rng.integers(n))
        return epsilon_greedy(forward(obs), epsilon_at(counters.global_step, final, anneal), rng)
    return act


def greedy_action(model: DQNModel, obs: torch.Tensor, state=None) -> tuple[int, None]:
    """``(argmax_a Q(s, a), None)`` for one observation ``obs: [*obs_shape]``."""
    return int(model.acting(obs.unsqueeze(0)).argmax()), None


def learn(cfg: Any, model: DQNModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], update: int,
          rng: np.random.Generator) -> dict[str, float]:
    """One DQN update on a replay sample ``batch`` (see the module docstring)."""
    obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
    discounts = cfg.gamma ** batch["steps"].float() * (~batch["terminated"]).float()  # [N]
    with torch.no_grad():
        next_q = model.target(next_obs)  # [N, A]
        if cfg.double_q:
            best = model.acting(next_obs).argmax(1, keepdim=True)  # [N, 1]
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(1).values
        targets = batch["rewards"] + discounts * next_value  # [N]
    q_taken = model.acting(obs).gather(1, actions.unsqueeze(1)).squeeze(1)  # [N]
    loss = F.smooth_l1_loss(q_taken, targets)
    optimizer_step(optimizer, model.optimized_parameters(), loss, cfg.max_grad_norm)
    if (update + 1) % cfg.target_update == 0:
        with torch.no_grad():
            torch._foreach_copy_(list(model.target.parameters()), list(model.acting.parameters()))
    return {"td_loss": loss.item(), "q_taken": q_taken.detach().mean().item()}


make_shared = shared_factory(build_model)
ActorLearner = actor_factory(make_acting)
Learner = learner_factory(learn)

__all__ = ["LOSS_NAMES", "ActorLearner", "Learner", "DQNModel", "build_model", "greedy_action", "learn", "make_acting",
           "make_shared"]
