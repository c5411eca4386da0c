"""Asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2).

Each actor-learner repeats: ``theta' <- theta``; act epsilon-greedy in ``Q(s, .; theta')``
for up to ``t_max`` steps or until the episode ends (``--envs-per-actor k``: ``t_max``
steps of ``k`` environments, ``asyncrl.algos.segments``), with ``T <- T + 1`` each step and
``theta^- <- theta`` whenever ``T`` crosses a multiple of ``I_target``; then
``R = 0`` if ``s_{t+n}`` is terminal, else ``max_a Q(s_{t+n}, a; theta^-)`` (also when a time
limit truncated the episode at ``s_{t+n}``), and backwards ``R <- r_i + gamma R``; apply the
gradient of ``sum_i (R_i - Q(s_i, a_i; theta'))^2`` to the shared ``theta`` without locks.
"""

from __future__ import annotations

import copy
from dataclasses import field

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
class NStepQConfig(ValueBasedFields):
    """Asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2)."""

    t_max: int = field(default=5, metadata={"help": "t_max: env steps per actor-learner update (fewer at episode end)"})

    envs_per_actor: int = envs_per_actor_option()
    sync: bool = hogwild_sync_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "envs_per_actor")
        if self.t_max < 1:
            raise ValueError(f"--t-max must be >= 1, got {self.t_max}")


class ActorLearner:
    """One n-step Q-learning actor-learner with its own environments and local copy theta'.

    Args:
        worker_id: index of this actor-learner, 0-based; its environment ``e`` is seeded
            ``seed + worker_id * envs_per_actor + e`` (``seed + worker_id`` with one).
        config: the run's configuration (``config.algo`` is an ``NStepQConfig``).
        shared: theta, theta^- and the shared optimizer from ``make_shared``.
        counters: the global step counter ``T``.

    Raises:
        EnvError: if an environment cannot be made or its action space is not discrete.
    """

    def __init__(self, worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters):
        self.worker_id = worker_id
        self.cfg = config.algo
        self.shared = shared
        self.counters = counters
        self.total_steps = config.run.total_steps
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.epsilon = EpsilonSchedule(self.cfg, self.rng, counters)
        online, target, self.target = q_networks(shared)
        self.local = copy.deepcopy(online)  # theta', process-local memory
        self.local_params = list(self.local.parameters())
        self.q = fast_forward(self.local.torso, self.local.head)  # Q(s, .; theta'), reads theta'
        self.target_q = fast_forward(target.torso, target.head)  # Q(s, .; theta^-)
        self.gradient = make_q_gradient(self.local)  # d loss / d theta', into theta'.grad
        k = self.cfg.envs_per_actor
        self.stats = WorkerStats(counters, num_envs=k)
        self.envs = ActorEnvs(config.run, worker_id, k, self.cfg.t_max, (), np.dtype(np.int64), counters, self.stats)

    @property
    def env(self):
        return self.envs.env

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return epsilon_greedy_rows(self.q(obs), self.epsilon(), self.rng)  # Q: [k, A]

    def update(self) -> int:
        cfg, counters = self.cfg, self.counters
        self.shared.pull(self.local_params)  # theta' <- theta
        seg = self.envs.collect(self._act, on_step=self.target.maybe_refresh)  # theta^- <- theta at I_target
        n, k = seg.rewards.shape
        # max_a Q(s, a; theta^-) where a return is bootstrapped: s_{t+n}, and a cut episode's last observation
        values = np.zeros((n + 1, k), dtype=np.float32)
        values[n] = self.target_q(seg.obs[n]).max(axis=1)
        cut = np.nonzero(seg.truncated)
        if cut[0].size:
            seg.final_values[cut] = self.target_q(seg.final_obs[cut]).max(axis=1)
        returns = n_step_returns(seg.rewards, seg.terminated, seg.truncated, seg.next_values(values), cfg.gamma)
        # the gradient of q_loss at theta' (NumPy for an MLP: updaters.NumpyQGradient, tested against autograd)
        metrics = self.gradient(
            seg.obs[:n].reshape(n * k, *seg.obs.shape[2:]), seg.actions.reshape(n * k), returns.reshape(n * k)
        )
        lr = linear_lr(cfg.lr, counters.global_step, self.total_steps) if cfg.lr_anneal else None
        self.shared.push(self.local_params, cfg.max_grad_norm, lr)
        counters.add(self.worker_id, 0, updates=1)
        self.stats.update(metrics)
        return n * k

    def drain_stats(self):
        return self.stats.drain()

    def close(self) -> None:
        self.envs.close()


SPEC = register(
    AlgoSpec(
        name="n-step-q",
        family=HOGWILD,
        config=NStepQConfig,
        summary="asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2)",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=ActorLearner,
        loss_names=LOSS_NAMES,
        backends=frozenset({"shm", "ray"}),
        local_copy=True,
        methods={"n-step-q": (), "n-step-q-sync": ("--sync",)},
        study="quick",
        presets=presets(cartpole_lr=1e-3),
    )
)
