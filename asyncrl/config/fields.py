"""Field groups: the flags every algorithm of a family has, with their help and checks.

An algorithm's config class subclasses one group (``A3CConfig(ActorCriticFields)``) and is
decorated with ``configclass``. A subclass changes a default in one line, ``lr: float = 1e-3``,
and inherits the field's help; every field is a flag of ``python -m asyncrl.run``, typed from
its annotation (``asyncrl.config.cli``). Validation happens in ``__post_init__`` so that a bad
value is rejected before any process starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from typing import Any, TypeVar, dataclass_transform

from asyncrl.networks import NETWORKS

T = TypeVar("T")


def flag(name: str) -> str:
    """The command-line flag of field ``name``: ``t_max`` -> ``--t-max``."""
    return "--" + name.replace("_", "-")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:  # noqa: A002 - argparse's word
    """A config field with a default and its ``--help`` text (units and source); a string
    field may name its ``choices`` (the CLI offers them, ``check_choices`` enforces them)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


def envs_per_actor_option() -> Any:
    """The Hogwild actor-learners' ``--envs-per-actor`` field (``asyncrl.algos.segments``)."""
    return option(
        1,
        "k: environments each actor-learner steps in lockstep; it acts with one batched forward pass "
        "and updates on the t_max x k batch (PAAC's layout). 1 is the paper's: a segment also ends "
        "where its episode ends",
    )


def hogwild_sync_option() -> Any:
    """The Hogwild methods' ``--sync`` field (``asyncrl.sync_round``)."""
    return option(
        False,
        "synchronous twin: each round every actor-learner computes its gradient on the same theta (and "
        "theta^-), and the mean of the round's gradients is applied once (synchronous data-parallel A3C, "
        "Baselines' A2C); --async (the default) is the paper's lock-free Hogwild update",
    )


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def configclass(cls: type[T]) -> type[T]:
    """``dataclass(frozen=True)`` whose fields inherit the help (and choices) of the same
    field of a base class, so that ``lr: float = 1e-3`` in a subclass is a complete flag.

    Raises:
        TypeError: if a field has no help text, here or in any base class.
    """
    cls = dataclass(frozen=True)(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        for base in cls.__mro__[1:]:
            inherited = getattr(base, "__dataclass_fields__", {}).get(f.name)
            if inherited is f:  # not redeclared here: the base's field, merged when the base was made
                break
            if inherited is not None:  # help, choices: the base's unless given here
                f.metadata = types.MappingProxyType({**inherited.metadata, **f.metadata})
                break
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with option(default, help)")
    return cls


def check_choices(config: Any) -> None:
    """Raises ValueError if a field declared with ``choices`` holds another value."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value not in choices:
            raise ValueError(f"{flag(f.name)} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")


def positive(config: Any, *names: str) -> None:
    """Raises ValueError unless every field in ``names`` is > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{flag(name)} must be > 0, got {value}")


def in_unit_interval(config: Any, *names: str) -> None:
    """Raises ValueError unless every field in ``names`` is in [0, 1]."""
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag(name)} must be in [0, 1], got {value}")


@configclass
class LearnerFields:
    """Fields every algorithm has: optimizer, discount, network."""

    lr: float = field(default=7e-4, metadata={"help": "learning rate of the shared optimizer"})
    lr_anneal: bool = field(
        default=False, metadata={"help": "anneal the learning rate linearly to 0 at T = --total-steps"}
    )
    gamma: float = field(default=0.99, metadata={"help": "discount factor"})
    max_grad_norm: float = field(default=40.0, metadata={"help": "clip each update's gradient to this global L2 norm"})
    optimizer: str = option(
        "rmsprop", "shared optimizer: 'rmsprop' or 'adam' (statistics shared)", choices=("rmsprop", "adam")
    )
    rms_alpha: float = field(default=0.99, metadata={"help": "RMSProp decay alpha"})
    optim_eps: float = field(default=1e-5, metadata={"help": "epsilon of RMSProp / Adam"})
    rms_eps_inside: bool = field(
        default=False,
        metadata={
            "help": "RMSProp divides by sqrt(g + eps), as Mnih et al. 2016 write it (eps 0.1 in the Atari "
            "presets), instead of torch's sqrt(g) + eps"
        },
    )
    rms_init: float = field(
        default=0.0,
        metadata={
            "help": "initial value of RMSProp's squared-gradient average: 0 as torch, 1 as TensorFlow "
            "(OpenAI Baselines' A2C; SB3's RMSpropTFLike), which damps the first updates"
        },
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "widths of the MLP torso's hidden layers"}
    )
    network: str = field(
        default="auto",
        metadata={
            "choices": NETWORKS,
            "help": "torso: 'mlp' (flat observations), 'nature' (the A3C paper's Atari CNN: conv 16 8x8/4, "
            "conv 32 4x4/2, fc 256), 'nature2015' (the DQN paper's: conv 32 8x8/4, conv 64 4x4/2, "
            "conv 64 3x3/1, fc 512; DQN's Atari default), 'minatar' (Young & Tian 2019: conv 16 3x3/1, "
            "fc 128), or "
            "'auto' (mlp for vectors, minatar for images under 36x36, nature above)",
        },
    )

    def __post_init__(self) -> None:
        for name in ("lr", "rms_init"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        positive(self, "max_grad_norm", "optim_eps")
        in_unit_interval(self, "gamma", "rms_alpha")
        check_choices(self)
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden-sizes must be positive widths, got {list(self.hidden_sizes)}")

    def check_run(self, run: Any) -> None:
        """Check the fields against the run's (a ``RunConfig``: ``workers``, ...).

        Raises:
            ValueError: if they do not fit together (none here; a family may add checks).
        """


@configclass
class ActorCriticFields(LearnerFields):
    """Fields of the actor-critics (A3C, A2C, PPO): the loss weights, the torso, the
    Gaussian policy of continuous actions and the LSTM core."""

    entropy_coef: float = field(default=0.01, metadata={"help": "beta: weight of the entropy bonus"})
    value_coef: float = field(default=0.5, metadata={"help": "weight of the value loss"})
    normalize_advantages: bool = field(
        default=False,
        metadata={
            "help": "normalise the policy-gradient advantages to mean 0, std 1 over each update's batch "
            "(PPO implementations' habit; the paper's A3C does not)"
        },
    )
    shared_torso: bool | None = field(
        default=None,
        metadata={
            "help": "policy and value heads share one torso (the paper's Atari network), or one torso "
            "each (default: shared for a CNN or with --lstm, one each for an MLP)"
        },
    )
    gaussian_std: str = field(
        default="softplus",
        metadata={
            "choices": ("softplus", "parameter"),
            "help": "continuous actions: the Gaussian's scale, 'softplus' (sigma^2 = softplus(linear), "
            "state-dependent; the paper's) or 'parameter' (a learned state-independent log sigma, "
            "initially 0; CleanRL's and SB3's)",
        },
    )
    lstm: bool = field(
        default=False,
        metadata={
            "help": "an LSTM core between the (shared) torso and the heads; its state is carried across "
            "segments and zeroed where an episode ends"
        },
    )
    lstm_size: int = field(
        default=128, metadata={"help": "width of the LSTM core (the paper: 256 on Atari, 128 on MuJoCo)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("entropy_coef", "value_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.lstm_size < 1:
            raise ValueError(f"--lstm-size must be >= 1, got {self.lstm_size}")
        if self.lstm and self.shared_torso is False:
            raise ValueError("--lstm feeds both heads from one core: it cannot be combined with --no-shared-torso")

    @property
    def core_size(self) -> int:
        """Width of the LSTM core, 0 without ``--lstm``."""
        return self.lstm_size if self.lstm else 0


@configclass
class ValueBasedFields(LearnerFields):
    """Fields of the asynchronous value-based methods: target network and epsilon-greedy."""

    lr: float = 1e-3
    target_update: int = field(
        default=10_000,
        metadata={
            "help": "I_target: refresh the target network each time T crosses a multiple of "
            "this many global env steps (paper: 40,000 Atari frames = 10,000 steps)"
        },
    )
    epsilon_steps: int = field(
        default=1_000_000,
        metadata={
            "help": "global env steps over which each worker's epsilon anneals linearly from 1 "
            "to its final value (paper: 4M frames = 1M steps)"
        },
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
        if (
            len(probs) != len(self.final_epsilons)
            or any(p < 0 for p in probs)
            or not math.isclose(sum(probs), 1.0, abs_tol=1e-6)
        ):
            raise ValueError(
                f"--final-epsilon-probs must be {len(self.final_epsilons)} non-negative numbers summing "
                f"to 1, got {list(probs)}"
            )


@configclass
class BatchedFields(ActorCriticFields):
    """Fields of the batched learner: actor processes feed one learner process through
    shared-memory rollout slots (``asyncrl.storage``)."""

    max_grad_norm: float = 0.5
    envs_per_actor: int = field(
        default=4,
        metadata={
            "help": "environments each actor process steps; the learner's batch holds "
            "--workers x --envs-per-actor rollouts unless --batch-rollouts says"
        },
    )
    unroll_length: int = field(default=5, metadata={"help": "T: env steps per rollout per environment"})
    batch_rollouts: int = field(
        default=0,
        metadata={
            "help": "B: rollouts per learner batch (0: one from every environment, "
            "--workers x --envs-per-actor; --sync needs exactly that)"
        },
    )
    sync: bool = field(
        default=True,
        metadata={
            "help": "synchronous: actors wait for the new policy after each batch (classic A2C/PPO); "
            "--async: actors never wait, and the learner trains on whatever rollouts are full"
        },
    )
    correction: str = field(
        default="none",
        metadata={
            "choices": ("none", "vtrace"),
            "help": "off-policy correction of stale rollouts: 'none' (use them as they are) or "
            "'vtrace' (V-trace targets and advantages, rho-bar = c-bar = 1; Espeholt et al. 2018)",
        },
    )
    learner_device: str = field(
        default="cpu", metadata={"help": "device of the learner process: 'cpu', 'cuda' or 'cuda:N'"}
    )
    gae_lambda: float = field(default=1.0, metadata={"help": "GAE lambda (1: n-step returns; Schulman et al. 2016)"})
    gaussian_std: str = "parameter"
    normalize_obs: bool = field(
        default=False,
        metadata={
            "help": "normalise observations by running mean and std (Gymnasium's NormalizeObservation; "
            "one set of statistics, kept by the learner and published with the weights)"
        },
    )
    normalize_reward: bool = field(
        default=False,
        metadata={
            "help": "divide rewards by the running std of the discounted return (Gymnasium's "
            "NormalizeReward; statistics as --normalize-obs)"
        },
    )
    obs_clip: float = field(default=10.0, metadata={"help": "clip normalised observations to +-this"})
    reward_clip: float = field(default=10.0, metadata={"help": "clip scaled rewards to +-this"})

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "obs_clip", "reward_clip")
        for name in ("envs_per_actor", "unroll_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.batch_rollouts < 0:
            raise ValueError(f"--batch-rollouts must be >= 0, got {self.batch_rollouts}")
        device = self.learner_device
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"--learner-device must be cpu, cuda or cuda:N, got {device!r}")
        in_unit_interval(self, "gae_lambda")

    def check_run(self, run: Any) -> None:
        """Raises ValueError if ``--batch-rollouts`` does not fit ``run.workers`` (``rollouts_per_batch``)."""
        self.rollouts_per_batch(run.workers)

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
            raise ValueError(
                f"--batch-rollouts must be a multiple of --envs-per-actor ({self.envs_per_actor}): "
                f"a batch takes whole actor rollouts, got {self.batch_rollouts}"
            )
        if self.sync and self.batch_rollouts != envs:
            raise ValueError(
                f"--sync trains on one rollout from every environment: --batch-rollouts must be 0 "
                f"or {envs} (--workers x --envs-per-actor), got {self.batch_rollouts}"
            )
        return self.batch_rollouts


@configclass
class OffPolicyFields(LearnerFields):
    """Fields of the off-policy learners: actor processes fill one shared-memory replay
    (``asyncrl.replay``), one learner process samples it."""

    optimizer: str = option("adam", "optimizer: 'rmsprop' or 'adam'", choices=("rmsprop", "adam"))
    optim_eps: float = 1e-8
    max_grad_norm: float = field(
        default=math.inf, metadata={"help": "clip each update's gradient to this global L2 norm (inf: no clip)"}
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "widths of the MLP hidden layers (ReLU) of every network"}
    )
    replay_size: int = field(default=1_000_000, metadata={"help": "transitions the replay holds, over all actors"})
    batch_size: int = field(default=256, metadata={"help": "transitions per learner update"})
    learning_starts: int = field(
        default=100,
        metadata={
            "help": "env steps (all actors) in the replay before the first update; actors act "
            "uniformly at random until then (continuous actions)"
        },
    )
    replay_ratio: float = field(
        default=1.0, metadata={"help": "learner updates per env step (all actors), once --learning-starts is reached"}
    )
    rate_tolerance: int = field(
        default=16,
        metadata={
            "help": "updates the learner may fall behind --replay-ratio before the actors wait "
            "(Reverb's error_buffer); --sync: 0"
        },
    )
    sync: bool = field(
        default=False,
        metadata={
            "help": "lockstep: every insert waits for the updates it makes due, and the actors act with the "
            "policy after them (exactly reproducible with one actor); --async: --rate-tolerance"
        },
    )
    n_step: int = field(default=1, metadata={"help": "n: transitions carry n-step discounted rewards"})

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "replay_ratio")
        for name in ("replay_size", "batch_size", "n_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "rate_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")

    @property
    def tolerance(self) -> int:
        """The rate limiter's tolerance: 0 with ``--sync``, else ``--rate-tolerance``."""
        return 0 if self.sync else self.rate_tolerance
