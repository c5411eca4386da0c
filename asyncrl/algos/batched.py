"""The batched learner's two halves, shared by A2C and PPO: actors and the learner.

Actor processes each step ``envs_per_actor`` environments with a local copy of the
published policy, and write the ``unroll_length``-step rollouts of all of them into one
shared-memory slot (``asyncrl.storage.RolloutSlots``). The learner process takes full
slots until it has ``B`` rollouts, stacks them ``[T, B, ...]``, runs one algorithm update (``learn``: A2C or
PPO) on its own copy of the model on ``--learner-device``, and publishes the new
weights (and optimizer statistics, for checkpoints) back to CPU shared memory with a
new ``policy_version``; actors pick them up at their next rollout.

``--sync`` gives each actor one slot, which the learner frees only after publishing:
every actor waits for the new policy, which makes this classic synchronous A2C/PPO.
``--async`` gives each actor two slots, freed as soon as the learner has copied them:
actors never wait for the learner, and a rollout may come from a policy a few versions old (the *policy lag*,
``learner version - behaviour version``, logged per batch); ``--correction vtrace``
corrects for it (Espeholt et al. 2018).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from asyncrl.algos.a3c import greedy_action  # noqa: F401  (A2C and PPO act greedily as A3C does)
from asyncrl.algos.base import SharedState, WorkerStats
from asyncrl.config import Config
from asyncrl.distributions import ActionSpec
from asyncrl.envs import game_over, game_score, start_worker_env
from asyncrl.networks import ActorCritic, ObsSpec, acting_policy_value, build_actor_critic
from asyncrl.normalization import NormalizedEnv, Normalizer, merge_moments, rollout_moments, stats_size
from asyncrl.returns import gae, vtrace
from asyncrl.shared import GlobalCounters, SharedRMSprop, optimizer_for, share_model
from asyncrl.storage import PolicyStore, RolloutSlots
from asyncrl.updaters import make_updater

SLOT_WAIT_S = 0.1
"""Seconds an actor or the learner waits for a slot before checking for a stop."""

LEARNER_STALL_S = 600.0
"""Seconds an actor waits for a free slot while the policy version stands still before it
gives up on the learner (alive, since the trainer has not stopped the run, but frozen):
far longer than any one update, however large its batch."""


class LearnerStalled(RuntimeError):
    """An actor waited ``LEARNER_STALL_S`` for a free slot without the learner publishing."""


class DeviceError(ValueError):
    """A learner device that this machine does not have."""


def check_device(name: str) -> torch.device:
    """The learner's ``torch.device`` for ``--learner-device name``, checked without
    initialising CUDA in this process.

    The trainer calls this before it forks any process, and a process that initialised
    CUDA cannot fork children that use it; ``torch.cuda.device_count()`` asks NVML, which
    initialises nothing (``torch.cuda.is_available()`` would call ``cuInit``). The
    learner process itself starts with ``spawn`` when it uses CUDA
    (``learner_start_method``), so that even a fallback that did initialise CUDA here
    cannot reach it.

    Raises:
        DeviceError: if ``name`` asks for CUDA and none is available, or for a CUDA
            index this machine does not have.
    """
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.backends.cuda.is_built() else 0
        if count == 0:
            raise DeviceError(
                f"--learner-device {name}: CUDA is not available on this machine "
                f"(torch {torch.__version__}); use --learner-device cpu"
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--learner-device {name}: this machine has {count} CUDA device(s)")
    return device


def learner_start_method(config: Config) -> str:
    """How the learner process starts: ``spawn`` when it uses CUDA (CUDA cannot be used in
    a forked child of a process that touched it), else the run's ``--start-method``."""
    if torch.device(getattr(config.algo, "learner_device", "cpu")).type == "cuda":
        return "spawn"
    return config.run.start_method


def normalizes(a: Any) -> bool:
    """Whether the batched config ``a`` normalises observations or scales rewards."""
    return a.normalize_obs or a.normalize_reward


def build_model(config: Config, obs: ObsSpec, action: ActionSpec | int) -> ActorCritic:
    """The actor-critic of ``config.algo`` for observations ``obs`` and actions ``action``
    (not shared): categorical or Gaussian (``--gaussian-std``), with a ``Normalizer`` for
    its statistics if ``--normalize-obs`` or ``--normalize-reward``.

    Raises:
        NetworkError: if ``--network`` cannot read ``obs``.
    """
    a = config.algo
    normalizer = Normalizer(obs.shape[0]) if normalizes(a) else None
    return build_actor_critic(
        obs, action, a.hidden_sizes, a.shared_torso, a.network, a.gaussian_std, normalizer, lstm_size=a.core_size
    )


def make_shared(config: Config, obs: ObsSpec, action: ActionSpec | int) -> SharedState:
    """The published policy, its optimizer statistics (for checkpoints) and the rollout
    slots, in shared memory: one slot per actor with ``--sync``, two with ``--async``.

    Raises:
        ValueError: if ``--sync`` is combined with a partial ``--batch-rollouts``.
    """
    a = config.algo
    # The learner steps a torch.optim optimizer, whose first use imports torch._dynamo
    # (about as long as importing torch): once here, before the processes fork, rather
    # than in the learner while the actors wait for its first update.
    import torch._dynamo  # noqa: F401

    torch.manual_seed(config.run.seed)
    model = share_model(build_model(config, obs, action))
    optimizer = optimizer_for(a, model.parameters())
    a.rollouts_per_batch(config.run.workers)  # raises if the batch does not fit the actors
    dist = model.dist
    slots = RolloutSlots(
        config.run.workers,
        1 if a.sync else 2,
        a.unroll_length,
        a.envs_per_actor,
        obs.shape,
        obs.np_dtype,
        dist.action_shape,
        dist.action_dtype,
        stats_size(obs.shape[0]) if normalizes(a) else 0,
        a.core_size,
    )
    return SharedState(model=model, optimizer=optimizer, slots=slots, policy=PolicyStore(model))


class Actor:
    """An actor process's work: roll out ``envs_per_actor`` environments with the
    published policy and hand each rollout to the learner.

    Args:
        worker_id: index of this actor, 0-based; environment ``e`` of actor ``i`` is seeded
            ``seed + i * envs_per_actor + e``.
        config: the run's configuration (``config.algo`` an ``A2CConfig`` or ``PPOConfig``).
        shared: from ``make_shared``.
        counters: the global step counter ``T``.

    Raises:
        EnvError: if an environment cannot be made or has unsuitable spaces.
    """

    def __init__(self, worker_id: int, config: Config, shared: SharedState, counters: GlobalCounters):
        a = config.algo
        self.worker_id = worker_id
        self.shared = shared
        self.counters = counters
        E, T = a.envs_per_actor, a.unroll_length
        self.envs, first_obs = [], []
        self.normalized: list[NormalizedEnv] = []  # with --normalize-obs / --normalize-reward

        def normalize(env):
            self.normalized.append(
                NormalizedEnv(env, a.normalize_obs, a.normalize_reward, a.gamma, a.obs_clip, a.reward_clip)
            )
            return self.normalized[-1].env

        for e in range(E):
            env, obs, spec = start_worker_env(config.run, worker_id * E + e, wrap=normalize if normalizes(a) else None)
            self.envs.append(env)
            first_obs.append(obs)
        self.env = self.envs[0]
        self.obs = np.stack(first_obs)  # [E, *obs_shape], the spec's dtype
        self.local: ActorCritic = copy.deepcopy(
            cast(ActorCritic, shared.model)
        )  # process-local, refreshed from each publication
        self.local_params = list(self.local.state_dict().values())
        self.shared_params = list(shared.model.state_dict().values())
        self.policy_value = acting_policy_value(self.local, E)  # reads the local copy; carries an LSTM's state
        self.dist = self.local.dist
        self.version = -1
        self.serial = config.run.serial
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.stats = WorkerStats(counters, num_envs=E)
        self.rollout = {  # one rollout per environment, in a slot's time-major layout
            "obs": np.zeros((T + 1, E, *spec.shape), spec.np_dtype),
            "actions": np.zeros((T, E, *self.dist.action_shape), self.dist.action_dtype),
            "rewards": np.zeros((T, E), np.float32),
            "terminated": np.zeros((T, E), bool),
            "truncated": np.zeros((T, E), bool),
            "log_probs": np.zeros((T, E), np.float32),
            "values": np.zeros((T + 1, E), np.float32),
            "final_obs": np.zeros((T, E, *spec.shape), spec.np_dtype),
            "final_values": np.zeros((T, E), np.float32),
        }
        if self.local.recurrent:  # each rollout's first (h, c), where the learner's unroll starts
            self.rollout["initial_state"] = self.policy_value.state()  # [E, 2, H]
        if self.normalized:  # what the learner's statistics are made of: raw observations and returns
            self._raw_obs = np.zeros((T, E, *spec.shape), np.float64)
            self._raw_returns = np.zeros((T, E), np.float64)

    def _refresh_policy(self) -> bool:
        """Copy the newest publication if it moved; False if a stop came while waiting."""
        store = self.shared.policy
        if store.version != self.version:
            version = store.read(
                lambda: torch._foreach_copy_(self.local_params, self.shared_params),
                should_stop=lambda: self.counters.stop_requested,
            )
            if version is None:
                return False
            self.version = version
            for e, norm in enumerate(self.normalized):  # the published statistics, from the current observation on
                norm.load(self.local.normalizer)
                self.obs[e] = norm.observation(norm.raw_obs)
        return True

    def _acquire(self) -> int | None:
        """A free slot of this actor's, with the newest policy copied; None if a stop came
        while waiting, or, in ``--serial`` mode, if every slot is full.

        Raises:
            LearnerStalled: if no slot came free for ``LEARNER_STALL_S`` while the learner
                published nothing.
        """
        slots, store = self.shared.slots, self.shared.policy
        index = None
        version, since = store.version, time.monotonic()  # the learner's progress while we wait
        while index is None:
            index = slots.acquire(self.worker_id, 0.0 if self.serial else SLOT_WAIT_S)
            if index is None:
                if self.serial or self.counters.stop_requested:
                    return None
                if store.version != version:
                    version, since = store.version, time.monotonic()
                elif time.monotonic() - since > LEARNER_STALL_S:
                    raise LearnerStalled(
                        f"actor {self.worker_id} found no free slot for {LEARNER_STALL_S:g} s "
                        f"while the learner published nothing (policy version {version})"
                    )
        if not self._refresh_policy():  # with --sync, the learner published before freeing the slots
            slots.abandon(index)
            return None
        return index

    def update(self) -> int:
        """Fill one slot with a rollout of every environment; returns env steps taken
        (0 if a stop came while waiting for a free slot or the policy, or, in
        ``--serial`` mode, if this actor's slots are all full: nothing else runs while it
        would wait).

        Raises:
            LearnerStalled: if no slot came free for ``LEARNER_STALL_S`` while the learner
                published nothing.
        """
        slots = self.shared.slots
        index = self._acquire()
        if index is None:
            return 0
        r = self.rollout
        obs_buf, values, final_values = r["obs"], r["values"], r["final_values"]
        actions_buf, log_probs_buf = r["actions"], r["log_probs"]
        rewards, terminated_buf, truncated_buf = r["rewards"], r["terminated"], r["truncated"]
        final_values.fill(0.0)
        E, T = len(self.envs), slots.unroll_length
        dist, normalized = self.dist, self.normalized
        if "initial_state" in r:
            r["initial_state"][:] = self.policy_value.state()
        for t in range(T):
            obs_buf[t] = self.obs
            params, values[t] = self.policy_value(self.obs)
            actions, log_probs = dist.sample_batch(params, self.rng)
            actions_buf[t] = actions
            log_probs_buf[t] = log_probs
            for e, norm in enumerate(normalized):
                self._raw_obs[t, e] = norm.raw_obs
            for e, env in enumerate(self.envs):
                obs, reward, terminated, truncated, info = env.step(dist.env_action(actions[e]))
                if normalized:
                    self._raw_returns[t, e] = normalized[e].discounted_return
                rewards[t, e] = reward
                terminated_buf[t, e] = terminated
                truncated_buf[t, e] = truncated
                self.stats.step(game_score(reward, info), game_over(terminated, truncated, info), e)
                if terminated or truncated:
                    if truncated and not terminated:
                        r["final_obs"][t, e] = obs
                        final_values[t, e] = self.policy_value.values(r["final_obs"][t, e : e + 1], [e])[0]
                    obs, _ = env.reset()
                    self.policy_value.reset(e)  # an LSTM's state starts the next episode at zero
                self.obs[e] = obs
            self.counters.add(self.worker_id, E, updates=0)  # T <- T + E
        obs_buf[T] = self.obs
        values[T] = self.policy_value.values(self.obs)
        moments = None
        if normalized:
            moments = rollout_moments(self._raw_obs.reshape(T * E, -1), self._raw_returns.reshape(T * E))
        slots.commit(index, r, self.version, moments)
        return E * T

    def drain_stats(self) -> dict[str, Any]:
        return self.stats.drain()

    def close(self) -> None:
        for env in self.envs:
            env.close()


LearnFn = Callable[[Any, Any, dict[str, torch.Tensor], float, np.random.Generator], dict[str, float]]
"""``learn(algo_config, updater, batch, progress, rng) -> metrics``: one update through an
``asyncrl.updaters`` updater on a batch from ``RolloutSlots.batch`` (on the learner's
device); ``progress`` is the share of ``--total-steps`` trained on so far, for annealing."""


class Learner:
    """The learner process's work: batch full slots, update, publish.

    Args:
        learner_id: its slot in the global counters (the number of actors).
        config: the run's configuration.
        shared: from ``make_shared``.
        counters: the global counters; the learner adds one update per batch.
        learn: the algorithm's update (``LearnFn``).
        batch_steps: ``batch -> env steps`` it holds (default: ``T x B``; REINFORCE: the
            steps of its episodes, without padding).

    Raises:
        DeviceError: if ``--learner-device`` is not available.
    """

    def __init__(
        self,
        learner_id: int,
        config: Config,
        shared: SharedState,
        counters: GlobalCounters,
        learn: LearnFn,
        batch_steps: Callable[[dict[str, torch.Tensor]], int] | None = None,
    ) -> None:
        a = self.cfg = config.algo
        self.batch_steps = batch_steps
        self.learner_id = learner_id
        self.shared = shared
        self.counters = counters
        self.learn = learn
        self.device = check_device(a.learner_device)
        self.batch_rollouts = a.rollouts_per_batch(config.run.workers)
        self.slots_per_batch = self.batch_rollouts // a.envs_per_actor
        self.total_steps = config.run.total_steps
        self.serial = config.run.serial  # the actors run between two calls: never wait for them
        self.trained_steps = counters.initial_step  # env steps in the batches trained on, incl. a resumed run's
        self.model = copy.deepcopy(shared.model).to(self.device)  # the learner's own copy, off shared memory
        self.optimizer = make_learner_optimizer(a, self.model.parameters(), self.device, shared.optimizer)
        self.updater = make_updater(self.model, self.optimizer, a.max_grad_norm, self.device)
        # (after make_updater, which may move the parameters and statistics into flat buffers)
        self._state_pairs = optimizer_state_pairs(self.optimizer, shared.optimizer)
        self._tensors = list(self.model.state_dict().values())
        self.rng = np.random.default_rng(config.run.seed + 1_000_003)
        normalizer = self.model.normalizer
        self._running = normalizer.running() if normalizer is not None else None  # (observations, returns)
        self.env = None
        self.stats = WorkerStats(counters)
        self._pending: list[int] = []

    def finished(self) -> bool:
        """Whether the learner has trained on ``--total-steps`` env steps."""
        return self.trained_steps >= self.total_steps

    def update(self) -> int:
        """Wait for a full batch (up to ``SLOT_WAIT_S``; not at all in ``--serial`` mode),
        update, publish.

        Returns:
            0 (the learner takes no env steps).
        """
        slots, B = self.shared.slots, self.batch_rollouts
        self._pending += slots.take(self.slots_per_batch - len(self._pending), 0.0 if self.serial else SLOT_WAIT_S)
        if len(self._pending) < self.slots_per_batch:
            return 0
        indices, self._pending = self._pending, []
        batch = slots.batch(indices)
        steps = self.batch_steps(batch) if self.batch_steps is not None else slots.unroll_length * B
        if not self.cfg.sync:
            slots.release(indices)  # actors may refill them while this batch trains
        lags = self.shared.policy.version - batch["policy_version"]  # [rollouts] int64
        self.stats.record_lags(lags.tolist())
        lag = float(lags.float().mean())
        stats = batch.pop("stats", None)  # [k, stats_size]: the actors' raw moments, per slot
        batch = {name: self._to_device(tensor) for name, tensor in batch.items()}
        progress = self.trained_steps / self.total_steps
        metrics = self.learn(self.cfg, self.updater, batch, progress, self.rng)
        if self._running is not None and stats is not None:  # published with these weights
            for moments in stats.numpy():
                merge_moments(*self._running, moments)
            self.model.normalizer.store(*self._running)
        self.shared.policy.publish(self._tensors, lambda: copy_pairs(self._state_pairs))
        self.counters.add(self.learner_id, 0, updates=1)
        if self.cfg.sync:
            slots.release(indices)  # only now: every actor waits for the new policy
        self.trained_steps += steps
        self.stats.update({**metrics, "policy_lag": lag})
        return 0

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)  # page-locked: asynchronous copy

    def drain_stats(self) -> dict[str, Any]:
        return self.stats.drain()

    def close(self) -> None:
        pass


def make_learner_optimizer(a: Any, params, device: torch.device, shared: Any) -> torch.optim.Optimizer:
    """The learner's own ``torch.optim`` optimizer (process-local, on ``device``), with the
    statistics of the shared one (a resumed run's, or their initial values); with ``--rms-eps-inside``, a
    process-local ``SharedRMSprop`` (the same arithmetic as the Hogwild family's).

    Its hyper-parameters and kernels are its own: fused Adam on CPU, multi-tensor
    (``foreach``) kernels elsewhere. Only the statistics are loaded from the shared
    optimizer; ``load_state_dict`` of its whole state dict would also replace these
    choices with the shared optimizer's CPU ones.
    """
    params = list(params)
    if a.optimizer == "rmsprop" and a.rms_eps_inside:  # sqrt(g + eps): not a form torch.optim.RMSprop has
        optimizer = SharedRMSprop(params, lr=a.lr, alpha=a.rms_alpha, eps=a.optim_eps, eps_in_sqrt=True)
        with torch.no_grad():
            for p, saved in zip(params, shared.state_dict()["state"].values()):
                for name, value in saved.items():
                    optimizer.state[p][name].copy_(value)
        return optimizer
    if a.optimizer == "adam":
        if device.type == "cpu":
            optimizer = torch.optim.Adam(params, lr=a.lr, eps=a.optim_eps, fused=True)
        else:
            optimizer = torch.optim.Adam(params, lr=a.lr, eps=a.optim_eps, foreach=True)
    else:
        optimizer = torch.optim.RMSprop(params, lr=a.lr, alpha=a.rms_alpha, eps=a.optim_eps, foreach=True)
    saved = shared.state_dict()
    own_groups = optimizer.state_dict()["param_groups"]
    # (a copy of the statistics: on a CPU, load_state_dict would keep the shared tensors themselves)
    optimizer.load_state_dict({"state": copy.deepcopy(saved["state"]), "param_groups": own_groups})  # creates the state
    return optimizer


@torch.no_grad()
def copy_pairs(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``dst.copy_(src)`` for every ``(dst, src)`` of ``pairs`` (``optimizer_state_pairs``: the
    learner's optimizer statistics into shared memory, inside a publication)."""
    for dst, src in pairs:
        dst.copy_(src)


def optimizer_state_pairs(own: torch.optim.Optimizer, shared: torch.optim.Optimizer) -> list:
    """``(shared tensor, own tensor)`` for every optimizer statistic, in parameter order."""
    own_params = [p for g in own.param_groups for p in g["params"]]
    shared_params = [p for g in shared.param_groups for p in g["params"]]
    pairs = []
    for mine, theirs in zip(own_params, shared_params):
        for name, tensor in shared.state[theirs].items():
            pairs.append((tensor, own.state[mine][name]))
    return pairs


def learner_factory(
    learn: LearnFn, batch_steps: Callable[[dict[str, torch.Tensor]], int] | None = None
) -> Callable[..., Learner]:
    """``Learner(learner_id, config, shared, counters)`` for an algorithm's ``learn``
    (``batch_steps(batch)``: the env steps a batch holds, if not all ``T x B``)."""

    def make(learner_id: int, config: Config, shared: SharedState, counters: GlobalCounters) -> Learner:
        return Learner(learner_id, config, shared, counters, learn, batch_steps)

    return make


def time_major_next_values(values: np.ndarray, final_values: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """``V(s_{t+1})`` for every step of a ``[T, B]`` batch, as ``returns.gae`` and
    ``returns.vtrace`` expect: ``values[t + 1]``, except the cut episode's own last
    value where ``truncated[t]``.

    Args:
        values: ``[T+1, B]`` float32 ``V(s_0) .. V(s_T)``.
        final_values: ``[T, B]`` float32 values of the last observations of truncated episodes.
        truncated: ``[T, B]`` bool.

    Returns:
        ``[T, B]`` float32.
    """
    return np.where(truncated, final_values, values[1:]).astype(np.float32)


def recurrent_inputs(batch: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Where a recurrent learner's unroll of a ``[T, B]`` batch starts and resets.

    Returns:
        ``((h, c), resets)``: each rollout's first state (``[B, H]`` each, from the actor)
        and ``resets: [T+1, B]`` bool, true before step ``t`` where step ``t - 1`` ended
        an episode (terminated or truncated): the state is zeroed there, as the actor did.
    """
    initial = batch["initial_state"]  # [B, 2, H]
    done = batch["terminated"] | batch["truncated"]  # [T, B]
    resets = torch.zeros(done.shape[0] + 1, done.shape[1], dtype=torch.bool, device=done.device)
    resets[1:] = done
    return (initial[:, 0].contiguous(), initial[:, 1].contiguous()), resets


class Estimates(NamedTuple):
    """What ``advantage_estimates`` computes for a ``[T, B]`` batch (NumPy, float32)."""

    values: np.ndarray
    """``[T+1, B]`` ``V(s_t)``: the learner's critic, or the behaviour critic's."""
    advantages: np.ndarray
    """``[T, B]`` GAE(lambda) or V-trace advantages."""
    returns: np.ndarray
    """``[T, B]`` value targets."""
    log_probs: np.ndarray | None
    """``[T, B]`` ``log pi(a_t|s_t)`` of the learner's policy before this update (V-trace's
    target policy), or None where not computed (without V-trace)."""


def advantage_estimates(cfg: Any, updater: Any, batch: dict[str, torch.Tensor], behaviour_critic: bool) -> Estimates:
    """Values, advantages and value targets for a ``[T, B]`` batch (``RolloutSlots.batch``).

    With ``--correction vtrace``: V-trace (``returns.vtrace``) with the learner's current
    policy as the target policy and its critic. Otherwise GAE(lambda) (``returns.gae``)
    with the behaviour critic's values from the rollout (``behaviour_critic``, PPO) or
    the learner's (A2C). Where the learner's critic gives the values, it also gives the
    value of each truncated episode's last observation (``final_obs``), so that no
    bootstrap value comes from the actor's older critic.
    """
    obs, actions = batch["obs"], batch["actions"]
    T, B = actions.shape[:2]
    host = {name: batch[name].cpu().numpy() for name in ("rewards", "terminated", "truncated", "final_values")}
    vtrace_on = cfg.correction == "vtrace"
    final_values = host["final_values"]  # [T, B]: the behaviour critic's
    if vtrace_on or not behaviour_critic:
        if updater.recurrent:  # the core unrolled over the rollouts from their first states
            state, resets = recurrent_inputs(batch)
            logits, values, (h, c) = updater.sequence(obs, state, resets)  # [T+1, B, P], [T+1, B], [T+1, B, H]
        else:
            logits, values = updater.forward(obs.flatten(0, 1))  # [(T+1)*B, P], [(T+1)*B]
        np_values = values.reshape(T + 1, B).cpu().numpy()  # [T+1, B]
        cut = np.nonzero(host["truncated"])  # (t, b) of the truncated steps
        if len(cut[0]):
            final_values = np.zeros_like(final_values)
            rows = torch.from_numpy(cut[0] * B + cut[1]).to(obs.device)
            final_obs = batch["final_obs"].flatten(0, 1).index_select(0, rows)  # [K, *obs_shape]
            if updater.recurrent:  # after the state the cut episode had reached
                t, b = (torch.from_numpy(i).to(obs.device) for i in cut)
                final_values[cut] = updater.peek_values(final_obs, (h[t, b], c[t, b])).cpu().numpy()
            else:
                final_values[cut] = updater.forward(final_obs)[1].cpu().numpy()
    else:
        np_values = batch["values"].cpu().numpy()  # [T+1, B]
    next_values = time_major_next_values(np_values, final_values, host["truncated"])  # [T, B]
    if not vtrace_on:
        advantages, returns = gae(
            host["rewards"],
            np_values[:T],
            next_values,
            host["terminated"],
            host["truncated"],
            cfg.gamma,
            cfg.gae_lambda,
        )
        return Estimates(np_values, advantages, returns, None)
    params = logits.reshape(T + 1, B, -1)[:T]  # [T, B, P]
    log_probs = updater.model.dist.log_prob(params, actions).cpu().numpy()  # [T, B]
    returns, advantages = vtrace(
        batch["log_probs"].cpu().numpy(),
        log_probs,
        host["rewards"],
        np_values[:T],
        next_values,
        host["terminated"],
        host["truncated"],
        cfg.gamma,
    )
    return Estimates(np_values, advantages, returns, log_probs)
