"""A shared-memory replay buffer written by many actor processes, sampled by one learner,
and the rate limiter between them.

``SharedReplay`` is a preallocated ring of transitions in shared memory (Ape-X's one
replay, many actors: Horgan et al. 2018). The ring is cut into one segment per actor, and
each actor writes only its own segment, oldest entry first, so no two processes ever
write the same memory and no lock is held across a write, by anyone. Each entry carries a
sequence number (a per-entry sequence lock): odd while its actor writes it, even once
complete. The learner samples entries uniformly over everything written so far (whatever
segment they are in), copies them, and keeps only the entries whose sequence number was
even and unchanged across its copy; the others it draws again. An actor killed in the
middle of a write (SIGKILL) leaves its entry odd, so the learner never samples that torn
transition; the actor that replaces it overwrites the entry.

``RateLimiter`` keeps the learner's updates at ``--replay-ratio`` updates per inserted
transition once ``--learning-starts`` transitions are in the replay (the
samples-per-insert limiter of DeepMind's Reverb, Cassirer et al. 2021): the learner
waits when it has done every update due so far, and actors wait when the learner is more
than ``--rate-tolerance`` updates behind (Reverb's ``error_buffer``). With a tolerance of
0 (``--sync``) actor and learner alternate in lockstep, so with one actor the run does
not depend on how fast either process happens to be.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_LINE = 8  # int64s per padded counter: one 64-byte cache line

SAMPLE_RETRIES = 100
"""Rounds in which ``sample`` draws again the entries it caught mid-write before it gives up."""


REPLAY_MEMORY_SHARE = 0.8
"""The largest share of the machine's available memory a replay may take."""


class ReplayError(RuntimeError):
    """The replay could not give a consistent sample (every drawn entry was being written)."""


class ReplayMemoryError(ValueError):
    """A ``--replay-size`` whose transitions do not fit in this machine's memory."""


def check_replay_memory(capacity: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    """The shared memory a replay of ``capacity`` transitions takes, in bytes.

    Raises:
        ReplayMemoryError: if that is more than ``REPLAY_MEMORY_SHARE`` of the memory
            available now (``psutil.virtual_memory().available``).
    """
    import psutil

    nbytes = capacity * SharedReplay.entry_bytes(fields)
    available = psutil.virtual_memory().available
    if nbytes > REPLAY_MEMORY_SHARE * available:
        raise ReplayMemoryError(f"--replay-size {capacity:,} needs {nbytes / 2**30:.1f} GiB of shared memory, more "
                                f"than {REPLAY_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available")
    return nbytes


def transition_fields(obs_shape: tuple[int, ...], obs_dtype: np.dtype, action_shape: tuple[int, ...],
                      action_dtype: np.dtype) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The fields of one transition, ``name -> (shape, dtype)``: ``obs`` and ``next_obs``
    (the observation's dtype: uint8 images stay uint8), ``actions``, ``rewards`` (float32,
    the n-step discounted sum), ``terminated``/``truncated`` (bool: whether the episode
    ended within the n steps, and how), ``steps`` (int64: n, the env steps between ``obs``
    and ``next_obs``; fewer than ``--n-step`` where the episode ended)."""
    obs_dtype, action_dtype = np.dtype(obs_dtype), np.dtype(action_dtype)
    return {
        "obs": (tuple(obs_shape), obs_dtype),
        "actions": (tuple(action_shape), action_dtype),
        "rewards": ((), np.dtype(np.float32)),
        "next_obs": (tuple(obs_shape), obs_dtype),
        "terminated": ((), np.dtype(np.bool_)),
        "truncated": ((), np.dtype(np.bool_)),
        "steps": ((), np.dtype(np.int64)),
    }


class SharedReplay:
    """A ring of ``capacity`` transitions in shared memory, one segment per actor.

    Actor ``w`` owns entries ``w * S .. (w + 1) * S - 1`` with ``S = capacity // actors``
    and overwrites its own oldest entry once its segment is full, so the replay holds
    each actor's latest ``S`` transitions. ``sample`` draws uniformly over all complete
    entries. Memory: ``nbytes`` (both observations of every transition are stored).

    Args:
        capacity: transitions in all (``--replay-size``), at least one per actor.
        actors: actor processes writing it.
        fields: ``transition_fields(...)``.

    Raises:
        ValueError: if ``capacity < actors`` or ``actors < 1``.
    """

    def __init__(self, capacity: int, actors: int,
                 fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        if actors < 1 or capacity < actors:
            raise ValueError(f"--replay-size must hold at least one transition per actor ({actors}), got {capacity}")
        self.actors = int(actors)
        self.segment = int(capacity) // self.actors
        self.capacity = self.segment * self.actors
        self.fields = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in fields.items()}
        self.tensors = {name: _shared((self.capacity, *shape), dtype) for name, (shape, dtype) in self.fields.items()}
        self.sequence_tensor = _shared((self.capacity,), np.int64)  # per entry: odd while written
        self.written_tensor = _shared((self.actors, _LINE), np.int64)  # per actor: transitions written (column 0)
        self._bind()

    @staticmethod
    def entry_bytes(fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
        """Bytes of one transition (with its sequence number)."""
        return 8 + sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                       for shape, dtype in fields.values())

    @property
    def nbytes(self) -> int:
        """Shared memory taken by the transitions, in bytes."""
        return self.capacity * self.entry_bytes(self.fields)

    def _bind(self) -> None:
        self._arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}
        self._seq = self.sequence_tensor.numpy()
        self._written = self.written_tensor.numpy()[:, 0]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    # -- actor side ---------------------------------------------------------

    def add(self, actor: int, transition: dict[str, np.ndarray]) -> int:
        """Write one transition (every field of ``fields``) into actor ``actor``'s
        segment, over its oldest entry; returns the entry's index.

        Only actor ``actor`` may call this for its segment (one writer per segment).
        """
        index = actor * self.segment + int(self._written[actor]) % self.segment
        seq = int(self._seq[index])
        seq += 1 if seq % 2 == 0 else 2  # odd: being written (also over a torn entry a dead actor left)
        self._seq[index] = seq
        for name, array in self._arrays.items():
            array[index] = transition[name]
        self._seq[index] = seq + 1  # even: complete
        self._written[actor] += 1
        return index

    # -- learner side -------------------------------------------------------

    @property
    def inserted(self) -> int:
        """Transitions written since the replay was made, over all actors."""
        return int(self._written.sum())

    def size(self) -> int:
        """Entries written at least once (at most ``capacity``)."""
        return int(np.minimum(self._written, self.segment).sum())

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` transitions drawn uniformly, with replacement, from the complete
        entries: ``{name: [batch_size, *shape]}`` copies, plus ``indices: [batch_size]
        int64``. An entry caught mid-write (or left torn by a killed actor) is drawn
        again.

        Raises:
            ReplayError: if the replay is empty, or draws still hit entries being written
                after ``SAMPLE_RETRIES`` rounds.
        """
        sizes = np.minimum(self._written, self.segment)  # [actors]
        total = int(sizes.sum())
        if total == 0:
            raise ReplayError("cannot sample an empty replay")
        ends = np.cumsum(sizes)
        out: dict[str, np.ndarray] = {}
        todo = np.arange(batch_size)
        indices = np.zeros(batch_size, np.int64)
        for _ in range(SAMPLE_RETRIES):
            flat = rng.integers(total, size=len(todo))  # [k]: which written entry, over all segments
            actor = np.searchsorted(ends, flat, side="right")
            start = np.concatenate(([0], ends[:-1]))[actor]
            index = actor * self.segment + (flat - start)  # [k] ring indices
            before = self._seq[index].copy()
            copies = {name: array[index] for name, array in self._arrays.items()}  # fancy indexing: copies
            after = self._seq[index]
            good = (before == after) & (before % 2 == 0) & (before > 0)
            if not out:
                out = {name: np.empty((batch_size, *array.shape[1:]), array.dtype) for name, array in copies.items()}
            rows = todo[good]
            for name, array in copies.items():
                out[name][rows] = array[good]
            indices[rows] = index[good]
            todo = todo[~good]
            if len(todo) == 0:
                out["indices"] = indices
                return out
        raise ReplayError(f"{len(todo)} of {batch_size} draws hit entries being written in {SAMPLE_RETRIES} rounds")

    def state(self, index: int) -> str:
        """``"empty"``, ``"writing"`` (or torn) or ``"complete"``: entry ``index``'s state."""
        seq = int(self._seq[index])
        return "empty" if seq == 0 else ("writing" if seq % 2 else "complete")


class RateLimiter:
    """Updates per inserted transition, between the actors and the learner.

    ``due(N) = floor(replay_ratio * (N - learning_starts))`` updates are due once ``N``
    transitions have been inserted (none before ``learning_starts``). The learner may make
    update ``U + 1`` while ``U < due(N)``; an actor may insert while ``due(N) - U <=
    tolerance``. The learner's update count ``U`` lives in shared memory (written by the
    learner only); ``N`` is the replay's ``inserted``.

    Args:
        replay_ratio: learner updates per env step (``--replay-ratio``), > 0.
        learning_starts: transitions in the replay before the first update.
        tolerance: updates the learner may fall behind before actors wait (0: lockstep).
    """

    def __init__(self, replay_ratio: float, learning_starts: int, tolerance: int) -> None:
        if not replay_ratio > 0 or learning_starts < 0 or tolerance < 0:
            raise ValueError(f"need replay_ratio > 0, learning_starts >= 0, tolerance >= 0, got {replay_ratio}, "
                             f"{learning_starts}, {tolerance}")
        self.replay_ratio = float(replay_ratio)
        self.learning_starts = int(learning_starts)
        self.tolerance = int(tolerance)
        self.updates_tensor = _shared((_LINE,), np.int64)
        self._bind()

    def _bind(self) -> None:
        self._updates = self.updates_tensor.numpy()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    def due(self, inserted: int) -> int:
        """Updates due once ``inserted`` transitions are in (``inserted`` counts since the
        replay was made)."""
        if inserted <= self.learning_starts:
            return 0
        # (a small slack against float rounding: 0.1 * 30 must give 3, not 2)
        return int(math.floor(self.replay_ratio * (inserted - self.learning_starts) + 1e-9))

    def inserted_when_due(self, update: int) -> int:
        """The fewest inserted transitions at which update number ``update`` (1-based) is
        due: the inverse of ``due``. A clock the learner can read without racing the
        actors (``--lr-anneal``)."""
        return self.learning_starts + math.ceil(update / self.replay_ratio - 1e-9)

    @property
    def updates(self) -> int:
        """``U``: the learner's updates since the replay was made."""
        return int(self._updates[0])

    def count_update(self) -> None:
        """The learner made one more update (the learner only)."""
        self._updates[0] += 1

    def learner_may_update(self, inserted: int) -> bool:
        return self.updates < self.due(inserted)

    def actor_may_insert(self, inserted: int) -> bool:
        return self.due(inserted) - self.updates <= self.tolerance


def _shared(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    torch_dtype = torch.from_numpy(np.zeros(0, dtype)).dtype
    return torch.zeros(shape, dtype=torch_dtype).share_memory_()
