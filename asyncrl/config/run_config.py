"""The run's configuration: what to train, for how long, where to write it."""

from __future__ import annotations

import math
import os
from dataclasses import field

from asyncrl.backends import NAMES as BACKEND_NAMES
from asyncrl.config.fields import check_choices, configclass, in_unit_interval, positive


@configclass
class RunConfig:
    """What to train, for how long, and where to write it: common to all algorithms."""

    algo: str = field(
        default="a3c", metadata={"help": "algorithm (asyncrl.registry; --algo ALGO --help lists its flags)"}
    )
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
        metadata={
            "help": "episodes (over all workers) behind the mean return of metrics.csv, the progress "
            "display and --target-return"
        },
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
        metadata={
            "help": "continue the run in this folder from its checkpoint, with its config; only "
            "the run-length, logging and failure flags may change"
        },
    )
    log_interval: float = field(default=1.0, metadata={"help": "seconds between rows of metrics.csv"})
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
    policy_lag: int = field(
        default=0,
        metadata={
            "help": "with --serial: every actor-learner pulls theta as it was K updates ago (a ring of "
            "snapshots; theta^- unaffected), to study the staleness of K real workers deterministically "
            "(algorithms that pull a local copy: asyncrl.registry AlgoSpec.local_copy)"
        },
    )
    on_worker_failure: str = field(
        default="restart",
        metadata={
            "choices": ("restart", "abort"),
            "help": "when an actor-learner raises or dies: 'restart' it with a fresh environment "
            "and seed (up to --max-restarts times in the run), or 'abort' the run "
            "(with a final checkpoint)",
        },
    )
    max_restarts: int = field(default=3, metadata={"help": "worker restarts allowed in the whole run before it aborts"})
    start_method: str = field(
        default="fork",
        metadata={
            "choices": ("fork", "forkserver", "spawn"),
            "help": "how worker processes start: 'fork' (instant; the trainer forks before it "
            "starts any thread), 'forkserver' or 'spawn' (each starts a fresh interpreter, "
            "seconds per worker)",
        },
    )
    backend: str = field(
        default="shm",
        metadata={
            "choices": BACKEND_NAMES,
            "help": "where the shared state lives: 'shm' (shared memory, one machine) or 'ray' (a Ray "
            "parameter server, or the batched learner, as a Ray actor; actor-learners or actors on "
            "any node of a Ray cluster; pip install -e '.[ray]')",
        },
    )
    address: str | None = field(
        default=None,
        metadata={
            "help": "--backend ray: the cluster to join ('auto': the one `ray start` made on this node, "
            "or HOST:PORT of its head); default: start a local Ray instance for this run"
        },
    )
    pin_workers: bool = field(
        default=False,
        metadata={
            "help": "pin worker i (the learner: i = --workers) to usable core i mod cores, with psutil's cpu_affinity"
        },
    )
    repeat_action_probability: float = field(
        default=0.0,
        metadata={
            "help": "Atari: probability that ALE repeats the previous action (sticky actions); 0 as in "
            "the paper and the NoFrameskip-v4 ids (ALE v5's own default is 0.25)"
        },
    )
    terminal_on_life_loss: bool = field(
        default=False,
        metadata={
            "help": "Atari: a lost life ends the learner's episode and the game goes on (DQN's episodic "
            "life); episode returns and evaluate stay whole-game scores"
        },
    )
    progress: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "rich", "plain", "none"),
            "help": "live display: 'rich' (a progress bar), 'plain' (a line every 10 s), 'none', "
            "or 'auto' (rich on a terminal, plain otherwise)",
        },
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.policy_lag < 0:
            raise ValueError(f"--policy-lag must be >= 0, got {self.policy_lag}")
        if self.policy_lag and not self.serial:
            raise ValueError("--policy-lag sets the staleness of --serial runs; worker processes have their own")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        positive(self, "total_steps", "log_interval", "checkpoint_interval", "return_window")
        if self.max_seconds is not None:
            positive(self, "max_seconds")
        if self.target_return is not None and math.isnan(self.target_return):
            raise ValueError("--target-return must be a number or 'inf', got nan")
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.address is not None and self.backend != "ray":
            raise ValueError("--address names a Ray cluster: it needs --backend ray")
        if self.backend == "ray" and self.serial:
            raise ValueError("--serial runs every actor-learner in this process: it takes --backend shm")
        in_unit_interval(self, "repeat_action_probability")
