"""The off-policy learners' two halves, shared by DQN, DDPG, TD3 and SAC: actors that
fill one shared-memory replay, and the learner that samples it (Ape-X's layout, Horgan
et al. 2018).

Actor processes each step one environment with a local copy of the published policy
(refreshed whenever the learner publishes) and write every transition (n-step, with
``--n-step``) into their own segment of the ``asyncrl.replay.SharedReplay``. The learner
process samples uniform minibatches, runs the algorithm's update (``learn``) on its own
copy of the networks, and publishes the new weights with a new ``policy_version``. The
``asyncrl.replay.RateLimiter`` keeps the learner at ``--replay-ratio`` updates per env
step: the learner waits for transitions, the actors wait for the learner (beyond
``--rate-tolerance`` updates; ``--sync``: lockstep).

An algorithm module provides ``build_model(config, obs, action)``, a module whose
``optimized_parameters()`` are what the optimizer trains (not the target networks) and
whose ``acting`` submodule is all an actor needs; ``make_acting(model, config, worker_id,
counters)`` -> ``act(obs, rng, random) -> action`` (the action stored in the replay:
an int, or ``[D]`` float32 in ``[-1, 1]``); ``learn(cfg, model, optimizer, batch,
update, rng) -> metrics``; and ``greedy_action``.

The replay is not part of a checkpoint: a resumed run starts with an empty replay and
refills it (``--learning-starts`` transitions again before the learner resumes).
"""

from __future__ import annotations

import copy
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from asyncrl.algos.base import SharedState, WorkerStats
from asyncrl.algos.batched import (
    LEARNER_STALL_S,
    SLOT_WAIT_S,
    LearnerStalled,
    copy_pairs,
    make_learner_optimizer,
    optimizer_state_pairs,
)
from asyncrl.config import Config
from asyncrl.distributions import ActionSpec
from asyncrl.envs import game_over, game_score, start_worker_env
from asyncrl.networks import NetworkError, ObsSpec
from asyncrl.replay import RateLimiter, ReplayMemoryError, SharedReplay, transition_fields
from asyncrl.shared import GlobalCounters, clip_gradients, linear_lr, optimizer_for, share_model
from asyncrl.storage import POLL_MAX_S, POLL_MIN_S, PolicyStore

ACTOR_SEGMENT = 256
"""Env steps an actor takes per ``update`` call at most (between two statistics reports)."""

LEARNER_SLICE_S = 0.1
"""Seconds of updates the learner makes per ``update`` call at most."""


def make_shared(config: Config, obs: ObsSpec, action: ActionSpec | int, model: torch.nn.Module) -> SharedState:
    """The networks, their optimizer statistics (for checkpoints), the replay and the rate
    limiter, in shared memory; prints the replay's size in bytes (``prepare`` has checked
    that it fits in memory)."""
    a = config.algo
    import torch._dynamo  # noqa: F401  (torch.optim's first use imports it: once, before the fork)

    action = ActionSpec.of(action)
    replay = SharedReplay(
        a.replay_size, config.run.workers, transition_fields(obs.shape, obs.np_dtype, action.shape, action.np_dtype)
    )
    print(
        f"asyncrl.run: replay of {replay.capacity:,} transitions ({_human_bytes(replay.nbytes)} shared memory, "
        f"{config.run.workers} actor segments of {replay.segment:,})",
        file=sys.stderr,
        flush=True,
    )
    model = share_model(model)
    optimizer = optimizer_for(a, model.optimized_parameters())
    rate = RateLimiter(a.replay_ratio, a.learning_starts, a.tolerance)
    return SharedState(model=model, optimizer=optimizer, policy=PolicyStore(model), replay=replay, rate=rate)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class NStep:
    """Turns one environment's steps into n-step transitions (Sutton & Barto 2018, 7.1).

    ``push`` one step; it returns the transitions that became complete: the one that
    started ``n - 1`` steps ago, or, when the episode ends, every pending one, each with
    the discounted sum of the rewards to the end and the episode's last observation.
    """

    def __init__(self, n: int, gamma: float) -> None:
        self.n, self.gamma = n, gamma
        self.pending: deque[tuple[np.ndarray, Any, float]] = deque()

    def push(
        self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool
    ) -> list[dict[str, Any]]:
        self.pending.append((np.array(obs), action, float(reward)))  # (a copy: an env may reuse its buffer)
        out = []
        if terminated or truncated:
            while self.pending:
                out.append(self._pop(next_obs, terminated, truncated))
        elif len(self.pending) == self.n:
            out.append(self._pop(next_obs, False, False))
        return out

    def _pop(self, next_obs: np.ndarray, terminated: bool, truncated: bool) -> dict[str, Any]:
        ret = 0.0
        for k, (_, _, reward) in enumerate(self.pending):
            ret += self.gamma**k * reward
        obs, action, _ = self.pending.popleft()
        return {
            "obs": obs,
            "actions": action,
            "rewards": ret,
            "next_obs": next_obs,
            "terminated": terminated,
            "truncated": truncated,
            "steps": len(self.pending) + 1,
        }


class Actor:
    """An actor process's work: act in one environment with the published policy and
    write its transitions into the replay, at the pace the rate limiter allows.

    Args:
        worker_id: index of this actor, 0-based; its environment is seeded ``seed + worker_id``.
        config: the run's configuration.
        shared: from ``make_shared``.
        counters: the global step counter ``T``.
        make_acting: the algorithm's ``make_acting``.

    Raises:
        EnvError: if the environment cannot be made or has unsuitable spaces.
    """

    def __init__(
        self,
        worker_id: int,
        config: Config,
        shared: SharedState,
        counters: GlobalCounters,
        make_acting: Callable[..., Callable],
    ) -> None:
        a = config.algo
        self.worker_id = worker_id
        self.shared, self.counters = shared, counters
        self.env, self.obs, _ = start_worker_env(config.run, worker_id)
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.local = copy.deepcopy(shared.model.acting)  # process-local; refreshed from each publication
        self.local_params = list(self.local.state_dict().values())
        self.shared_params = list(shared.model.acting.state_dict().values())
        self.act = make_acting(self.local, config, worker_id, counters)
        self.action = shared.model.action_spec
        self.nstep = NStep(a.n_step, a.gamma)
        self.learning_starts = a.learning_starts
        self.total_steps = config.run.total_steps
        self.serial = config.run.serial
        self.version = -1
        self.stats = WorkerStats(counters)
        self._stall_since: float | None = None  # when the learner was last seen stuck, and at which update
        self._stall_updates = -1

    def _refresh_policy(self) -> bool:
        store = self.shared.policy
        if store.version != self.version:
            version = store.read(
                lambda: torch._foreach_copy_(self.local_params, self.shared_params),
                should_stop=lambda: self.counters.stop_requested,
            )
            if version is None:
                return False
            self.version = version
        return True

    def _wait_for_learner(self) -> bool:
        """Wait until the rate limiter lets this actor insert; False after ``SLOT_WAIT_S``
        (or at once in ``--serial`` mode, or on a stop).

        Raises:
            LearnerStalled: if the learner made no update for ``LEARNER_STALL_S`` while due.
        """
        replay, rate = self.shared.replay, self.shared.rate
        if rate.actor_may_insert(replay.inserted):
            return True
        if self.serial:
            return False
        if wait_until(
            lambda: rate.actor_may_insert(replay.inserted), SLOT_WAIT_S, lambda: self.counters.stop_requested
        ):
            return True
        self._check_stall(rate.updates)
        return False

    def _check_stall(self, updates: int) -> None:
        """Raise ``LearnerStalled`` once the learner's update count has stood still for
        ``LEARNER_STALL_S`` across this actor's waits."""
        now = time.monotonic()
        if self._stall_since is None or updates != self._stall_updates:
            self._stall_since, self._stall_updates = now, updates
        elif now - self._stall_since > LEARNER_STALL_S:
            raise LearnerStalled(
                f"actor {self.worker_id} waited {LEARNER_STALL_S:g} s for the learner, which made "
                f"no update (update {updates})"
            )

    def update(self) -> int:
        """Take up to ``ACTOR_SEGMENT`` env steps, each once the rate limiter allows it;
        returns env steps taken (0 if it had to wait throughout)."""
        replay, counters = self.shared.replay, self.counters
        steps = 0
        while steps < ACTOR_SEGMENT and counters.global_step < self.total_steps:
            if not self._wait_for_learner() or not self._refresh_policy():
                break
            random = replay.inserted < self.learning_starts
            action = self.act(self.obs, self.rng, random)
            env_action = action if self.action.discrete else self.action.rescale(action)
            next_obs, reward, terminated, truncated, info = self.env.step(env_action)
            for transition in self.nstep.push(self.obs, action, reward, next_obs, terminated, truncated):
                replay.add(self.worker_id, transition)
            self.stats.step(game_score(reward, info), game_over(terminated, truncated, info))
            self.obs = self.env.reset()[0] if terminated or truncated else next_obs
            counters.add(self.worker_id, 1, updates=0)  # T <- T + 1
            steps += 1  # (--serial: the next wait returns at once when it is the learner's turn)
        return steps

    def drain_stats(self) -> dict[str, Any]:
        return self.stats.drain()

    def close(self) -> None:
        self.env.close()


LearnFn = Callable[
    [Any, Any, torch.optim.Optimizer, dict[str, torch.Tensor], int, np.random.Generator], dict[str, float]
]
"""``learn(algo_config, model, optimizer, batch, update, rng) -> metrics``: one update of
``model`` on a replay sample (``batch``: torch tensors, ``SharedReplay.sample`` layout);
``update`` counts the learner's updates before this one."""


class Learner:
    """The learner process's work: sample, update, publish, at the rate limiter's pace.

    Args:
        learner_id: its slot in the global counters (the number of actors).
        config: the run's configuration.
        shared: from ``make_shared``.
        counters: the global counters; the learner adds one update per update.
        learn: the algorithm's update (``LearnFn``).
    """

    def __init__(
        self, learner_id: int, config: Config, shared: SharedState, counters: GlobalCounters, learn: LearnFn
    ) -> None:
        a = self.cfg = config.algo
        self.learner_id = learner_id
        self.shared, self.counters = shared, counters
        self.learn = learn
        self.total_steps = config.run.total_steps
        self.serial = config.run.serial
        self.model = copy.deepcopy(shared.model)  # the learner's own copy, off shared memory
        self.optimizer = make_learner_optimizer(
            a, self.model.optimized_parameters(), torch.device("cpu"), shared.optimizer
        )
        self._state_pairs = optimizer_state_pairs(self.optimizer, shared.optimizer)
        self._tensors = list(self.model.state_dict().values())
        self.rng = np.random.default_rng(config.run.seed + 1_000_003)
        torch.manual_seed(config.run.seed + 1_000_003)  # the learner's own noise (SAC, TD3)
        self.env = None
        self.stats = WorkerStats(counters)

    @property
    def updates(self) -> int:
        """Updates since the replay was made (this run, or this resumed part of it): the
        rate limiter's count, which only this learner advances."""
        return self.shared.rate.updates

    def finished(self) -> bool:
        """Whether ``T`` reached ``--total-steps`` and every update due is made."""
        return self.counters.global_step >= self.total_steps and not self.shared.rate.learner_may_update(
            self.shared.replay.inserted
        )

    def update(self) -> int:
        """Make the updates that are due, for up to ``LEARNER_SLICE_S``, or wait up to
        ``SLOT_WAIT_S`` (not at all in ``--serial`` mode) for transitions that make one due.

        Returns:
            0 (the learner takes no env steps).
        """
        replay, rate = self.shared.replay, self.shared.rate
        if not rate.learner_may_update(replay.inserted):
            if self.serial or not wait_until(
                lambda: rate.learner_may_update(replay.inserted), SLOT_WAIT_S, lambda: self.counters.stop_requested
            ):
                return 0
        until = time.monotonic() + LEARNER_SLICE_S
        while rate.learner_may_update(replay.inserted):
            if self.cfg.lr_anneal:  # to 0 at T = --total-steps, on the learner's own clock
                self._anneal(self.counters.initial_step + rate.inserted_when_due(self.updates + 1))
            sample = replay.sample(self.cfg.batch_size, self.rng)
            batch = {name: torch.from_numpy(array) for name, array in sample.items()}
            metrics = self.learn(self.cfg, self.model, self.optimizer, batch, self.updates, self.rng)
            self.shared.policy.publish(self._tensors, lambda: copy_pairs(self._state_pairs))
            rate.count_update()  # after the publication: a --sync actor then acts with this policy
            self.counters.add(self.learner_id, 0, updates=1)
            self.stats.update(metrics)
            if not self.serial and time.monotonic() >= until:
                break
        return 0

    def _anneal(self, global_step: int) -> None:
        """Set the rate for the next update: ``linear_lr`` at ``global_step``, the env steps
        (initial ``T`` plus the transitions inserted) at which that update became due. ``T``
        itself, which the actors raise concurrently, would make --sync runs irreproducible."""
        lr = linear_lr(self.cfg.lr, global_step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def drain_stats(self) -> dict[str, Any]:
        return self.stats.drain()

    def close(self) -> None:
        pass


def wait_until(ready: Callable[[], bool], timeout: float, should_stop: Callable[[], bool]) -> bool:
    """Poll ``ready()`` with a doubling back-off (``storage.POLL_MIN_S`` to ``POLL_MAX_S``)
    until it is true (True), or ``should_stop()`` is, or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    poll = POLL_MIN_S
    while not ready():
        if should_stop() or time.monotonic() >= deadline:
            return False
        time.sleep(poll)
        poll = min(2 * poll, POLL_MAX_S)
    return True


def flat_obs_dim(config: Config, obs: ObsSpec | int) -> int:
    """The observation width of DDPG, TD3 and SAC, which take flat observations.

    Raises:
        NetworkError: if the observations are images.
    """
    obs = ObsSpec.of(obs)
    if obs.is_image:
        raise NetworkError(f"--algo {config.run.algo} takes flat observations, got {obs.describe()}")
    return obs.shape[0]


def optimizer_step(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], loss: torch.Tensor, max_grad_norm: float
) -> float:
    """One optimizer step on ``params`` only: their gradients of ``loss`` (every other
    parameter of ``optimizer`` has none, so this step leaves it and its statistics alone),
    clipped to ``max_grad_norm`` (inf: no clip). Returns the gradient norm before clipping
    (nan without a clip)."""
    grads = torch.autograd.grad(loss, params)
    for p in optimizer.param_groups[0]["params"]:
        p.grad = None
    for p, g in zip(params, grads):
        p.grad = g
    norm = clip_gradients(params, max_grad_norm) if max_grad_norm != float("inf") else float("nan")
    optimizer.step()
    return norm


def polyak(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """``target <- (1 - tau) target + tau online``, in place (Lillicrap et al. 2016)."""
    with torch.no_grad():
        torch._foreach_lerp_(target, online, tau)


def actor_factory(make_acting: Callable[..., Callable]) -> Callable[..., Actor]:
    """``Actor(worker_id, config, shared, counters)`` for an algorithm's ``make_acting``."""

    def make(worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters) -> Actor:
        return Actor(worker_id, config, shared, counters, make_acting)

    return make


def learner_factory(learn: LearnFn) -> Callable[..., Learner]:
    """``Learner(learner_id, config, shared, counters)`` for an algorithm's ``learn``."""

    def make(learner_id: int, config: Config, shared: SharedState, counters: GlobalCounters) -> Learner:
        return Learner(learner_id, config, shared, counters, learn)

    return make


def shared_factory(build_model: Callable[..., torch.nn.Module]) -> Callable[..., SharedState]:
    """``make_shared(config, obs, action)`` for an algorithm's ``build_model``."""

    def make(config: Config, obs: ObsSpec, action: ActionSpec | int) -> SharedState:
        torch.manual_seed(config.run.seed)
        return make_shared(config, obs, action, build_model(config, obs, action))

    return make


__all__ = [
    "Actor",
    "Learner",
    "NStep",
    "RateLimiter",
    "ReplayMemoryError",
    "actor_factory",
    "flat_obs_dim",
    "learner_factory",
    "make_shared",
    "optimizer_step",
    "polyak",
    "shared_factory",
]
