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
from dataclasses import field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asyncrl.algos.offpolicy import actor_factory, learner_factory, optimizer_step, shared_factory
from asyncrl.config import Config
from asyncrl.config.fields import OffPolicyFields, configclass, in_unit_interval
from asyncrl.config.presets import ATARI
from asyncrl.distributions import ActionSpec
from asyncrl.exploration import ape_x_epsilon, epsilon_at, epsilon_greedy
from asyncrl.networks import ObsSpec, QNetwork, build_q_network, fast_forward
from asyncrl.registry import REPLAY, AlgoSpec, Preset, register


@configclass
class DQNConfig(OffPolicyFields):
    """Deep Q-network (Mnih et al. 2015) with asynchronous epsilon-greedy actors (Ape-X).

    Defaults are the paper's where it has them: batch 32, replay 1M, an update every 4
    env steps (replay ratio 0.25), learning from 50k steps, target network refreshed every
    10k updates, Huber loss, epsilon annealed from 1 over 1M env steps; the optimizer is
    Adam (lr 1e-4, eps 1.5e-4: Dopamine's and rl-baselines3-zoo's Atari DQN) rather than the
    paper's RMSProp, gradients clipped at norm 10 (SB3). Actor ``i`` of ``N`` ends at
    ``epsilon ** (1 + alpha * i / (N - 1))`` (Horgan et al. 2018).
    """

    lr: float = field(default=1e-4, metadata={"help": "learning rate of the learner's optimizer"})
    optim_eps: float = field(default=1.5e-4, metadata={"help": "epsilon of Adam / RMSProp"})
    max_grad_norm: float = field(default=10.0, metadata={"help": "clip each update's gradient to this global L2 norm"})
    hidden_sizes: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "widths of the MLP torso's hidden layers (ReLU; images: --network)"}
    )
    batch_size: int = field(default=32, metadata={"help": "transitions per learner update"})
    learning_starts: int = field(default=50_000, metadata={"help": "env steps (all actors) before the first update"})
    replay_ratio: float = field(default=0.25, metadata={"help": "learner updates per env step (all actors)"})
    target_update: int = field(
        default=10_000, metadata={"help": "refresh the target network every this many learner updates"}
    )
    double_q: bool = field(
        default=False, metadata={"help": "double DQN targets: argmax by the online network (van Hasselt et al. 2016)"}
    )
    epsilon_steps: int = field(
        default=1_000_000, metadata={"help": "env steps (all actors) over which epsilon anneals linearly from 1"}
    )
    final_epsilon: float = field(default=0.1, metadata={"help": "epsilon: actor 0's final exploration rate"})
    epsilon_alpha: float = field(
        default=7.0, metadata={"help": "alpha: actor i of N ends at epsilon ** (1 + alpha * i / (N - 1)) (Ape-X)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_update < 1 or self.epsilon_steps < 0:
            raise ValueError(
                f"--target-update must be >= 1 and --epsilon-steps >= 0, got {self.target_update}, {self.epsilon_steps}"
            )
        in_unit_interval(self, "final_epsilon")
        if self.epsilon_alpha < 0:
            raise ValueError(f"--epsilon-alpha must be >= 0, got {self.epsilon_alpha}")


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


def learn(
    cfg: Any,
    model: DQNModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    update: int,
    rng: np.random.Generator,
) -> dict[str, float]:
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
make_actor = actor_factory(make_acting)
make_learner = learner_factory(learn)

SPEC = register(
    AlgoSpec(
        name="dqn",
        family=REPLAY,
        config=DQNConfig,
        summary="deep Q-network (Mnih et al. 2015) with asynchronous Ape-X actors on a shared replay",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=make_actor,
        learner=make_learner,
        loss_names=LOSS_NAMES,
        presets=(
            Preset(
                "CartPole-v1",
                {
                    "lr": 5e-4,
                    "batch_size": 128,
                    "replay_size": 100_000,
                    "learning_starts": 1_000,
                    "replay_ratio": 0.5,
                    "target_update": 250,
                    "n_step": 3,
                    "epsilon_steps": 8_000,
                    "final_epsilon": 0.04,
                    "hidden_sizes": (256, 256),
                    "optim_eps": 1e-8,
                },
                "rl-baselines3-zoo's dqn.yml with lr 5e-4, batch 128, target every 250 updates and 3-step returns: "
                "seeds 0-3 reach 475 in 61k-79k env steps (benchmarks/results/presets.md)",
            ),
            Preset(ATARI, {"network": "nature2015"}, "the DQN paper's own network (Mnih et al. 2015)"),
        ),
    )
)
