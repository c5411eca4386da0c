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
import numpy.typing as npt
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


def check_replay_memory(capacity: int, actors: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    """The shared memory a replay of ``capacity`` transitions written by ``actors`` takes,
    in bytes (``SharedReplay.layout``).

    Raises:
        ReplayMemoryError: if that is more than ``REPLAY_MEMORY_SHARE`` of the memory
            available now (``psutil.virtual_memory().available``).
    """
    import psutil

    nbytes = SharedReplay.layout(capacity, actors, fields)["nbytes"]
    available = psutil.virtual_memory().available
    if nbytes > REPLAY_MEMORY_SHARE * available:
        raise ReplayMemoryError(
            f"--replay-size {capacity:,} needs {nbytes / 2**30:.1f} GiB of shared memory, more "
            f"than {REPLAY_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available"
        )
    return nbytes


def transition_fields(
    obs_shape: tuple[int, ...], obs_dtype: np.dtype, action_shape: tuple[int, ...], action_dtype: np.dtype
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
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


FRAME_BYTES = 1024
"""Image observations whose frames (one channel, ``H x W``) take at least this many bytes are
stored frame by frame (``SharedReplay``)."""


class SharedReplay:
    """A ring of ``capacity`` transitions in shared memory, one segment per actor.

    Actor ``w`` owns entries ``w * S .. (w + 1) * S - 1`` with ``S = capacity // actors``
    and overwrites its own oldest entry once its segment is full, so the replay holds
    each actor's latest ``S`` transitions. ``sample`` draws uniformly over all complete
    entries. Memory: ``nbytes``.

    **Frames stored once.** Stacked image observations (Atari's ``[4, 84, 84]``: frames
    ``t-3 .. t``) share all but one frame with the next observation, and ``next_obs`` is a
    later ``obs``. Where a frame takes at least ``FRAME_BYTES``, each actor also owns a ring
    of ``F = S + S // 16 + 8 K`` single frames (``K``: frames per observation), and a
    transition stores the frame numbers of its ``obs`` and ``next_obs`` (``[K]`` int64 each)
    instead of the images: ``add`` writes a frame only if it is not one of the actor's
    recent ones (compared by content, so any stacking and any episode boundary is right),
    and ``sample`` assembles the images (the layout of the DQN reference code and of SB3's
    ``optimize_memory_usage``). 1M Atari transitions: 7.1 GiB instead of 52.6 GiB.
    A frame is written before the transition that refers to it is published, and ``sample``
    redraws an entry whose frames the actor's ring has overwritten since (only where
    episodes average under ~16 steps can that happen to live entries).

    Args:
        capacity: transitions in all (``--replay-size``), at least one per actor.
        actors: actor processes writing it.
        fields: ``transition_fields(...)``.

    Raises:
        ValueError: if ``capacity < actors`` or ``actors < 1``.
    """

    def __init__(self, capacity: int, actors: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        layout = self.layout(capacity, actors, fields)
        self.actors = int(actors)
        self.segment, self.capacity = layout["segment"], layout["capacity"]
        self.fields = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in fields.items()}
        self.stack, self.frame_capacity = layout["stack"], layout["frame_capacity"]  # K, F (0, 0: no frame store)
        self.stored = layout["stored"]  # the fields as kept: obs / next_obs as frame numbers with a frame store
        self.tensors = {name: _shared((self.capacity, *shape), dtype) for name, (shape, dtype) in self.stored.items()}
        self.sequence_tensor = _shared((self.capacity,), np.int64)  # per entry: odd while written
        self.written_tensor = _shared((self.actors, _LINE), np.int64)  # per actor: transitions written (column 0)
        if self.stack:
            shape, dtype = self.fields["obs"]
            self.frames_tensor = _shared((self.actors, self.frame_capacity, *shape[1:]), dtype)  # [A, F, H, W]
            self.frames_written_tensor = _shared((self.actors, _LINE), np.int64)  # per actor: frames (column 0)
        self.nbytes = layout["nbytes"]
        """Shared memory taken by the transitions (and frames), in bytes."""
        self._bind()

    @staticmethod
    def layout(capacity: int, actors: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict:
        """How ``capacity`` transitions of ``fields`` written by ``actors`` are kept:
        ``segment``, ``capacity`` (a multiple of ``actors``), ``stack`` (``K``, or 0 without
        a frame store), ``frame_capacity`` (``F`` per actor), ``stored`` (the fields as
        kept) and ``nbytes`` (all of it, sequence numbers included).

        Raises:
            ValueError: if ``capacity < actors`` or ``actors < 1``.
        """
        if actors < 1 or capacity < actors:
            raise ValueError(f"--replay-size must hold at least one transition per actor ({actors}), got {capacity}")
        segment = int(capacity) // int(actors)
        shape, dtype = fields["obs"]
        frame_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize if len(shape) == 3 else 0
        stack = shape[0] if frame_bytes >= FRAME_BYTES else 0
        stored = dict(fields)
        frame_capacity = 0
        if stack:
            frame_capacity = segment + segment // 16 + 8 * stack
            stored["obs"] = stored["next_obs"] = ((stack,), np.dtype(np.int64))  # frame numbers
        entry = 8 + sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for s, d in stored.values())
        nbytes = segment * actors * entry + actors * frame_capacity * frame_bytes
        return {
            "segment": segment,
            "capacity": segment * actors,
            "stack": stack,
            "frame_capacity": frame_capacity,
            "stored": stored,
            "nbytes": nbytes,
        }

    def _bind(self) -> None:
        self._arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}
        self._seq = self.sequence_tensor.numpy()
        self._written = self.written_tensor.numpy()[:, 0]
        if self.stack:
            self._frames = self.frames_tensor.numpy()
            self._frames_written = self.frames_written_tensor.numpy()[:, 0]
            self._recent: dict[int, list[int]] = {}  # per actor, this process's newest frame numbers

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
        if self.stack:  # the images as frame numbers, writing the frames not already in the ring
            transition = {
                **transition,
                "obs": self._frame_numbers(actor, transition["obs"]),
                "next_obs": self._frame_numbers(actor, transition["next_obs"]),
            }
        index = actor * self.segment + int(self._written[actor]) % self.segment
        seq = int(self._seq[index])
        seq += 1 if seq % 2 == 0 else 2  # odd: being written (also over a torn entry a dead actor left)
        self._seq[index] = seq
        for name, array in self._arrays.items():
            array[index] = transition[name]
        self._seq[index] = seq + 1  # even: complete
        self._written[actor] += 1
        return index

    def _frame_numbers(self, actor: int, stack: np.ndarray) -> np.ndarray:
        """``[K]`` frame numbers of the images ``stack: [K, H, W]`` in actor ``actor``'s
        ring: a frame equal to one of its ``2K + 8`` newest is that one, any other is
        written (numbers count the actor's frames from 0; slot = number % F)."""
        F, frames, written = self.frame_capacity, self._frames[actor], self._frames_written
        recent = self._recent.setdefault(actor, [])
        numbers = np.empty(self.stack, np.int64)
        for k in range(self.stack):
            frame = stack[k]
            for number in reversed(recent):
                if np.array_equal(frames[number % F], frame):
                    break
            else:
                number = int(written[actor])
                frames[number % F] = frame
                written[actor] = number + 1  # after the frame: complete before any transition names it
                recent.append(number)
                del recent[: -2 * self.stack - 8]
            numbers[k] = number
        return numbers

    def _assemble(self, copies: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
        """Replace the frame numbers of ``copies``' ``obs``/``next_obs`` by the images
        (``[k, K, H, W]``); returns which of the ``k`` rows still had all their frames
        (none overwritten by the ring during the copy or before)."""
        actor = index // self.segment  # [k]
        intact = np.ones(len(index), bool)
        for name in ("obs", "next_obs"):
            numbers = copies[name]  # [k, K]
            copies[name] = self._frames[actor[:, None], numbers % self.frame_capacity]  # [k, K, H, W], a copy
            intact &= numbers.min(axis=1) > self._frames_written[actor] - self.frame_capacity  # read after the copy
        return intact

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
            if self.stack:
                good &= self._assemble(copies, index)
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
            raise ValueError(
                f"need replay_ratio > 0, learning_starts >= 0, tolerance >= 0, got {replay_ratio}, "
                f"{learning_starts}, {tolerance}"
            )
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


def _shared(shape: tuple[int, ...], dtype: npt.DTypeLike) -> torch.Tensor:
    """A zero tensor allocated in shared memory directly (``torch.zeros(...).share_memory_()``
    would build it in private memory first and copy it: twice a 7 GiB replay at its peak).
    The pages of a new shared-memory file read as zeros and take memory only once written."""
    torch_dtype = torch.from_numpy(np.zeros(0, dtype)).dtype
    numel = int(np.prod(shape, dtype=np.int64))
    storage = torch.UntypedStorage._new_shared(numel * torch_dtype.itemsize)
    return torch.empty(0, dtype=torch_dtype).set_(storage, 0, tuple(shape))  # type: ignore[call-overload]
