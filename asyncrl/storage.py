"""Shared-memory rollout slots and the published policy, between actors and the learner.

Actors write fixed-length rollouts (one per environment they step, ``E`` in all) into
a preallocated slot and mark it *full*; the learner stacks full slots' rollouts into
``[T, B, ...]`` batches and marks them *free* again (TorchBeast's buffers, Sample Factory's
trajectory slots). The data never leaves shared memory until the learner copies it.

The hand-over is a state per slot in shared memory (free -> writing -> full -> reading ->
free), polled with a short back-off, rather than index queues: a process killed at any
instant (SIGKILL) leaves at most its own slot half-written, which the trainer reclaims,
whereas one killed inside a ``multiprocessing.Queue`` operation can leave that queue's
lock held and every other process waiting on it for ever. Each actor owns fixed slots, so
only it and the learner ever write a slot's state.

The learner publishes new weights into a shared-memory copy of the model guarded by a
sequence lock: the sequence is odd while a copy is in progress, and ``policy_version``
is the number of completed publications. Readers copy and retry if the sequence moved,
so an actor never acts with half-written weights, and the learner never waits for one.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

FREE, WRITING, FULL, READING = 0, 1, 2, 3
"""Slot states: free, being written by its actor, full, being read by the learner."""

STATE_NAMES = ("free", "writing", "full", "reading")

POLL_MIN_S, POLL_MAX_S = 2e-5, 3e-4
"""Back-off between two looks at the slot states, in seconds: it doubles from the first to
the second while nothing changes (so a waiting process costs little CPU, and notices a
change within a third of a millisecond)."""


PUBLICATION_TIMEOUT_S = 10.0
"""Seconds a reader waits on one publication in progress before it gives up on the writer
(a publication takes microseconds to milliseconds; one that stands open this long has a
dead or frozen writer)."""


class SlotError(RuntimeError):
    """A slot used out of its free -> writing -> full -> reading -> free cycle."""


class PublicationStalled(RuntimeError):
    """A publication stood half-written past the reader's deadline: its writer died (or
    froze) in the middle of it."""


def _wait(poll: float) -> float:
    time.sleep(poll)
    return min(2 * poll, POLL_MAX_S)


_FLOAT32, _INT64 = np.dtype(np.float32), np.dtype(np.int64)


class RolloutSlots:
    """``num_slots`` preallocated slots, each one actor's rollouts of ``unroll_length``
    steps in each of its ``envs_per_slot`` environments.

    Per slot (time-major; ``T = unroll_length``, ``E = envs_per_slot``):

    - ``obs: [T+1, E, *obs_shape] obs_dtype``: ``s_0 .. s_T``; ``s_T`` is the bootstrap state
      (images stay uint8).
    - ``actions: [T, E, *action_shape] action_dtype`` (``int64`` indices, or ``float32``
      vectors of continuous actions, unclipped), ``rewards: [T, E] float32``.
    - ``terminated: [T, E] bool``: ``s_{t+1}`` is terminal; ``truncated: [T, E] bool``: a
      time limit cut the episode after step ``t`` (then ``s_{t+1}`` is the next episode's
      first state, ``final_obs[t]`` the cut episode's last observation and
      ``final_values[t]`` its value under the behaviour critic).
    - ``log_probs: [T, E] float32``: ``log mu(a_t|s_t)`` of the behaviour policy.
    - ``values: [T+1, E] float32``: ``V(s_t)`` under the behaviour policy's critic.
    - ``final_obs: [T, E, *obs_shape] obs_dtype``, ``final_values: [T, E] float32``: see
      ``truncated`` (meaningful only there; ``final_values`` is 0 elsewhere). A learner
      that evaluates every value with its own critic (A2C, V-trace) evaluates
      ``final_obs`` too, never the actor's stale value.
    - ``policy_version: int64``: the version of the policy that acted.
    - ``initial_state: [E, 2, lstm_size] float32``: each rollout's first recurrent state
      ``(h, c)`` (an LSTM policy's), where the learner's unroll starts; absent if
      ``lstm_size`` is 0.
    - ``stats: [stats_size] float64``: per slot, whatever the actor reports besides the
      rollout (the raw moments of ``asyncrl.normalization``); absent if ``stats_size`` is 0.

    An actor takes one whole slot per rollout, so actors never hold part of what they
    need while waiting for the rest (with several environments per actor, taking them
    one by one can leave every actor short of a slot). Actor ``w`` owns slots
    ``w * slots_per_actor .. (w + 1) * slots_per_actor - 1``.

    Args:
        actors: number of actors, >= 1.
        slots_per_actor: slots each actor owns, >= 1 (1: the actor waits for the learner
            after every rollout; 2: it can fill one while the learner reads the other).
        unroll_length: ``T``, env steps per rollout.
        envs_per_slot: ``E``, environments per actor.
        obs_shape: shape of one observation.
        obs_dtype: its dtype (float32 vectors, uint8 images).
        action_shape: shape of one action (``()`` discrete, ``(D,)`` continuous).
        action_dtype: its dtype (int64 or float32).
        stats_size: length of the per-slot ``stats`` vector (0: none).
        lstm_size: width of the policy's LSTM state (0: feed-forward, no ``initial_state``).

    Raises:
        ValueError: if a count is below 1.
    """

    FIELDS = (
        "obs",
        "actions",
        "rewards",
        "terminated",
        "truncated",
        "log_probs",
        "values",
        "final_obs",
        "final_values",
    )

    def __init__(
        self,
        actors: int,
        slots_per_actor: int,
        unroll_length: int,
        envs_per_slot: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype = _FLOAT32,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype = _INT64,
        stats_size: int = 0,
        lstm_size: int = 0,
    ) -> None:
        if min(actors, slots_per_actor, unroll_length, envs_per_slot) < 1:
            raise ValueError(
                f"need actors, slots_per_actor, unroll_length and envs_per_slot >= 1, got {actors}, "
                f"{slots_per_actor}, {unroll_length}, {envs_per_slot}"
            )
        S, T, E = actors * slots_per_actor, unroll_length, envs_per_slot
        self.num_slots, self.slots_per_actor, self.unroll_length, self.envs_per_slot = S, slots_per_actor, T, E

        def shared(shape, dtype):
            return torch.zeros(shape, dtype=dtype).share_memory_()

        def torch_dtype(dtype):
            return torch.from_numpy(np.zeros(0, dtype)).dtype

        obs_dtype = torch_dtype(obs_dtype)
        self.obs = shared((S, T + 1, E, *obs_shape), obs_dtype)
        self.actions = shared((S, T, E, *action_shape), torch_dtype(action_dtype))
        self.rewards = shared((S, T, E), torch.float32)
        self.terminated = shared((S, T, E), torch.bool)
        self.truncated = shared((S, T, E), torch.bool)
        self.log_probs = shared((S, T, E), torch.float32)
        self.values = shared((S, T + 1, E), torch.float32)
        self.final_obs = shared((S, T, E, *obs_shape), obs_dtype)
        self.final_values = shared((S, T, E), torch.float32)
        self.policy_version = shared((S,), torch.int64)
        self.initial_state = shared((S, E, 2, lstm_size), torch.float32) if lstm_size else None
        self.stats = shared((S, stats_size), torch.float64) if stats_size else None
        self.state = shared((S,), torch.int64)  # FREE / WRITING / FULL / READING
        self.committed_ns = shared((S,), torch.int64)  # when it became full: the learner takes the oldest first
        self.cycles = shared((S,), torch.int64)  # completed free -> full -> free cycles
        self._bind()

    def owned(self, worker_id: int) -> range:
        """The slots actor ``worker_id`` writes."""
        return range(worker_id * self.slots_per_actor, (worker_id + 1) * self.slots_per_actor)

    def _bind(self) -> None:
        self._state = self.state.numpy()
        self._committed = self.committed_ns.numpy()
        self._cycles = self.cycles.numpy()
        self._arrays = {name: getattr(self, name).numpy() for name in self.FIELDS}
        if self.initial_state is not None:
            self._arrays["initial_state"] = self.initial_state.numpy()
        self._versions = self.policy_version.numpy()
        self._stats = None if self.stats is None else self.stats.numpy()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    def _require(self, index: int, expected: int) -> None:
        if self._state[index] != expected:
            raise SlotError(f"slot {index} is {STATE_NAMES[self._state[index]]}, expected {STATE_NAMES[expected]}")

    def _move(self, index: int, expected: int, new: int) -> None:
        self._require(index, expected)
        self._state[index] = new

    # -- actor side ---------------------------------------------------------

    def acquire(self, worker_id: int, timeout: float) -> int | None:
        """Take one of actor ``worker_id``'s free slots for writing; None if none became
        free within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        poll = POLL_MIN_S
        owned = self.owned(worker_id)
        while True:
            for index in owned:
                if self._state[index] == FREE:
                    self._state[index] = WRITING
                    return index
            if time.monotonic() >= deadline:
                return None
            poll = _wait(poll)

    def commit(
        self, index: int, rollout: dict[str, np.ndarray], policy_version: int, stats: np.ndarray | None = None
    ) -> None:
        """Write one rollout (arrays shaped as one slot's fields, and ``stats`` if the slots
        have them) and hand it to the learner.

        Raises:
            SlotError: if this slot was not acquired for writing.
        """
        self._require(index, WRITING)
        for name, array in self._arrays.items():
            array[index] = rollout[name]
        if self._stats is not None:
            self._stats[index] = stats
        self._versions[index] = policy_version
        self._committed[index] = time.monotonic_ns()
        self._move(index, WRITING, FULL)  # last: the data is complete before the learner can see it

    def abandon(self, index: int) -> None:
        """Give back a slot acquired for writing without committing it (a stop came first).

        Raises:
            SlotError: if this slot was not acquired for writing.
        """
        self._move(index, WRITING, FREE)

    # -- learner side -------------------------------------------------------

    def take(self, count: int, timeout: float) -> list[int]:
        """Up to ``count`` full slots, oldest first, waiting at most ``timeout`` seconds
        for them; fewer (possibly none) if they did not come. The slots are the caller's
        until released."""
        deadline = time.monotonic() + timeout
        poll = POLL_MIN_S
        while True:
            full = np.flatnonzero(self._state == FULL)
            if len(full) >= count or time.monotonic() >= deadline:
                chosen = [int(i) for i in full[np.argsort(self._committed[full], kind="stable")][:count]]
                for index in chosen:
                    self._move(index, FULL, READING)
                return chosen
            poll = _wait(poll)

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Copy the slots ``indices`` (``k`` of them, ``B = k * E`` rollouts) into
        time-major tensors: ``obs: [T+1, B, *obs_shape]``, ``values: [T+1, B]``, the other
        fields ``[T, B, ...]``, ``policy_version: [B]`` and, if the slots have them,
        ``stats: [k, stats_size]`` (per slot), ``initial_state: [B, 2, H]``; rollout ``j * E + e`` is environment ``e``
        of slot ``indices[j]``. The copies are the caller's; the slots can be released.

        Raises:
            SlotError: if a slot is not held by the learner (never written, or released).
        """
        for index in indices:
            self._require(index, READING)
        idx = torch.as_tensor(indices)
        out = {}
        for name in self.FIELDS:
            tensor = getattr(self, name).index_select(0, idx)  # [k, T(+1), E, ...]
            tensor = tensor.transpose(0, 1)  # [T(+1), k, E, ...]
            out[name] = tensor.reshape(tensor.shape[0], -1, *tensor.shape[3:])  # [T(+1), B, ...]
        out["policy_version"] = self.policy_version.index_select(0, idx).repeat_interleave(self.envs_per_slot)  # [B]
        if self.initial_state is not None:
            out["initial_state"] = self.initial_state.index_select(0, idx).flatten(0, 1)  # [B, 2, H]
        if self.stats is not None:
            out["stats"] = self.stats.index_select(0, idx)  # [k, stats_size]
        return out

    def release(self, indices: list[int]) -> None:
        """Give read slots back to their actors."""
        for index in indices:
            self._cycles[index] += 1
            self._move(index, READING, FREE)

    def reclaim(self, worker_id: int) -> int:
        """Free the slot a dead actor was writing (called by the trainer once the actor has
        exited, before it restarts it). Returns how many slots were reclaimed."""
        reclaimed = 0
        for index in self.owned(worker_id):
            if self._state[index] == WRITING:
                self._state[index] = FREE
                reclaimed += 1
        return reclaimed


class PolicyStore:
    """The learner's latest policy, published to the actors in shared memory.

    Args:
        model: the shared-memory copy of the model actors read from (``share_memory()``).
        initial_version: ``policy_version`` to start from (a resumed run's).
    """

    def __init__(self, model: nn.Module, initial_version: int = 0) -> None:
        self.model = model
        self.sequence = torch.full((1,), 2 * int(initial_version), dtype=torch.int64).share_memory_()
        self._bind()

    def _bind(self) -> None:
        self._seq = self.sequence.numpy()
        self._params = [t for t in self.model.state_dict().values()]

    def __getstate__(self):
        return {"model": self.model, "sequence": self.sequence}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    @property
    def version(self) -> int:
        """Completed publications (``policy_version``); mid-publication, the last one."""
        return int(self._seq[0]) // 2

    @torch.no_grad()
    def publish(self, tensors: list[torch.Tensor], extra=None) -> int:
        """Copy ``tensors`` (the learner's ``state_dict().values()``, on any device) into the
        shared model; ``extra()``, if given, runs inside the same publication (e.g. copying
        optimizer statistics). Returns the new version.

        SIGTERM (the trainer's ``terminate()`` of a learner that did not stop in time) is
        held off until the publication is complete, so that it never leaves one
        half-written; only SIGKILL can, and readers then give up (``read``)."""
        held = _hold_sigterm()
        try:
            self._seq[0] += 1  # odd: writing
            torch._foreach_copy_(self._params, [t.detach() for t in tensors])
            if extra is not None:
                extra()
            self._seq[0] += 1  # even: complete
        finally:
            if held:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return int(self._seq[0]) // 2

    def read(
        self,
        copy_fn: Callable[[], None],
        should_stop: Callable[[], bool] = lambda: False,
        timeout_s: float = PUBLICATION_TIMEOUT_S,
        poll_s: float = 1e-4,
    ) -> int | None:
        """Run ``copy_fn()`` (which copies from ``self.model``) until it ran on one complete
        publication.

        While a publication is in progress it waits, checking ``should_stop()`` (the run's
        stop flag, the writer's liveness) at every poll, and never longer than
        ``timeout_s`` seconds on the same publication.

        Returns:
            The version copied, or None if ``should_stop()`` became true while waiting.

        Raises:
            PublicationStalled: if one publication stood in progress for ``timeout_s``.
        """
        waiting_on, deadline = -1, 0.0
        while True:
            before = int(self._seq[0])
            if before % 2:
                if should_stop():
                    return None
                now = time.monotonic()
                if before != waiting_on:  # a new publication in progress: its own deadline
                    waiting_on, deadline = before, now + timeout_s
                elif now >= deadline:
                    raise PublicationStalled(
                        f"publication {before // 2 + 1} of the policy stood half-written for {timeout_s:g} s: "
                        "its writer died or froze in the middle of it"
                    )
                time.sleep(poll_s)
                continue
            copy_fn()
            if int(self._seq[0]) == before:
                return before // 2


def _hold_sigterm() -> bool:
    """Block SIGTERM in this thread where the platform can; returns whether it did."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    return signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
