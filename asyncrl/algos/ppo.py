"""Proximal policy optimisation on batched rollouts (Schulman et al. 2017).

The learner's update on a ``[T, B]`` batch: advantages from GAE(lambda) with the
behaviour policy's values, then ``--epochs`` passes over shuffled minibatches of the
clipped surrogate objective with the behaviour policy ``mu`` as ``pi_old``.

With ``--correction vtrace`` (stale ``--async`` rollouts) the update is the decoupled
PPO objective of Hilton, Cobbe & Schulman 2022 ("Batch size-invariance for policy
optimization", the decoupled clipped objective): ``E_mu[(pi_prox / mu) min(r A, clip(r, 1 - eps, 1 + eps) A)]``
with ``r = pi_theta / pi_prox``, where the proximal policy ``pi_prox`` is the learner's
policy at the start of the update. The clip is centred on ``pi_prox``, not on the
behaviour policy; the importance weight ``pi_prox / mu``, truncated at 1, is V-trace's
``rho_t``, which the V-trace advantage ``rho_t (r_t + gamma v_{t+1} - V(s_t))`` already
carries (Espeholt et al. 2018, Section 4.2), so it is applied once. Values, targets and
the truncated steps' bootstrap values all come from the learner's critic.

Options: value clipping, an early stop once the approximate KL exceeds
``1.5 * --target-kl``, linear annealing of the learning rate and the clip range
(``--lr-anneal`` / ``--clip-anneal``). Actors and slots: ``asyncrl.algos.batched``.
"""

from __future__ import annotations

from dataclasses import field
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
from asyncrl.config.fields import BatchedFields, configclass, positive
from asyncrl.config.presets import ATARI, CONTINUOUS_CONTROL, MINATAR, PPO_CONTINUOUS
from asyncrl.losses import normalized
from asyncrl.registry import BATCHED, AlgoSpec, Preset, register
from asyncrl.shared import linear_lr


@configclass
class PPOConfig(BatchedFields):
    """Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017).

    Defaults follow CleanRL's ``ppo.py``: Adam lr 2.5e-4 (eps 1e-5), 128-step rollouts,
    GAE lambda 0.95, 4 epochs of 256-sample minibatches, clip 0.2, entropy 0.01,
    normalised advantages.
    """

    lr: float = field(default=2.5e-4, metadata={"help": "learning rate of the learner's optimizer"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer: 'rmsprop' or 'adam'"})
    unroll_length: int = 128
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda (Schulman et al. 2016)"})
    epochs: int = field(default=4, metadata={"help": "passes over each batch"})
    minibatch_size: int = field(
        default=256, metadata={"help": "samples (env steps) per gradient step; a batch has T x B samples"}
    )
    clip_range: float = field(default=0.2, metadata={"help": "epsilon: clip of the probability ratio"})
    clip_anneal: bool = field(
        default=False, metadata={"help": "anneal --clip-range linearly to 0 at T = --total-steps"}
    )
    value_clip: float | None = field(
        default=None, metadata={"help": "clip each value update to +-this around the old value (default: off)"}
    )
    target_kl: float | None = field(
        default=None,
        metadata={"help": "stop a batch's epochs early once the approximate KL exceeds 1.5x this (default: off)"},
    )
    normalize_advantages: bool = field(
        default=True, metadata={"help": "normalise advantages to mean 0, std 1 in each minibatch"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or self.minibatch_size < 1:
            raise ValueError(f"--epochs and --minibatch-size must be >= 1, got {self.epochs}, {self.minibatch_size}")
        positive(self, "clip_range")
        for name in ("value_clip", "target_kl"):
            if getattr(self, name) is not None:
                positive(self, name)


LOSS_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "epochs", "policy_lag")
"""Per-batch means reported by the learner; columns of ``metrics.csv`` (``epochs``: passes
made before a KL early stop)."""


def learn(
    cfg: Any, updater: Any, batch: dict[str, torch.Tensor], progress: float, rng: np.random.Generator
) -> dict[str, float]:
    """One PPO update on ``batch`` (``RolloutSlots.batch`` layout, ``[T, B]``) through
    ``updater`` (``asyncrl.updaters``).

    Returns:
        Means over the minibatch steps of ``ppo_loss``'s metrics, and ``epochs``.
    """
    obs, actions = batch["obs"], batch["actions"]
    T, B = actions.shape[:2]
    device = actions.device
    estimates = advantage_estimates(cfg, updater, batch, behaviour_critic=True)
    if estimates.log_probs is None:
        old_log_probs = batch["log_probs"]  # [T, B]: pi_old = the behaviour policy mu
    else:  # V-trace: pi_old = pi_prox, the learner's policy now (the decoupled objective)
        old_log_probs = torch.from_numpy(estimates.log_probs).to(device)  # [T, B]
    lr = linear_lr(cfg.lr, progress, 1.0) if cfg.lr_anneal else None
    clip_range = linear_lr(cfg.clip_range, progress, 1.0) if cfg.clip_anneal else cfg.clip_range
    clip_range = max(clip_range, 1e-8)
    time_major = {  # [T, B, ...]
        "actions": actions,
        "old_log_probs": old_log_probs,
        "old_values": torch.from_numpy(estimates.values[:T]).to(device),
        "advantages": torch.from_numpy(estimates.advantages).to(device),
        "returns": torch.from_numpy(estimates.returns).to(device),
    }
    if updater.recurrent:
        minibatches = _sequence_minibatches(cfg, obs, time_major, recurrent_inputs(batch), rng)
    else:
        minibatches = _sample_minibatches(cfg, obs, time_major, rng)
    sums: dict[str, float] = {}
    steps = epochs = 0
    for _ in range(cfg.epochs):
        epochs += 1
        kl_exceeded = False
        for mb_obs, sequences, mb in minibatches():
            if cfg.normalize_advantages:
                mb["advantages"] = normalized(mb["advantages"])
            metrics = updater.step(
                mb_obs,
                "clipped_surrogate",
                lr,
                **sequences,
                **mb,
                clip_range=clip_range,
                value_clip=cfg.value_clip,
                value_coef=cfg.value_coef,
                entropy_coef=cfg.entropy_coef,
            )
            steps += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value
            if cfg.target_kl is not None and metrics["approx_kl"] > 1.5 * cfg.target_kl:
                kl_exceeded = True
                break
        if kl_exceeded:
            break
    return {**{name: value / steps for name, value in sums.items()}, "epochs": float(epochs)}


def _sample_minibatches(cfg: Any, obs: torch.Tensor, time_major: dict[str, torch.Tensor], rng: np.random.Generator):
    """Minibatches of ``--minibatch-size`` single steps, shuffled anew each epoch (a
    feed-forward policy): yields ``(obs [M, *obs_shape], {}, {name: [M, ...]})``."""
    T, B = time_major["old_log_probs"].shape
    N = T * B
    flat = {name: tensor.flatten(0, 1) for name, tensor in time_major.items()}  # [N, ...]
    flat_obs = obs[:T].flatten(0, 1)  # [N, *obs_shape]
    if cfg.minibatch_size >= N:  # one minibatch: no shuffling, no gathers
        return lambda: iter([(flat_obs, {}, dict(flat))])

    def epoch():
        order = torch.from_numpy(rng.permutation(N)).to(flat_obs.device)
        for start in range(0, N, cfg.minibatch_size):
            idx = order[start : start + cfg.minibatch_size]
            yield flat_obs[idx], {}, {name: tensor[idx] for name, tensor in flat.items()}

    return epoch


def _sequence_minibatches(
    cfg: Any, obs: torch.Tensor, time_major: dict[str, torch.Tensor], inputs, rng: np.random.Generator
):
    """Minibatches of whole rollouts (a recurrent policy): ``max(1, --minibatch-size // T)``
    environments' ``T``-step sequences each, shuffled by environment each epoch, never by
    step; yields ``(obs [T, b, *obs_shape], {"state", "resets"}, {name: [T * b, ...]})``."""
    (h, c), resets = inputs
    T, B = time_major["old_log_probs"].shape
    per_minibatch = max(1, cfg.minibatch_size // T)

    def epoch():
        order = torch.from_numpy(rng.permutation(B)).to(obs.device)
        for start in range(0, B, per_minibatch):
            cols = order[start : start + per_minibatch]
            yield (
                obs[:T, cols],
                {"state": (h[cols], c[cols]), "resets": resets[:T, cols]},
                {name: tensor[:, cols].flatten(0, 1) for name, tensor in time_major.items()},
            )

    return epoch


Learner = learner_factory(learn)


_CARTPOLE = {
    "envs_per_actor": 4,
    "unroll_length": 32,
    "minibatch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "epochs": 20,
    "entropy_coef": 0.0,
    "lr": 1e-3,
    "lr_anneal": True,
    "clip_range": 0.2,
    "clip_anneal": True,
}

SPEC = register(
    AlgoSpec(
        name="ppo",
        family=BATCHED,
        config=PPOConfig,
        summary="proximal policy optimisation, clipped surrogate (Schulman et al. 2017), sync or async",
        build_model=build_model,
        make_shared=make_shared,
        greedy_action=greedy_action,
        actor=Actor,
        learner=Learner,
        loss_names=LOSS_NAMES,
        actions=frozenset({"discrete", "box", "multi"}),
        backends=frozenset({"shm", "ray"}),
        methods={"ppo-sync": ("--sync",), "ppo-async": ("--async",)},
        study="quick",
        presets=(
            Preset(
                "CartPole-v1",
                _CARTPOLE,
                "rl-baselines3-zoo's ppo.yml (lin_1e-3, lin_0.2 annealed to 0 at --total-steps; 8 environments)",
            ),
            Preset(
                "Pendulum-v1",
                {
                    **PPO_CONTINUOUS,
                    "envs_per_actor": 2,
                    "gamma": 0.9,
                    "lr": 1e-3,
                    "value_clip": None,
                    "normalize_obs": False,
                    "normalize_reward": False,
                },
                "rl-baselines3-zoo's ppo.yml without gSDE: seeds 0-3 reach -250 in 64k-74k env steps "
                "(benchmarks/results/presets.md)",
            ),
            Preset(
                "asyncrl/CartPoleNoVelocity-v1",
                {**_CARTPOLE, "lstm_size": 64, "normalize_obs": True, "normalize_reward": True, "value_coef": 0.1},
                "the CartPole preset with an LSTM of 64, VecNormalize and value coefficient 0.1: seed 0 reaches 475 "
                "at 409k env steps (benchmarks/results/presets.md)",
            ),
            Preset(
                ATARI,
                {
                    "envs_per_actor": 4,
                    "unroll_length": 128,
                    "minibatch_size": 256,
                    "epochs": 4,
                    "clip_range": 0.1,
                    "value_clip": 0.1,
                    "lr_anneal": True,
                    "lstm_size": 256,
                },
                "CleanRL's ppo_atari.py (8 environments, 128-step rollouts, 4 epochs of 4 minibatches, clip 0.1)",
            ),
            Preset(
                MINATAR,
                {"envs_per_actor": 4, "unroll_length": 128, "minibatch_size": 256, "epochs": 4, "lr_anneal": True},
                "CleanRL's ppo_atari.py layout with clip 0.2 (benchmarks/results/minatar.md)",
            ),
            *(
                Preset(pattern, PPO_CONTINUOUS, "CleanRL's ppo_continuous_action.py (2048-step batches over 2 actors)")
                for pattern in CONTINUOUS_CONTROL
            ),
        ),
    )
)
