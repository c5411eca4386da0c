"""Asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2).

Each actor-learner repeats: ``theta' <- theta``; act epsilon-greedy in ``Q(s, .; theta')``
for up to ``t_max`` steps or until the episode ends, with ``T <- T + 1`` each step and
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
from asyncrl.algos.value_based import LOSS_NAMES, build_model, greedy_action, make_shared, presets, q_networks
from asyncrl.config import Config
from asyncrl.config.fields import ValueBasedFields, configclass
from asyncrl.envs import game_over, game_score, start_worker_env
from asyncrl.exploration import EpsilonSchedule, epsilon_greedy
from asyncrl.networks import fast_forward
from asyncrl.registry import HOGWILD, AlgoSpec, register
from asyncrl.returns import n_step_returns, segment_end_flags
from asyncrl.shared import GlobalCounters, linear_lr
from asyncrl.updaters import make_q_gradient


@configclass
class NStepQConfig(ValueBasedFields):
    """Asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2)."""

    t_max: int = field(default=5, metadata={"help": "t_max: env steps per actor-learner update (fewer at episode end)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_max < 1:
            raise ValueError(f"--t-max must be >= 1, got {self.t_max}")


class ActorLearner:
    """One n-step Q-learning actor-learner with its own environment and local copy theta'.

    Args:
        worker_id: index of this actor-learner, 0-based; seeds ``seed + worker_id``.
        config: the run's configuration (``config.algo`` is an ``NStepQConfig``).
        shared: theta, theta^- and the shared optimizer from ``make_shared``.
        counters: the global step counter ``T``.

    Raises:
        EnvError: if the environment cannot be made or its action space is not discrete.
    """

    def __init__(self, worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters):
        self.worker_id = worker_id
        self.cfg = config.algo
        self.shared = shared
        self.counters = counters
        self.total_steps = config.run.total_steps
        self.env, self.obs, obs = start_worker_env(config.run, worker_id)
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.epsilon = EpsilonSchedule(self.cfg, self.rng, counters)
        online, target, self.target = q_networks(shared)
        self.local = copy.deepcopy(online)  # theta', process-local memory
        self.local_params = list(self.local.parameters())
        self.q = fast_forward(self.local.torso, self.local.head)  # Q(s, .; theta'), reads theta'
        self.target_q = fast_forward(target.torso, target.head)  # Q(s, .; theta^-)
        self.gradient = make_q_gradient(self.local)  # d loss / d theta', into theta'.grad
        self.stats = WorkerStats(counters)
        self._obs_buf = np.empty((self.cfg.t_max + 1, *obs.shape), dtype=obs.np_dtype)  # [t_max+1, *obs_shape]

    def update(self) -> int:
        cfg, env, counters, target = self.cfg, self.env, self.counters, self.target
        self.shared.pull(self.local_params)  # theta' <- theta
        obs_buf = self._obs_buf
        actions: list[int] = []
        rewards: list[float] = []
        terminated = truncated = False
        obs = self.obs
        for t in range(cfg.t_max):
            obs_buf[t] = obs
            action = epsilon_greedy(self.q(obs_buf[t]), self.epsilon(), self.rng)
            obs, reward, terminated, truncated, info = env.step(action)
            counters.add(self.worker_id, 1, updates=0)
            target.maybe_refresh(counters.global_step)
            actions.append(action)
            rewards.append(float(reward))
            self.stats.step(game_score(reward, info), game_over(terminated, truncated, info))
            if terminated or truncated:
                break
        n = len(actions)
        obs_buf[n] = obs  # s_{t+n}: the episode's last observation if it ended
        self.obs = env.reset()[0] if terminated or truncated else obs

        next_values = np.zeros((n, 1), dtype=np.float32)
        next_values[-1, 0] = self.target_q(obs_buf[n]).max()  # max_a Q(s_{t+n}, a; theta^-); unused if terminated
        returns = n_step_returns(
            np.asarray(rewards, dtype=np.float32)[:, None],  # [n, 1]
            *segment_end_flags(n, terminated, truncated),
            next_values,
            cfg.gamma,
        )
        # the gradient of q_loss at theta' (NumPy for an MLP: updaters.NumpyQGradient, tested against autograd)
        metrics = self.gradient(obs_buf[:n], np.asarray(actions), returns[:, 0])
        lr = linear_lr(cfg.lr, counters.global_step, self.total_steps) if cfg.lr_anneal else None
        self.shared.push(self.local_params, cfg.max_grad_norm, lr)
        counters.add(self.worker_id, 0, updates=1)
        self.stats.update(metrics)
        return n

    def drain_stats(self):
        return self.stats.drain()

    def close(self) -> None:
        self.env.close()


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
        study="quick",
        presets=presets(cartpole_lr=1e-3),
    )
)
