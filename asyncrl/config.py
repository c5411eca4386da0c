"""Configuration: frozen dataclasses, one for the run and one per algorithm.

Every field is a command-line flag of ``python -m asyncrl.run`` with the same name
(``t_max`` is ``--t-max``); its ``help`` metadata is the flag's documentation, with
units and default. Validation happens in ``__post_init__`` so that a bad value is
rejected before any process starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{_flag(name)} must be > 0, got {value}")


def _in_unit_interval(config: Any, *names: str, closed: bool = True) -> None:
    for name in names:
        value = getattr(config, name)
        ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
        if not ok:
            raise ValueError(f"{_flag(name)} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class RunConfig:
    """What to train, for how long, and where to write it: common to all algorithms."""

    algo: str = field(default="a3c", metadata={"help": "algorithm"})
    env: str = field(
        default="CartPole-v1",
        metadata={"help": "Gymnasium environment id (a registered id, or 'module:Id')"},
    )
    workers: int = field(
        default=os.cpu_count() or 1,
        metadata={"help": "number of actor-learner processes (default: this machine's core count)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed; worker i uses seed + i"})
    total_steps: int = field(
        default=1_000_000,
        metadata={"help": "T_max: stop after this many env steps, summed over all workers"},
    )
    target_return: float | None = field(
        default=None,
        metadata={
            "help": "stop once the mean return of the last --return-window episodes reaches this "
            "(default: the env's reward_threshold; 'inf' never stops early)"
        },
    )
    return_window: int = field(
        default=100,
        metadata={"help": "episodes (over all workers) behind the mean return of metrics.csv, the progress "
                          "display and --target-return"},
    )
    max_seconds: float | None = field(
        default=None, metadata={"help": "stop after this many seconds of wall time (default: no cap)"}
    )
    run_dir: str | None = field(
        default=None,
        metadata={"help": "output folder (default: runs/<algo>-<env>-<seed>-<timestamp>)"},
    )
    resume: str | None = field(
        default=None,
        metadata={"help": "continue the run in this folder from its checkpoint, with its config; only "
                          "the run-length, logging and failure flags may change"},
    )
    log_interval: float = field(
        default=1.0, metadata={"help": "seconds between rows of metrics.csv"}
    )
    checkpoint_interval: float = field(
        default=60.0, metadata={"help": "seconds between checkpoints (one is always written at the end)"}
    )
    serial: bool = field(
        default=False,
        metadata={
            "help": "run every actor-learner in this one process, round-robin, one update each "
            "(deterministic for a given seed; for debugging and tests)"
        },
    )
    on_worker_failure: str = field(
        default="restart",
        metadata={"help": "when an actor-learner raises or dies: 'restart' it with a fresh environment "
                          "and seed (up to --max-restarts times in the run), or 'abort' the run "
                          "(with a final checkpoint)"},
    )
    max_restarts: int = field(
        default=3, metadata={"help": "worker restarts allowed in the whole run before it aborts"}
    )
    start_method: str = field(
        default="fork",
        metadata={
            "help": "how worker processes start: 'fork' (instant; the trainer forks before it "
            "starts any thread), 'forkserver' or 'spawn' (each starts a fresh interpreter, "
            "seconds per worker)"
        },
    )
    backend: str = field(
        default="shm",
        metadata={"help": "where the shared state lives: 'shm' (shared memory, one machine) or 'ray' (a Ray "
                          "parameter server, or the batched learner, as a Ray actor; actor-learners or actors on "
                          "any node of a Ray cluster; pip install -e '.[ray]')"},
    )
    address: str | None = field(
        default=None,
        metadata={"help": "--backend ray: the cluster to join ('auto': the one `ray start` made on this node, "
                          "or HOST:PORT of its head); default: start a local Ray instance for this run"},
    )
    pin_workers: bool = field(
        default=False,
        metadata={"help": "pin worker i (the learner: i = --workers) to usable core i mod cores, with "
                          "psutil's cpu_affinity"},
    )
    repeat_action_probability: float = field(
        default=0.0,
        metadata={"help": "Atari: probability that ALE repeats the previous action (sticky actions); 0 as in "
                          "the paper and the NoFrameskip-v4 ids (ALE v5's own default is 0.25)"},
    )
    terminal_on_life_loss: bool = field(
        default=False,
        metadata={"help": "Atari: a lost life ends the learner's episode and the game goes on (DQN's episodic "
                          "life); episode returns and evaluate stay whole-game scores"},
    )
    progress: str = field(
        default="auto",
        metadata={
            "help": "live display: 'rich' (a progress bar), 'plain' (a line every 10 s), 'none', "
            "or 'auto' (rich on a terminal, plain otherwise)"
        },
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        _positive(self, "total_steps", "log_interval", "checkpoint_interval", "return_window")
        if self.max_seconds is not None:
            _positive(self, "max_seconds")
        if self.target_return is not None and math.isnan(self.target_return):
            raise ValueError("--target-return must be a number or 'inf', got nan")
        if self.on_worker_failure not in ("restart", "abort"):
            raise ValueError(f"--on-worker-failure must be restart or abort, got {self.on_worker_failure!r}")
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.backend not in ("shm", "ray"):
            raise ValueError(f"--backend must be shm or ray, got {self.backend!r}")
        if self.address is not None and self.backend != "ray":
            raise ValueError("--address names a Ray cluster: it needs --backend ray")
        if self.backend == "ray" and self.serial:
            raise ValueError("--serial runs every actor-learner in this process: it takes --backend shm")
        if self.start_method not in ("fork", "forkserver", "spawn"):
            raise ValueError(f"--start-method must be fork, forkserver or spawn, got {self.start_method!r}")
        _in_unit_interval(self, "repeat_action_probability")
        if self.progress not in ("auto", "rich", "plain", "none"):
            raise ValueError(f"--progress must be auto, rich, plain or none, got {self.progress!r}")


@dataclass(frozen=True)
class _LearnerFields:
    """Fields every algorithm has: optimizer, discount, network."""

    lr: float = field(default=7e-4, metadata={"help": "learning rate of the shared optimizer"})
    lr_anneal: bool = field(
        default=False, metadata={"help": "anneal the learning rate linearly to 0 at T = --total-steps"}
    )
    gamma: float = field(default=0.99, metadata={"help": "discount factor"})
    max_grad_norm: float = field(
        default=40.0, metadata={"help": "clip each update's gradient to this global L2 norm"}
    )
    optimizer: str = field(
        default="rmsprop", metadata={"help": "shared optimizer: 'rmsprop' or 'adam' (statistics shared)"}
    )
    rms_alpha: float = field(default=0.99, metadata={"help": "RMSProp decay alpha"})
    optim_eps: float = field(default=1e-5, metadata={"help": "epsilon of RMSProp / Adam"})
    rms_eps_inside: bool = field(
        default=False,
        metadata={"help": "RMSProp divides by sqrt(g + eps), as Mnih et al. 2016 write it (eps 0.1 in the Atari "
                          "presets), instead of torch's sqrt(g) + eps"},
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "widths of the MLP torso's hidden layers"}
    )
    network: str = field(
        default="auto",
        metadata={"help": "torso: 'mlp' (flat observations), 'nature' (the A3C paper's Atari CNN: conv 16 8x8/4, "
                          "conv 32 4x4/2, fc 256), 'nature2015' (the DQN paper's: conv 32 8x8/4, conv 64 4x4/2, "
                          "conv 64 3x3/1, fc 512; DQN's Atari default), 'minatar' (Young & Tian 2019: conv 16 3x3/1, "
                          "fc 128), or "
                          "'auto' (mlp for vectors, minatar for images under 36x36, nature above)"},
    )

    def __post_init__(self) -> None:
        if self.lr < 0:
            raise ValueError(f"--lr must be >= 0, got {self.lr}")
        _positive(self, "max_grad_norm", "optim_eps")
        _in_unit_interval(self, "gamma", "rms_alpha")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"--optimizer must be rmsprop or adam, got {self.optimizer!r}")
        if self.network not in ("auto", "mlp", "nature", "nature2015", "minatar"):
            raise ValueError(f"--network must be auto, mlp, nature, nature2015 or minatar, got {self.network!r}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden-sizes must be positive widths, got {list(self.hidden_sizes)}")


@dataclass(frozen=True)
class _ActorCriticFields(_LearnerFields):
    """Fields of the actor-critics (A3C, A2C, PPO): the loss weights, the torso, the
    Gaussian policy of continuous actions and the LSTM core."""

    entropy_coef: float = field(default=0.01, metadata={"help": "beta: weight of the entropy bonus"})
    value_coef: float = field(default=0.5, metadata={"help": "weight of the value loss"})
    shared_torso: bool | None = field(
        default=None,
        metadata={"help": "policy and value heads share one torso (the paper's Atari network), or one torso "
                          "each (default: shared for a CNN or with --lstm, one each for an MLP)"},
    )
    gaussian_std: str = field(
        default="softplus",
        metadata={"help": "continuous actions: the Gaussian's scale, 'softplus' (sigma^2 = softplus(linear), "
                          "state-dependent; the paper's) or 'parameter' (a learned state-independent log sigma, "
                          "initially 0; CleanRL's and SB3's)"},
    )
    lstm: bool = field(
        default=False,
        metadata={"help": "an LSTM core between the (shared) torso and the heads; its state is carried across "
                          "segments and zeroed where an episode ends"},
    )
    lstm_size: int = field(default=128, metadata={"help": "width of the LSTM core (the paper: 256 on Atari, 128 "
                                                          "on MuJoCo)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("entropy_coef", "value_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.gaussian_std not in ("softplus", "parameter"):
            raise ValueError(f"--gaussian-std must be softplus or parameter, got {self.gaussian_std!r}")
        if self.lstm_size < 1:
            raise ValueError(f"--lstm-size must be >= 1, got {self.lstm_size}")
        if self.lstm and self.shared_torso is False:
            raise ValueError("--lstm feeds both heads from one core: it cannot be combined with --no-shared-torso")

    @property
    def core_size(self) -> int:
        """Width of the LSTM core, 0 without ``--lstm``."""
        return self.lstm_size if self.lstm else 0


@dataclass(frozen=True)
class A3CConfig(_ActorCriticFields):
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
    reward_scale: float = field(
        default=1.0,
        metadata={"help": "multiply every reward by this for training (episode returns stay unscaled)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "reward_scale")
        if self.t_max < 1:
            raise ValueError(f"--t-max must be >= 1, got {self.t_max}")


@dataclass(frozen=True)
class _ValueBasedFields(_LearnerFields):
    """Fields of the asynchronous value-based methods: target network and epsilon-greedy."""

    lr: float = field(default=1e-3, metadata={"help": "learning rate of the shared optimizer"})
    target_update: int = field(
        default=10_000,
        metadata={"help": "I_target: refresh the target network each time T crosses a multiple of "
                          "this many global env steps (paper: 40,000 Atari frames = 10,000 steps)"},
    )
    epsilon_steps: int = field(
        default=1_000_000,
        metadata={"help": "global env steps over which each worker's epsilon anneals linearly from 1 "
                          "to its final value (paper: 4M frames = 1M steps)"},
    )
    final_epsilons: tuple[float, ...] = field(
        default=(0.1, 0.01, 0.5),
        metadata={"help": "final epsilons a worker draws from, once, with its seed (paper: 0.1 0.01 0.5)"},
    )
    final_epsilon_probs: tuple[float, ...] = field(
        default=(0.4, 0.3, 0.3),
        metadata={"help": "probabilities of drawing each final epsilon (paper: 0.4 0.3 0.3)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_update < 1:
            raise ValueError(f"--target-update must be >= 1, got {self.target_update}")
        if self.epsilon_steps < 0:
            raise ValueError(f"--epsilon-steps must be >= 0, got {self.epsilon_steps}")
        if not self.final_epsilons or any(not 0.0 <= e <= 1.0 for e in self.final_epsilons):
            raise ValueError(f"--final-epsilons must be in [0, 1], got {list(self.final_epsilons)}")
        probs = self.final_epsilon_probs
        if (len(probs) != len(self.final_epsilons) or any(p < 0 for p in probs)
                or not math.isclose(sum(probs), 1.0, abs_tol=1e-6)):
            raise ValueError(
                f"--final-epsilon-probs must be {len(self.final_epsilons)} non-negative numbers summing "
                f"to 1, got {list(probs)}"
            )


@dataclass(frozen=True)
class OneStepConfig(_ValueBasedFields):
    """Asynchronous one-step Q-learning (Mnih et al. 2016, Algorithm 1) and one-step Sarsa
    (Section 4): gradients accumulated over ``async_update`` steps, then applied."""

    async_update: int = field(
        default=5,
        metadata={"help": "I_AsyncUpdate: env steps whose gradients are accumulated per update "
                          "(fewer at episode end)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.async_update < 1:
            raise ValueError(f"--async-update must be >= 1, got {self.async_update}")


@dataclass(frozen=True)
class NStepQConfig(_ValueBasedFields):
    """Asynchronous n-step Q-learning (Mnih et al. 2016, Algorithm S2)."""

    t_max: int = field(
        default=5, metadata={"help": "t_max: env steps per actor-learner update (fewer at episode end)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_max < 1:
            raise ValueError(f"--t-max must be >= 1, got {self.t_max}")


@dataclass(frozen=True)
class _BatchedFields(_ActorCriticFields):
    """Fields of the batched learner: actor processes feed one learner process through
    shared-memory rollout slots (``asyncrl.storage``)."""

    max_grad_norm: float = field(
        default=0.5, metadata={"help": "clip each update's gradient to this global L2 norm"}
    )
    envs_per_actor: int = field(
        default=4, metadata={"help": "environments each actor process steps; the learner's batch holds "
                                     "--workers x --envs-per-actor rollouts unless --batch-rollouts says"}
    )
    unroll_length: int = field(
        default=5, metadata={"help": "T: env steps per rollout per environment"}
    )
    batch_rollouts: int = field(
        default=0, metadata={"help": "B: rollouts per learner batch (0: one from every environment, "
                                     "--workers x --envs-per-actor; --sync needs exactly that)"}
    )
    sync: bool = field(
        default=True,
        metadata={"help": "synchronous: actors wait for the new policy after each batch (classic A2C/PPO); "
                          "--async: actors never wait, and the learner trains on whatever rollouts are full"},
    )
    correction: str = field(
        default="none",
        metadata={"help": "off-policy correction of stale rollouts: 'none' (use them as they are) or "
                          "'vtrace' (V-trace targets and advantages, rho-bar = c-bar = 1; Espeholt et al. 2018)"},
    )
    learner_device: str = field(
        default="cpu", metadata={"help": "device of the learner process: 'cpu', 'cuda' or 'cuda:N'"}
    )
    gae_lambda: float = field(
        default=1.0, metadata={"help": "GAE lambda (1: n-step returns; Schulman et al. 2016)"}
    )
    gaussian_std: str = field(
        default="parameter",
        metadata={"help": "continuous actions: the Gaussian's scale, 'parameter' (a learned state-independent "
                          "log sigma, initially 0; CleanRL's and SB3's) or 'softplus' (sigma^2 = softplus(linear))"},
    )
    normalize_obs: bool = field(
        default=False,
        metadata={"help": "normalise observations by running mean and std (Gymnasium's NormalizeObservation; "
                          "one set of statistics, kept by the learner and published with the weights)"},
    )
    normalize_reward: bool = field(
        default=False,
        metadata={"help": "divide rewards by the running std of the discounted return (Gymnasium's "
                          "NormalizeReward; statistics as --normalize-obs)"},
    )
    obs_clip: float = field(default=10.0, metadata={"help": "clip normalised observations to +-this"})
    reward_clip: float = field(default=10.0, metadata={"help": "clip scaled rewards to +-this"})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "obs_clip", "reward_clip")
        for name in ("envs_per_actor", "unroll_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.batch_rollouts < 0:
            raise ValueError(f"--batch-rollouts must be >= 0, got {self.batch_rollouts}")
        if self.correction not in ("none", "vtrace"):
            raise ValueError(f"--correction must be none or vtrace, got {self.correction!r}")
        device = self.learner_device
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"--learner-device must be cpu, cuda or cuda:N, got {device!r}")
        _in_unit_interval(self, "gae_lambda")

    def rollouts_per_batch(self, workers: int) -> int:
        """``B`` for a run with ``workers`` actor processes.

        Raises:
            ValueError: if ``--sync`` is asked with a ``batch_rollouts`` other than the
                number of environments, or ``batch_rollouts`` is not a multiple of
                ``envs_per_actor``.
        """
        envs = workers * self.envs_per_actor
        if self.batch_rollouts == 0:
            return envs
        if self.batch_rollouts % self.envs_per_actor:
            raise ValueError(f"--batch-rollouts must be a multiple of --envs-per-actor ({self.envs_per_actor}): "
                             f"a batch takes whole actor rollouts, got {self.batch_rollouts}")
        if self.sync and self.batch_rollouts != envs:
            raise ValueError(f"--sync trains on one rollout from every environment: --batch-rollouts must be 0 "
                             f"or {envs} (--workers x --envs-per-actor), got {self.batch_rollouts}")
        return self.batch_rollouts


@dataclass(frozen=True)
class A2CConfig(_BatchedFields):
    """Advantage actor-critic on batched rollouts (A2C; Mnih et al. 2016's A3C made
    synchronous, as in OpenAI baselines).

    Defaults are OpenAI baselines' A2C: RMSProp lr 7e-4, alpha 0.99, eps 1e-5, grad-norm
    0.5, value coef 0.5, entropy 0.01, 5-step rollouts, n-step returns (GAE lambda 1).
    """


@dataclass(frozen=True)
class PPOConfig(_BatchedFields):
    """Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017).

    Defaults follow CleanRL's ``ppo.py``: Adam lr 2.5e-4 (eps 1e-5), 128-step rollouts,
    GAE lambda 0.95, 4 epochs of 256-sample minibatches, clip 0.2, entropy 0.01,
    normalised advantages.
    """

    lr: float = field(default=2.5e-4, metadata={"help": "learning rate of the learner's optimizer"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer: 'rmsprop' or 'adam'"})
    unroll_length: int = field(default=128, metadata={"help": "T: env steps per rollout per environment"})
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
        _positive(self, "clip_range")
        for name in ("value_clip", "target_kl"):
            if getattr(self, name) is not None:
                _positive(self, name)


@dataclass(frozen=True)
class ReinforceConfig(_BatchedFields):
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
        default=2, metadata={"help": "environments each actor process steps, one episode each per rollout; the "
                                     "learner's batch holds --workers x --envs-per-actor episodes"}
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "beta: weight of the entropy bonus"})
    unroll_length: int = field(
        default=500, metadata={"help": "T: the longest episode, in env steps; a longer one is cut (truncated) "
                                       "there and its return counted to the cut"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.correction != "none" or self.gae_lambda != 1.0:
            raise ValueError("--algo reinforce uses full-episode returns: --correction must be none and "
                             "--gae-lambda 1")
        if self.lstm or self.normalize_obs or self.normalize_reward:
            raise ValueError("--algo reinforce takes neither --lstm nor --normalize-obs / --normalize-reward")


@dataclass(frozen=True)
class _OffPolicyFields(_LearnerFields):
    """Fields of the off-policy learners: actor processes fill one shared-memory replay
    (``asyncrl.replay``), one learner process samples it."""

    optimizer: str = field(default="adam", metadata={"help": "optimizer: 'rmsprop' or 'adam'"})
    optim_eps: float = field(default=1e-8, metadata={"help": "epsilon of Adam / RMSProp"})
    max_grad_norm: float = field(
        default=math.inf, metadata={"help": "clip each update's gradient to this global L2 norm (inf: no clip)"}
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "widths of the MLP hidden layers (ReLU) of every network"}
    )
    replay_size: int = field(default=1_000_000, metadata={"help": "transitions the replay holds, over all actors"})
    batch_size: int = field(default=256, metadata={"help": "transitions per learner update"})
    learning_starts: int = field(
        default=100, metadata={"help": "env steps (all actors) in the replay before the first update; actors act "
                                       "uniformly at random until then (continuous actions)"}
    )
    replay_ratio: float = field(
        default=1.0, metadata={"help": "learner updates per env step (all actors), once --learning-starts is reached"}
    )
    rate_tolerance: int = field(
        default=16, metadata={"help": "updates the learner may fall behind --replay-ratio before the actors wait "
                                      "(Reverb's error_buffer); --sync: 0"}
    )
    sync: bool = field(
        default=False,
        metadata={"help": "lockstep: every insert waits for the updates it makes due, and the actors act with the "
                          "policy after them (exactly reproducible with one actor); --async: --rate-tolerance"},
    )
    n_step: int = field(default=1, metadata={"help": "n: transitions carry n-step discounted rewards"})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "replay_ratio")
        for name in ("replay_size", "batch_size", "n_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "rate_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")

    @property
    def tolerance(self) -> int:
        """The rate limiter's tolerance: 0 with ``--sync``, else ``--rate-tolerance``."""
        return 0 if self.sync else self.rate_tolerance


@dataclass(frozen=True)
class DQNConfig(_OffPolicyFields):
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
            raise ValueError(f"--target-update must be >= 1 and --epsilon-steps >= 0, got {self.target_update}, "
                             f"{self.epsilon_steps}")
        _in_unit_interval(self, "final_epsilon")
        if self.epsilon_alpha < 0:
            raise ValueError(f"--epsilon-alpha must be >= 0, got {self.epsilon_alpha}")


@dataclass(frozen=True)
class TD3Config(_OffPolicyFields):
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
        _in_unit_interval(self, "tau")
        if self.policy_delay < 1 or self.n_critics < 1:
            raise ValueError(f"--policy-delay and --n-critics must be >= 1, got {self.policy_delay}, "
                             f"{self.n_critics}")
        for name in ("action_noise", "target_noise", "target_noise_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class DDPGConfig(TD3Config):
    """Deep deterministic policy gradient (Lillicrap et al. 2016): TD3 with one critic, no
    target smoothing and no delay. Defaults as SB3's DDPG (Adam lr 1e-3 for actor and
    critic, tau 0.005, batch 256, 256-256 networks, Gaussian noise 0.1) rather than the
    paper's (lr 1e-4/1e-3, tau 0.001, batch 64, Ornstein-Uhlenbeck noise, 400-300)."""

    policy_delay: int = field(default=1, metadata={"help": "critic updates per actor and target update"})
    target_noise: float = field(default=0.0, metadata={"help": "std of the target policy smoothing noise"})
    target_noise_clip: float = field(default=0.0, metadata={"help": "clip of the target policy smoothing noise"})
    n_critics: int = field(default=1, metadata={"help": "critics; targets take the smallest"})


@dataclass(frozen=True)
class SACConfig(_OffPolicyFields):
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
        _in_unit_interval(self, "tau")
        _positive(self, "initial_alpha")


ALGO_CONFIGS: dict[str, type] = {
    "a3c": A3CConfig,
    "one-step-q": OneStepConfig,
    "one-step-sarsa": OneStepConfig,
    "n-step-q": NStepQConfig,
    "a2c": A2CConfig,
    "ppo": PPOConfig,
    "reinforce": ReinforceConfig,
    "dqn": DQNConfig,
    "ddpg": DDPGConfig,
    "td3": TD3Config,
    "sac": SACConfig,
}
"""Algorithm name (the ``--algo`` value) to its config class."""

MUJOCO_IDS = tuple(f"{name}-v*" for name in (
    "Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum", "InvertedPendulum",
    "Pusher", "Reacher", "Swimmer", "Walker2d"))
"""Gymnasium's MuJoCo tasks (``pip install -e ".[mujoco]"``), as preset patterns."""

BOX2D_CONTINUOUS_IDS = ("LunarLanderContinuous-v*", "BipedalWalker-v*", "BipedalWalkerHardcore-v*")
"""Gymnasium's continuous-action Box2D tasks (``pip install -e ".[box2d]"``)."""

PPO_CONTINUOUS: dict[str, Any] = {
    "envs_per_actor": 1, "unroll_length": 1024, "minibatch_size": 64, "epochs": 10, "lr": 3e-4, "lr_anneal": True,
    "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "value_clip": 0.2, "entropy_coef": 0.0,
    "normalize_obs": True, "normalize_reward": True,
}
"""CleanRL's ``ppo_continuous_action.py`` settings, with its one environment's 2048-step
rollouts split over the default 2 actors."""

RMSPROP_PIXELS: dict[str, Any] = {"rms_eps_inside": True, "optim_eps": 0.1}
"""RMSProp as Mnih et al. 2016 write it, ``theta -= lr * grad / sqrt(g + 0.1)``: the CNN
torsos' setting (see ``PRESETS``)."""

PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # CartPole-v1: without the entropy bonus the policy becomes deterministic enough to
    # hold 500 steps: all seeds reach 475 in 70k-160k steps, where beta = 0.01 plateaus
    # near 400.
    ("a3c", "CartPole-v1"): {"entropy_coef": 0.0},
    # CartPole-v1, value-based: the paper's Atari settings (I_target 10k steps, epsilon
    # annealed over 1M steps) barely start learning within 1M steps. A target refreshed
    # every 100 steps, epsilon annealed over 20k steps, and Adam with lr 1e-3 (one-step
    # Sarsa: 5e-4; with 1e-3 it solved only as the rate neared 0) annealed linearly to 0
    # at --total-steps (as the paper anneals its learning rates) solve it for every seed
    # we tried with 2 workers and --total-steps 600000. A 64-64 torso: a
    # 256-256 one learned no better and, as every worker rewrites the shared weights and
    # Adam statistics every few steps, scaled from 1 to 2 workers only 1.4-1.7x (64-64:
    # 1.9x). A worker that draws the paper's final epsilon 0.5 plays ~100-step episodes
    # however good its greedy policy (measured: 101 with a solved policy), so the mean
    # training return could never reach 475; 0.05 takes its place.
    **{
        (algo, "CartPole-v1"): {
            "optimizer": "adam", "lr": lr, "lr_anneal": True, "target_update": 100, "hidden_sizes": (64, 64),
            "epsilon_steps": 20_000, "final_epsilons": (0.1, 0.01, 0.05),
        }
        for algo, lr in (("one-step-q", 1e-3), ("one-step-sarsa", 5e-4), ("n-step-q", 1e-3))
    },
    # CartPole-v1, batched learner: rl-baselines3-zoo's hyperparameters (8 environments:
    # 4 per actor with the default 2 actors on 2 cores). PPO's learning rate and clip
    # anneal to 0 at --total-steps (the zoo's lin_1e-3 / lin_0.2 over 100k steps).
    ("a2c", "CartPole-v1"): {"entropy_coef": 0.0, "envs_per_actor": 4},
    ("ppo", "CartPole-v1"): {
        "envs_per_actor": 4, "unroll_length": 32, "minibatch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "epochs": 20, "entropy_coef": 0.0, "lr": 1e-3, "lr_anneal": True, "clip_range": 0.2, "clip_anneal": True,
    },
    # Pixels. A3C on Atari: the paper's t_max 5 (Mnih et al. 2016, Section 8); with a CNN
    # both heads share its torso by default, as in the paper. On MinAtar the general
    # t_max 20 stays: on Breakout-v1 (2 workers, seed 0) t_max 5 was still near a mean
    # return of 6 at 640k env steps (lr 7e-4; 4.8 at 560k with lr 2.5e-4), and t_max 20
    # brings all three seeds of benchmarks/minatar.py to 10 within 785k.
    # RMSProp on pixels divides by sqrt(g + 0.1), the paper's form (ChainerRL's A3C, which
    # reproduced its Atari scores, uses eps 0.1 too): with torch's sqrt(g) + 1e-5 every
    # weight moves by about lr per update however small its gradient, and a unit of the
    # 2592-input fully connected layer, all of whose inputs are >= 0, shifts its
    # pre-activation by ~lr * sum(inputs) at once: within 6k agent steps on Pong every unit
    # was dead (benchmarks/results/torso_health.md).
    ("a3c", "ALE/*"): {"t_max": 5, "lstm_size": 256, **RMSPROP_PIXELS},
    **{(algo, "ALE/*"): RMSPROP_PIXELS for algo in ("one-step-q", "one-step-sarsa", "n-step-q")},
    # A2C on Atari: rl-baselines3-zoo's (16 environments: 8 per actor with 2 actors;
    # value coefficient 0.25), with the RMSProp of pixels above.
    ("a2c", "ALE/*"): {"envs_per_actor": 8, "value_coef": 0.25, "lstm_size": 256, **RMSPROP_PIXELS},
    # PPO on Atari: CleanRL's ppo_atari.py (8 environments, 128-step rollouts, 4 epochs of
    # 4 minibatches, clip 0.1 also on the value, lr 2.5e-4 annealed to 0).
    ("ppo", "ALE/*"): {"envs_per_actor": 4, "unroll_length": 128, "minibatch_size": 256, "epochs": 4,
                       "clip_range": 0.1, "value_clip": 0.1, "lr_anneal": True, "lstm_size": 256},
    ("ppo", "MinAtar/*"): {"envs_per_actor": 4, "unroll_length": 128, "minibatch_size": 256, "epochs": 4,
                           "lr_anneal": True},
    # Continuous actions (Gaussian policies). PPO: CleanRL's ppo_continuous_action.py
    # (2048-step batches: 1024 steps in each environment of the default 2 actors; 10
    # epochs of 64-sample minibatches; lr 3e-4 annealed to 0; clip 0.2 also on the value;
    # no entropy bonus; observations normalised and rewards scaled, clipped at 10).
    **{("ppo", pattern): PPO_CONTINUOUS for pattern in MUJOCO_IDS + BOX2D_CONTINUOUS_IDS},
    # Pendulum-v1: rl-baselines3-zoo's (4 environments x 1024 steps, discount 0.9, lr 1e-3,
    # 10 epochs of 64, no normalisation, no value clipping; here without its gSDE and with
    # the rate annealed): seeds 0-3 reach -250 in 64k-74k env steps (--serial), where
    # CleanRL's MuJoCo settings with normalisation left seed 0 near -580 at 300k.
    ("ppo", "Pendulum-v1"): {**PPO_CONTINUOUS, "envs_per_actor": 2, "gamma": 0.9, "lr": 1e-3, "value_clip": None,
                             "normalize_obs": False, "normalize_reward": False},
    # A2C: the same normalisation, no entropy bonus.
    **{("a2c", pattern): {"normalize_obs": True, "normalize_reward": True, "entropy_coef": 0.0}
       for pattern in MUJOCO_IDS + BOX2D_CONTINUOUS_IDS + ("Pendulum-v1",)},
    # A3C: the paper's continuous-control entropy cost 1e-4 (Mnih et al. 2016, supplementary
    # Section 9) and its softplus variance (the default --gaussian-std).
    **{("a3c", pattern): {"entropy_coef": 1e-4} for pattern in MUJOCO_IDS + BOX2D_CONTINUOUS_IDS},
    # Pendulum-v1 with A3C: rewards (-16 to 0 per step) scaled by 0.1, discount 0.9, t_max
    # 10. With the general t_max 20 and unscaled rewards the mean return was still below
    # -1,000 after 1M env steps; t_max 5 learned nothing in 400k (seeds 0, 1).
    ("a3c", "Pendulum-v1"): {"entropy_coef": 1e-4, "gamma": 0.9, "reward_scale": 0.1, "t_max": 10},
    # The partially observed CartPole (asyncrl/CartPoleNoVelocity-v1), for recurrent
    # policies. A3C: rewards scaled by 0.1, no entropy bonus, learning rate 3e-4 annealed
    # to 0 at --total-steps. With the general defaults A3C --lstm stayed near 50-110 in 1M
    # env steps; scaling alone plateaued near 280 (the value loss of the shared core
    # otherwise swamps the policy's gradient); with the annealing too (lr 7e-4), 2 of 3
    # seeds reached 475 within 1M and the third peaked at 427, its mean return swinging by
    # 100-200 between checkpoints; lr 3e-4 brought that seed to 475 at 701k. The same
    # preset applies to feed-forward A3C, for a fair comparison.
    ("a3c", "asyncrl/CartPoleNoVelocity-v1"): {"reward_scale": 0.1, "entropy_coef": 0.0, "lr": 3e-4,
                                               "lr_anneal": True},
    # PPO there: the CartPole-v1 preset (rl-baselines3-zoo's, as its RecurrentPPO setting for
    # this task) with an LSTM of 64, observations and rewards normalised (its VecNormalize),
    # and a value coefficient of 0.1 (the shared core again): seed 0 reached 475 at 409k env
    # steps; with 0.5, 393 at 500k.
    ("ppo", "asyncrl/CartPoleNoVelocity-v1"): {
        "envs_per_actor": 4, "unroll_length": 32, "minibatch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "epochs": 20, "entropy_coef": 0.0, "lr": 1e-3, "lr_anneal": True, "clip_range": 0.2, "clip_anneal": True,
        "lstm_size": 64, "normalize_obs": True, "normalize_reward": True, "value_coef": 0.1,
    },
    # Off-policy learners: rl-baselines3-zoo's hyperparameters. SAC on Pendulum-v1: lr 1e-3.
    ("sac", "Pendulum-v1"): {"lr": 1e-3},
    # TD3 and DDPG on Pendulum-v1: discount 0.98, replay 200k, 10k random steps first,
    # Gaussian exploration noise 0.1, lr 1e-3, 400-300 networks.
    **{(algo, "Pendulum-v1"): {"gamma": 0.98, "replay_size": 200_000, "learning_starts": 10_000,
                               "action_noise": 0.1, "lr": 1e-3, "hidden_sizes": (400, 300)}
       for algo in ("td3", "ddpg")},
    # DQN on CartPole-v1: the zoo's replay (100k), learning start (1k steps), replay ratio
    # (0.5), epsilon (to 0.04 over 8k steps), 256-256 network and gradient clip, with a
    # smaller learning rate (5e-4), a larger batch (128), the target refreshed every 250
    # updates (500 env steps) and 3-step returns. With the zoo's own values (lr 2.3e-3,
    # batch 64, target every 10 env steps) the Q-values diverged (1e11) and the mean return
    # stayed near 9 for 150k env steps (seed 0; SB3's DQN with them peaked at 192); with the
    # target every 128 updates it peaked at 446 and collapsed; lr 5e-4, batch 128, target
    # 250 and double DQN reached 475 on seeds 0 and 1 (110k, 92k) but plateaued near 400 on
    # seed 2; 3-step returns brought seeds 0-3 to 475 in 61k-79k env steps (double DQN or
    # not: seed 2, 65k and 67k).
    # DQN on Atari: the DQN paper's own network (conv 32-64-64, fc 512), not the A3C paper's.
    ("dqn", "ALE/*"): {"network": "nature2015"},
    ("dqn", "CartPole-v1"): {"lr": 5e-4, "batch_size": 128, "replay_size": 100_000, "learning_starts": 1_000,
                             "replay_ratio": 0.5, "target_update": 250, "n_step": 3, "epsilon_steps": 8_000,
                             "final_epsilon": 0.04, "hidden_sizes": (256, 256), "optim_eps": 1e-8},
}
"""Per-(algorithm, environment) defaults that replace the algorithm's general ones; an
environment may be a pattern (``ALE/*``), used where no exact id matches. A flag given on
the command line always wins over a preset."""


def preset(algo: str, env: str) -> dict[str, Any]:
    """The preset for ``(algo, env)``: the exact id's, else the first matching pattern's, else ``{}``."""
    if (algo, env) in PRESETS:
        return PRESETS[(algo, env)]
    for (name, pattern), values in PRESETS.items():
        if name == algo and fnmatch.fnmatchcase(env, pattern):
            return values
    return {}


def algo_config(algo: str, env: str, **overrides: Any) -> Any:
    """The config of ``algo`` for ``env``: class defaults, then ``PRESETS``, then ``overrides``.

    Raises:
        ValueError: if ``algo`` is unknown or a value is out of range.
    """
    if algo not in ALGO_CONFIGS:
        raise ValueError(f"--algo must be one of {', '.join(sorted(ALGO_CONFIGS))}, got {algo!r}")
    values = {**preset(algo, env), **overrides}
    for f in dataclasses.fields(ALGO_CONFIGS[algo]):
        if f.name in values and str(f.type).startswith("tuple"):
            values[f.name] = tuple(values[f.name])  # lists from JSON or argparse
    return ALGO_CONFIGS[algo](**values)


@dataclass(frozen=True)
class Config:
    """A full run: the common settings and the chosen algorithm's."""

    run: RunConfig
    algo: Any

    def __post_init__(self) -> None:
        if hasattr(self.algo, "rollouts_per_batch"):
            self.algo.rollouts_per_batch(self.run.workers)  # raises ValueError if they do not fit

    def to_dict(self) -> dict[str, Any]:
        return {"run": dataclasses.asdict(self.run), "algo": dataclasses.asdict(self.algo)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Rebuild a config saved by ``to_dict``.

        Raises:
            ValueError: if the algorithm is unknown or a field is missing or invalid.
        """
        try:
            run = RunConfig(**data["run"])
            return cls(run=run, algo=algo_config(run.algo, run.env, **data["algo"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed config: {exc}") from None


# ---------------------------------------------------------------------------
# Command line: flags generated from the dataclass fields above.


class CliError(Exception):
    """Bad command-line input; the CLI prints it on one line and exits with code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise CliError(f"{message} (see --help)")


def _optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    return float(text)


def _add_fields(group: argparse._ArgumentGroup, cls: type) -> None:
    """One flag per dataclass field. Defaults are SUPPRESSed so that the parsed
    namespace holds only the flags actually given (presets must not override them)."""
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        if "(default:" not in help_text and "; default:" not in help_text:  # a help that says its own default
            help_text += f" (default: {_show_default(f.default)})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        annotation = str(f.type)
        if annotation in ("bool", "bool | None"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif annotation.startswith("tuple"):
            element = float if "float" in annotation else int
            kwargs.update(type=element, nargs="+", metavar="X" if element is float else "N")
        elif annotation == "int":
            kwargs["type"] = int
        elif annotation == "float":
            kwargs["type"] = float
        elif annotation == "float | None":
            kwargs["type"] = _optional_float
        elif annotation == "str | None":
            kwargs["metavar"] = "DIR" if f.name.endswith("dir") else f.name.upper()
        if f.name == "algo":
            kwargs["choices"] = sorted(ALGO_CONFIGS)
        group.add_argument(_flag(f.name), **kwargs)
        if f.name == "sync":
            group.add_argument("--async", dest="sync", action="store_false", default=argparse.SUPPRESS,
                               help="the same as --no-sync")


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def build_parser(algo: str = "a3c") -> argparse.ArgumentParser:
    """The ``asyncrl.run`` parser for one algorithm's flags plus the run's."""
    presets = "; ".join(
        f"{env}: " + " ".join(_preset_flag(k, v) for k, v in values.items())
        for (name, env), values in PRESETS.items() if name == algo
    )
    parser = _Parser(
        prog="python -m asyncrl.run",
        description="Train an agent with asynchronous actor-learner processes on a shared model.",
        epilog=(f"Presets for --algo {algo} (flags given on the command line win): {presets or 'none'}. "
                "Flags of other algorithms: python -m asyncrl.run --algo ALGO --help"),
    )
    _add_fields(parser.add_argument_group("run"), RunConfig)
    _add_fields(parser.add_argument_group(f"{algo} (--algo {algo})"), ALGO_CONFIGS[algo])
    return parser


def _preset_flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + name.replace("_", "-")
    return f"{_flag(name)} {_show_default(value)}"


RESUME_OVERRIDES = frozenset({
    "total_steps", "max_seconds", "target_return", "log_interval", "checkpoint_interval",
    "on_worker_failure", "max_restarts", "progress", "start_method", "resume", "backend", "address",
})
"""Flags that may change when a run is resumed; every other value comes from the run."""


def parse_args(argv: list[str] | None) -> Config:
    """Parse command-line flags into a validated ``Config``.

    Algorithm fields take, in order of precedence: the flag, the preset for the
    (algorithm, environment) pair in ``PRESETS``, the dataclass default. With
    ``--resume RUN_DIR`` every field comes from ``RUN_DIR/config.json`` except the
    ``RESUME_OVERRIDES`` given on the command line.

    Raises:
        CliError: on an unknown flag, a malformed value or a value out of range, a
            ``--resume`` folder without a readable config, or a flag that cannot change
            on resume.
    """
    pre = _Parser(add_help=False)
    pre.add_argument("--resume", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.resume is not None:
        return _resume_config(known.resume, argv)
    return _parse_fresh(argv)


def _resume_config(run_dir: str, argv: list[str] | None) -> Config:
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            saved = Config.from_dict(json.load(f))
    except (OSError, ValueError) as exc:
        raise CliError(f"--resume {run_dir}: cannot read {path}: {exc}") from None
    given = vars(build_parser(saved.run.algo).parse_args(argv))
    fixed = sorted(set(given) - RESUME_OVERRIDES)
    if fixed:
        raise CliError(f"--resume continues the run's own config; {', '.join(map(_flag, fixed))} cannot change "
                       f"(only {', '.join(sorted(map(_flag, RESUME_OVERRIDES - {'resume'})))})")
    try:
        run = dataclasses.replace(saved.run, **given, run_dir=run_dir)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        return Config(run=run, algo=saved.algo)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _parse_fresh(argv: list[str] | None) -> Config:
    pre = _Parser(add_help=False)
    pre.add_argument("--algo", default="a3c")
    known, _ = pre.parse_known_args(argv)
    if known.algo not in ALGO_CONFIGS:
        raise CliError(f"--algo must be one of {', '.join(sorted(ALGO_CONFIGS))}, got {known.algo!r}")
    given = vars(build_parser(known.algo).parse_args(argv))
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        run = RunConfig(**{k: v for k, v in given.items() if k in run_fields})
        algo = algo_config(run.algo, run.env, **{k: v for k, v in given.items() if k not in run_fields})
        return Config(run=run, algo=algo)
    except ValueError as exc:
        raise CliError(str(exc)) from None
