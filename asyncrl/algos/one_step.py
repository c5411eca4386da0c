"""Asynchronous one-step Q-learning (Mnih et al. 2016, Algorithm 1) and asynchronous
one-step Sarsa (Section 4).

Each actor-learner repeats, for ``I_AsyncUpdate`` steps or until the episode ends
(``--envs-per-actor k``: ``I_AsyncUpdate`` steps of ``k`` environments,
``asyncrl.algos.segments``): take
``a`` epsilon-greedy in ``Q(s, .; theta)``, observe ``r, s'``; ``T <- T + 1``; refresh
``theta^- <- theta`` when ``T`` crosses a multiple of ``I_target``. Then it applies the
accumulated gradient of ``sum (y - Q(s, a; theta))^2`` to the shared ``theta`` with the
shared optimizer, without locks, where

- Q-learning: ``y = r`` if ``s'`` is terminal, else ``r + gamma max_a' Q(s', a'; theta^-)``;
- Sarsa: ``y = r`` if ``s'`` is terminal, else ``r + gamma Q(s', a'; theta^-)`` with ``a'`` the
  action taken in ``s'`` (epsilon-greedy in ``Q(s', .; theta)``, chosen at once and then
  executed). If a time limit truncates the episode at ``s'``, the target still bootstraps
  from ``s'`` (for Sarsa with an ``a'`` drawn there but never executed).

As in Algorithm 1 the actor-learner reads the shared ``theta`` directly: it acts through
NumPy views of the shared parameters and differentiates the shared model. The window's
gradients are taken in one batched pass at the update, with ``theta`` as it is then, and
its targets with ``theta^-`` as it is then; Algorithm 1 takes each step's gradient as it
goes, which differs only by what other actor-learners write within the window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import ClassVar

import numpy as np

from asyncrl.algos.base import SharedState, WorkerStats
from asyncrl.algos.segments import ActorEnvs
from asyncrl.algos.value_based import LOSS_NAMES, build_model, greedy_action, make_shared, presets, q_networks
from asyncrl.config import Config
from asyncrl.config.fields import ValueBasedFields, configclass, envs_per_actor_option, hogwild_sync_option, positive
from asyncrl.exploration import EpsilonSchedule, epsilon_greedy_rows
from asyncrl.networks import fast_forward
from asyncrl.registry import HOGWILD, AlgoSpec, register
from asyncrl.returns import n_step_returns
from asyncrl.shared import GlobalCounters, linear_lr
from asyncrl.updaters import make_q_gradient


@configclass
class OneStepConfig(ValueBasedFields):
    """Asynchronous one-step Q-learning (Mnih et al. 2016, Algorithm 1) and one-step Sarsa
    (Section 4): gradients accumulated over ``async_update`` steps, then applied."""

    sarsa: ClassVar[bool] = False
    """The target: Sarsa's ``Q(s', a'; theta^-)`` rather than Q-learning's max (not a flag)."""

    async_update: int = field(
        default=5,
        metadata={"help": "I_AsyncUpdate: env steps whose gradients are accumulated per update (fewer at episode end)"},
    )
    envs_per_actor: int = envs_per_actor_option()
    sync: bool = hogwild_sync_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "envs_per_actor")
        if self.async_update < 1:
            raise ValueError(f"--async-update must be >= 1, got {self.async_update}")


@configclass
class OneStepSarsaConfig(OneStepConfig):
    """Asynchronous one-step Sarsa (Mnih et al. 2016, Section 4): ``OneStepConfig``'s
    fields, with Sarsa's target."""

    sarsa: ClassVar[bool] = True


class ActorLearner:
    """One one-step Q-learning or Sarsa actor-learner (``config.algo.sarsa`` says which).

    Args:
        worker_id: index of this actor-learner, 0-based; its environment ``e`` is seeded
            ``seed + worker_id * envs_per_actor + e`` (``seed + worker_id`` with one).
        config: the run's configuration (``config.algo`` is a ``OneStepConfig``).
        shared: theta, theta^- and the shared optimizer from ``make_shared``.
        counters: the global step counter ``T``.

    Raises:
        EnvError: if an environment cannot be made or its action space is not discrete.
    """

    def __init__(self, worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters):
        self.worker_id = worker_id
        self.cfg = config.algo
        self.sarsa = self.cfg.sarsa
        self.shared = shared
        self.counters = counters
        self.total_steps = config.run.total_steps
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.epsilon = EpsilonSchedule(self.cfg, self.rng, counters)
        self.params = shared.shared_params
        online, target, self.target = q_networks(shared)
        self.q = fast_forward(online.torso, online.head)  # Q(s, .; theta), reads shared theta
        self.target_q = fast_forward(target.torso, target.head)  # Q(s, .; theta^-)
        self.gradient = make_q_gradient(online)  # d loss / d theta, into this learner's theta.grad
        self.pending_actions: np.ndarray | None = None  # Sarsa: a' at the next segment's first observations
        k = self.cfg.envs_per_actor
        self.stats = WorkerStats(counters, num_envs=k)
        self.envs = ActorEnvs(
            config.run, worker_id, k, self.cfg.async_update, (), np.dtype(np.int64), counters, self.stats
        )

    @property
    def env(self):
        return self.envs.env

    def _act(self, obs: np.ndarray) -> np.ndarray:
        """The behaviour policy for ``obs: [N, *obs_shape]`` -> ``[N]``: Sarsa's pending ``a'``
        where the previous segment chose it, else ``_choose``."""
        if self.pending_actions is not None:
            actions, self.pending_actions = self.pending_actions, None
            return actions
        return self._choose(obs)

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        """Epsilon-greedy in ``Q(s, .; theta)``, one draw per row."""
        return epsilon_greedy_rows(self.q(obs), self.epsilon(), self.rng)  # Q: [N, A]

    def update(self) -> int:
        cfg, counters = self.cfg, self.counters
        seg = self.envs.collect(self._act, on_step=self.target.maybe_refresh)  # theta^- <- theta at I_target
        n, k = seg.rewards.shape
        next_obs = seg.obs[1:].copy()  # [n, k, *obs_shape]: s', or a cut episode's last observation
        cut = np.nonzero(seg.truncated)
        next_obs[cut] = seg.final_obs[cut]
        next_q = self.target_q(next_obs.reshape(n * k, *next_obs.shape[2:]))  # [n k, A], theta^-
        if self.sarsa:  # a' = the action taken at s' (chosen now at the segment's end and where an episode was cut)
            next_actions = np.empty((n, k), np.int64)
            next_actions[:-1] = seg.actions[1:]
            self.pending_actions = self._choose(seg.obs[n])
            next_actions[-1] = self.pending_actions
            if cut[0].size:
                next_actions[cut] = self._choose(seg.final_obs[cut])
            next_values = next_q[np.arange(n * k), next_actions.reshape(n * k)]  # [n k]
        else:
            next_values = next_q.max(axis=1)  # [n k]
        # n k independent one-step targets: a batch of B = n k sequences of length T = 1.
        targets = n_step_returns(
            seg.rewards.reshape(1, n * k),
            seg.terminated.reshape(1, n * k),
            seg.truncated.reshape(1, n * k),
            next_values.astype(np.float32)[None],
            cfg.gamma,
        )
        # The gradient of q_loss at theta itself, into a per-process .grad (other processes
        # have their own); NumPy for an MLP (updaters.NumpyQGradient, tested against autograd).
        metrics = self.gradient(seg.obs[:n].reshape(n * k, *seg.obs.shape[2:]), seg.actions.reshape(n * k), targets[0])
        lr = linear_lr(cfg.lr, counters.global_step, self.total_steps) if cfg.lr_anneal else None
        self.shared.push(self.params, cfg.max_grad_norm, lr)
        counters.add(self.worker_id, 0, updates=1)
        self.stats.update(metrics)
        return n * k

    def drain_stats(self):
        return self.stats.drain()

    def close(self) -> None:
        self.envs.close()


SPEC = register(
    AlgoSpec(
        name="one-step-q",
        family=HOGWILD,
        config=OneStepConfig,
        summary="asynchronous one-step Q-learning (Mnih et al. 2016, Algorithm 1)",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=ActorLearner,
        loss_names=LOSS_NAMES,
        backends=frozenset({"shm", "ray"}),
        study="full",
        methods={"one-step-q": (), "one-step-q-sync": ("--sync",)},
        presets=presets(cartpole_lr=1e-3),
    )
)

SARSA_SPEC = register(
    dataclasses.replace(
        SPEC,
        name="one-step-sarsa",
        config=OneStepSarsaConfig,
        summary="asynchronous one-step Sarsa (Mnih et al. 2016, Section 4)",
        presets=presets(cartpole_lr=5e-4),  # with 1e-3 it solved CartPole only as the rate neared 0
        methods={"one-step-sarsa": (), "one-step-sarsa-sync": ("--sync",)},
    )
)
