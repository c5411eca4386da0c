"""Asynchronous advantage actor-critic (Mnih et al. 2016, Algorithm S3).

The policy is categorical for discrete actions and, for continuous ones, the paper's
Gaussian (supplementary Section 9): the mean from a linear head, the variance
``sigma^2 = softplus(linear)`` (``--gaussian-std softplus``, A3C's default), an entropy bonus
of 1e-4 (the continuous-control presets); samples are clipped to the action bounds only
when they step the environment, and the loss scores the unclipped sample.

Each actor-learner repeats: ``theta' <- theta``; act with ``pi(.|s; theta')`` for up to
``t_max`` steps or until the episode ends; compute n-step returns bootstrapped from
``V(s_{t+n}; theta')`` (zero if ``s_{t+n}`` is terminal, ``V`` of the last observation
if a time limit truncated the episode); take the gradient of the A3C loss on the local
copy, clip its norm, and apply it to the shared ``theta`` with the shared optimizer,
without locks.

With ``--envs-per-actor k`` the actor-learner steps ``k`` environments for ``t_max`` steps
and updates on the ``t_max x k`` batch (``asyncrl.algos.segments``). Acting runs the local
model without autograd, one batched pass over the ``k`` observations per step; the
gradient then comes from one batched forward pass over the segment's ``t_max + 1`` rows.
As ``theta'`` is fixed during the segment, this is the same gradient as keeping the
per-step graphs, at a fraction of the cost.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import cast

import numpy as np
import torch

from asyncrl.algos.base import SharedState, WorkerStats
from asyncrl.algos.segments import ActorEnvs
from asyncrl.config import Config
from asyncrl.config.fields import (
    ActorCriticFields,
    configclass,
    envs_per_actor_option,
    hogwild_sync_option,
    option,
    positive,
)
from asyncrl.config.presets import ATARI, CONTINUOUS_CONTROL, RMSPROP_TF
from asyncrl.distributions import ActionSpec
from asyncrl.losses import actor_critic_loss, normalized
from asyncrl.networks import ActorCritic, ObsSpec, acting_policy_value, build_actor_critic
from asyncrl.registry import HOGWILD, AlgoSpec, Preset, register
from asyncrl.returns import n_step_returns
from asyncrl.shared import GlobalCounters, linear_lr, optimizer_for, share_model
from asyncrl.sync_round import make_round


@configclass
class A3CConfig(ActorCriticFields):
    """Asynchronous advantage actor-critic (Mnih et al. 2016, Algorithm S3).

    Defaults: t_max 20, shared RMSProp with lr 7e-4 and alpha 0.99, gradient-norm clip
    40, entropy bonus beta 0.01 (the paper's), and one torso for both heads with a CNN
    (the paper's choice for Atari pixels) but one MLP torso for each head on vector
    observations (``--shared-torso`` / ``--no-shared-torso`` choose either way): there
    the value loss, large while returns are far from the initial estimates, then drives
    the shared features: with it A3C learned nothing on Acrobot-v1 in 1M env steps
    (best mean return -490), and with a torso per head most seeds reach -100 within
    100k (``benchmarks/defaults.py``).
    """

    t_max: int = field(
        default=20, metadata={"help": "t_max: env steps per actor-learner update (fewer at episode end)"}
    )
    envs_per_actor: int = envs_per_actor_option()
    sync: bool = hogwild_sync_option()
    loss_reduction: str = option(
        "sum",
        "'sum' the loss over the segment's steps (the paper's accumulated gradients) or take its "
        "'mean' over the t_max x k batch (PAAC's, with a learning rate scaled to the batch)",
        choices=("sum", "mean"),
    )
    reward_scale: float = field(
        default=1.0,
        metadata={"help": "multiply every reward by this for training (episode returns stay unscaled)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "reward_scale", "envs_per_actor")
        if self.t_max < 1:
            raise ValueError(f"--t-max must be >= 1, got {self.t_max}")


LOSS_NAMES = ("policy_loss", "value_loss", "entropy")
"""Per-step means reported by every update; columns of ``metrics.csv``."""


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> ActorCritic:
    """The actor-critic network described by ``config.algo`` for observations ``obs`` and
    actions ``action`` (not shared): a categorical policy for discrete actions, a Gaussian
    one (``--gaussian-std``) for continuous ones.

    Raises:
        NetworkError: if ``--network`` cannot read ``obs``.
    """
    a = config.algo
    return build_actor_critic(
        obs, action, a.hidden_sizes, a.shared_torso, a.network, a.gaussian_std, lstm_size=a.core_size
    )


def greedy_action(model: ActorCritic, obs: torch.Tensor, state=None) -> tuple[int | np.ndarray, object]:
    """The greedy action for one observation ``obs: [*obs_shape]``: ``argmax_a pi(a|s)``
    (an int), or a Gaussian's mean (``[D]`` float32, which the env clips to its bounds).

    Args:
        state: a recurrent model's state before ``obs`` (``model.initial_state(1)`` at an
            episode's start); ignored by a feed-forward model.

    Returns:
        ``(action, state after obs)``.
    """
    params, _, state = model.step(obs.unsqueeze(0), state)
    return model.dist.env_action(model.dist.mode(params)[0].numpy()), state


def make_shared(config: Config, obs: ObsSpec, action: ActionSpec | int) -> SharedState:
    """The global actor-critic theta and its shared optimizer, in shared memory."""
    a = config.algo
    torch.manual_seed(config.run.seed)
    model = share_model(build_model(config, obs, action))
    optimizer = optimizer_for(a, model.parameters())
    return SharedState(model=model, optimizer=optimizer, round=make_round(config, model))


class ActorLearner:
    """One A3C actor-learner with its own environments and local model theta'.

    Args:
        worker_id: index of this actor-learner, 0-based; its environment ``e`` is seeded
            ``seed + worker_id * envs_per_actor + e`` (``seed + worker_id`` with one).
        config: the run's configuration (``config.algo`` is an ``A3CConfig``).
        shared: the shared model and optimizer from ``make_shared`` (or the Ray backend's
            ``RemoteState``: the same interface).
        counters: the global step counter ``T`` and the stop flag.

    Raises:
        EnvError: if an environment cannot be made or has unsuitable spaces.
    """

    def __init__(self, worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters):
        self.worker_id = worker_id
        self.cfg = config.algo
        self.shared = shared
        self.counters = counters
        self.total_steps = config.run.total_steps
        self.local: ActorCritic = copy.deepcopy(cast(ActorCritic, shared.model))  # theta', process-local memory
        self.local_params = list(self.local.parameters())
        self.dist = self.local.dist
        k = self.cfg.envs_per_actor
        # pi(.|s; theta') and V(s; theta') without autograd, reading theta'; carries an LSTM's state
        self.policy = acting_policy_value(self.local, k)
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.stats = WorkerStats(counters, num_envs=k)
        action = self.dist.action_shape, self.dist.action_dtype
        self.envs = ActorEnvs(config.run, worker_id, k, self.cfg.t_max, *action, counters, self.stats)

    @property
    def env(self):
        return self.envs.env

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return self.dist.sample_batch(self.policy.params(obs), self.rng)[0]  # unbounded for a Gaussian

    def _final_value(self, obs: np.ndarray, env: int) -> float:
        return float(self.policy.values(obs[None], [env])[0])

    def update(self) -> int:
        cfg, local = self.cfg, self.local
        self.shared.pull(self.local_params)  # theta' <- theta
        seg = self.envs.collect(
            self._act,
            self.dist.env_action,  # (clipped by the env)
            cfg.reward_scale,
            value=self._final_value,
            on_reset=self.policy.reset,  # the next episode starts from a zero LSTM state
            initial_state=self.policy.state(),  # an LSTM's (h, c) at the segment's start, or None
        )
        n, k = seg.rewards.shape

        # One pass over the segment's n+1 rows; with an LSTM, back-propagation through
        # these n+1 steps from the segment's (detached) initial state, zeroed where an
        # episode begins.
        state = None
        if seg.initial_state is not None:
            initial = torch.from_numpy(seg.initial_state)
            state = (initial[:, 0].contiguous(), initial[:, 1].contiguous())
        params, values, _ = local.sequence(
            torch.from_numpy(seg.obs), state, torch.from_numpy(seg.resets()), states=False
        )
        returns_np = n_step_returns(
            seg.rewards,  # [n, k]
            seg.terminated,
            seg.truncated,
            seg.next_values(values.detach().numpy()),  # V(s_{t+n}; theta'), or the cut episode's last value
            cfg.gamma,
        )
        returns = torch.from_numpy(returns_np)  # [n, k]
        advantages = normalized(returns - values[:n].detach()) if cfg.normalize_advantages else None
        loss, metrics = actor_critic_loss(
            params[:n],  # [n, k, P]
            values[:n],  # [n, k]
            torch.from_numpy(seg.actions),  # [n, k, *action_shape]
            returns,
            cfg.value_coef,
            cfg.entropy_coef,
            advantages=advantages,  # (None: R - V)
            reduction=cfg.loss_reduction,
            dist=self.dist,
        )
        lr = linear_lr(cfg.lr, self.counters.global_step, self.total_steps) if cfg.lr_anneal else None
        for p in self.local_params:
            p.grad = None
        loss.backward()
        self.shared.push(self.local_params, cfg.max_grad_norm, lr)  # asynchronous update of theta with d theta
        self.counters.add(self.worker_id, 0, updates=1)
        self.stats.update(metrics)
        return n * k

    def drain_stats(self):
        return self.stats.drain()

    def close(self) -> None:
        self.envs.close()


SPEC = register(
    AlgoSpec(
        name="a3c",
        family=HOGWILD,
        config=A3CConfig,
        summary="asynchronous advantage actor-critic (Mnih et al. 2016, Algorithm S3)",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=ActorLearner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"discrete", "box", "multi"}),
        backends=frozenset({"shm", "ray"}),
        local_copy=True,
        methods={"a3c": (), "a3c-sync": ("--sync",)},
        study="quick",
        presets=(
            Preset(
                "CartPole-v1",
                {"entropy_coef": 0.0},
                "no entropy bonus: seeds reach 475 in 70k-160k env steps, beta 0.01 plateaus near 400 "
                "(benchmarks/results/presets.md)",
            ),
            Preset(
                "Pendulum-v1",
                {"entropy_coef": 1e-4, "gamma": 0.9, "reward_scale": 0.1, "t_max": 10},
                "rewards x 0.1, discount 0.9, t_max 10; the general ones stayed below -1,000 in 1M env steps "
                "(benchmarks/results/presets.md)",
            ),
            Preset(
                "asyncrl/CartPoleNoVelocity-v1",
                {"reward_scale": 0.1, "entropy_coef": 0.0, "lr": 3e-4, "lr_anneal": True},
                "rewards x 0.1, lr 3e-4 annealed: 3 of 3 seeds reach 475 within 1M env steps with --lstm "
                "(benchmarks/results/presets.md)",
            ),
            Preset(
                ATARI,
                {
                    "t_max": 5,
                    "lstm_size": 256,
                    "envs_per_actor": 16,
                    "loss_reduction": "mean",
                    "max_grad_norm": 0.5,
                    "lr": 1.4e-3,
                    **RMSPROP_TF,
                },
                "the paper's t_max 5 and LSTM width; 16 environments per actor-learner with OpenAI Baselines' "
                "A2C optimisation (the loss's mean, TensorFlow's RMSProp: eps 1e-5 inside the root, average "
                "starting at 1; gradient norm 0.5) at twice its lr: the first A3C setting that learned Pong "
                "here, where the paper's RMSProp (eps 0.1 inside), Adam and PAAC's settings left the policy "
                "uniform, and lr 1.4e-3 left -20 ten minutes before 7e-4 (benchmarks/results/pong_tuning.md)",
            ),
            *(
                Preset(
                    pattern,
                    {"entropy_coef": 1e-4},
                    "the paper's continuous-control entropy cost (Mnih et al. 2016, supplementary Section 9)",
                )
                for pattern in CONTINUOUS_CONTROL
            ),
        ),
    )
)
