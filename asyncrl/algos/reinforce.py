"""REINFORCE with a learned value baseline (Williams 1992, Section 7; Sutton & Barto 2018,
Section 13.4), on the batched learner.

Each actor plays one whole episode in each of its ``E`` environments per rollout, from
the episode's first step to its last (cut, as truncated, at ``--unroll-length`` steps),
with the policy published when the rollout began; an environment whose episode has ended
waits, unstepped, for the others. The learner's update on ``B`` episodes:

- returns to the episode's end, ``G_t = sum_{k>=t} gamma^(k-t) r_k`` (``returns.episode_returns``);
- baseline ``b(s_t) = V(s_t)`` from the learner's critic before the update;
- loss, averaged over every step of every episode: ``-log pi(a_t|s_t) (G_t - V(s_t)) +
  value_coef (G_t - V(s_t))^2 - entropy_coef H(pi(.|s_t))`` (``losses.actor_critic_loss``
  with the Monte Carlo return as its target).

With ``--sync`` (the default) every actor waits for the new policy after its episodes, so
each update is on-policy, as REINFORCE assumes; ``--async`` lets actors start new episodes
with the previous policy meanwhile (no correction).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

import numpy as np
import torch

from asyncrl.algos.batched import Actor, build_model, greedy_action, learner_factory, make_shared
from asyncrl.config.fields import BatchedFields, configclass
from asyncrl.envs import game_over, game_score
from asyncrl.registry import BATCHED, AlgoSpec, register
from asyncrl.returns import episode_returns
from asyncrl.shared import linear_lr


@configclass
class ReinforceConfig(BatchedFields):
    """REINFORCE with a learned value baseline (Williams 1992), on the batched learner.

    Each actor plays one whole episode in each of its environments per rollout (an
    episode longer than ``--unroll-length`` steps is cut there), and the learner's update
    on ``B`` episodes weighs ``grad log pi(a_t|s_t)`` by ``G_t - V(s_t)``, with ``G_t``
    the discounted return to the episode's end (no bootstrapping), and regresses ``V(s_t)``
    on ``G_t``. The paper has no defaults; ours, chosen on CartPole-v1 with 2 actors: Adam lr
    2e-3, gradient-norm clip 5, 2 environments per actor (4 episodes a batch), no entropy
    bonus, one MLP torso per head. There, seeds 0-4 reached 475 within 186k-269k env steps;
    with lr 1e-3, 4 environments per actor and the batched learner's clip of 0.5, none did
    within 500k (416-437), and lr 2e-3 with either of the other two changes alone solved
    every seed only in 270k-393k.
    """

    lr: float = field(default=2e-3, metadata={"help": "learning rate of the learner's optimizer"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer: 'rmsprop' or 'adam'"})
    max_grad_norm: float = field(default=5.0, metadata={"help": "clip each update's gradient to this global L2 norm"})
    envs_per_actor: int = field(
        default=2,
        metadata={
            "help": "environments each actor process steps, one episode each per rollout; the "
            "learner's batch holds --workers x --envs-per-actor episodes"
        },
    )
    entropy_coef: float = 0.0
    unroll_length: int = field(
        default=500,
        metadata={
            "help": "T: the longest episode, in env steps; a longer one is cut (truncated) "
            "there and its return counted to the cut"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.correction != "none" or self.gae_lambda != 1.0:
            raise ValueError("--algo reinforce uses full-episode returns: --correction must be none and --gae-lambda 1")
        if self.lstm or self.normalize_obs or self.normalize_reward:
            raise ValueError("--algo reinforce takes neither --lstm nor --normalize-obs / --normalize-reward")


LOSS_NAMES = ("policy_loss", "value_loss", "entropy", "policy_lag")
"""Per-batch means reported by the learner; columns of ``metrics.csv``."""


class EpisodeActor(Actor):
    """A REINFORCE actor: one whole episode per environment per rollout (see the module
    docstring); otherwise the batched learner's ``Actor``."""

    def update(self) -> int:
        """Fill one slot with one episode of every environment; returns env steps taken (0
        if a stop came while waiting for a slot)."""
        slots = self.shared.slots
        assert slots is not None  # (make_shared made them)
        index = self._acquire()
        if index is None:
            return 0
        r = self.rollout
        for name in ("rewards", "terminated", "truncated", "log_probs", "values", "final_values"):
            r[name].fill(0)
        E, T = len(self.envs), slots.unroll_length
        active = np.ones(E, bool)
        dist, taken = self.dist, 0
        for t in range(T):
            r["obs"][t] = self.obs
            params, r["values"][t] = self.policy_value(self.obs)
            actions, log_probs = dist.sample_batch(params, self.rng)
            r["actions"][t] = actions
            r["log_probs"][t] = log_probs
            stepping = np.flatnonzero(active)
            for e in stepping:
                obs, reward, terminated, truncated, info = self.envs[e].step(dist.env_action(actions[e]))
                cut = t == T - 1 and not (terminated or truncated)  # the longest episode a rollout holds
                r["rewards"][t, e] = reward
                r["terminated"][t, e] = terminated
                r["truncated"][t, e] = truncated or cut
                self.stats.step(game_score(reward, info), game_over(terminated, truncated, info) or cut, int(e))
                if terminated or truncated or cut:
                    obs, _ = self.envs[e].reset()  # the next rollout starts the next episode
                    active[e] = False
                self.obs[e] = obs
            self.counters.add(self.worker_id, len(stepping), updates=0)  # T <- T + environments stepped
            taken += len(stepping)
            if not active.any():
                break
        slots.commit(index, r, self.version)
        return taken


def episode_lengths(batch: dict[str, torch.Tensor]) -> np.ndarray:
    """``[B]`` int64: each rollout's episode length, its first terminated or truncated step + 1."""
    done = (batch["terminated"] | batch["truncated"]).cpu().numpy()  # [T, B]
    return done.argmax(0) + 1


def batch_steps(batch: dict[str, torch.Tensor]) -> int:
    """Env steps in a batch of episodes (its padding left out)."""
    return int(episode_lengths(batch).sum())


def learn(
    cfg: Any, updater: Any, batch: dict[str, torch.Tensor], progress: float, rng: np.random.Generator
) -> dict[str, float]:
    """One REINFORCE update on ``B`` episodes (``RolloutSlots.batch`` layout, ``[T, B]``,
    each column one episode from ``t = 0``) through ``updater`` (``asyncrl.updaters``).

    Returns:
        ``policy_loss``, ``value_loss``, ``entropy`` (per-step means).
    """
    obs, actions = batch["obs"], batch["actions"]
    T, B = actions.shape[:2]
    lengths = episode_lengths(batch)  # [B]
    returns = episode_returns(batch["rewards"].cpu().numpy(), lengths, cfg.gamma)  # [T, B]
    valid = torch.from_numpy(np.arange(T)[:, None] < lengths[None, :]).flatten().to(obs.device)  # [T*B]
    steps_obs = obs[:T].flatten(0, 1)[valid]  # [N, *obs_shape]: the episodes' steps
    targets = torch.from_numpy(returns).to(obs.device).flatten()[valid]  # [N]
    with torch.no_grad():
        values = updater.forward(steps_obs)[1]  # [N]: the baseline
    lr = linear_lr(cfg.lr, progress, 1.0) if cfg.lr_anneal else None
    return updater.step(
        steps_obs,
        "actor_critic",
        lr,
        actions=actions.flatten(0, 1)[valid],
        returns=targets,
        advantages=targets - values,
        value_coef=cfg.value_coef,
        entropy_coef=cfg.entropy_coef,
    )


Learner = learner_factory(learn, batch_steps)


SPEC = register(
    AlgoSpec(
        name="reinforce",
        family=BATCHED,
        config=ReinforceConfig,
        summary="REINFORCE with a learned baseline (Williams 1992) on the batched learner",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=EpisodeActor,
        learner=Learner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"discrete", "box"}),
        backends=frozenset({"shm", "ray"}),
    )
)
