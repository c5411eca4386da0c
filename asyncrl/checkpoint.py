"""Checkpoints: atomic writes, validated reads, and a run's shared state into and out of them."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FORMAT = "asyncrl-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, truncated or not one of ours."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint`` keeps the checkpoint it replaced: ``checkpoint.prev.pt``."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically, keeping the one it replaces.

    The data goes to a temporary file in the same folder, is flushed and fsynced, and
    then renamed over ``path``; a crash at any point leaves either the previous
    checkpoint or the new one, never a partial file. The replaced checkpoint stays
    readable at ``previous_path(path)`` (a hard link, taken before the rename; a copy on
    filesystems without hard links).

    Args:
        path: destination, conventionally ``RUN_DIR/checkpoint.pt``.
        payload: tensors, state dicts and plain Python values (loadable with
            ``torch.load(weights_only=True)``).
    """
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            keep = previous_path(path)
            link_tmp = keep.with_name(keep.name + ".tmp")
            if link_tmp.exists():
                link_tmp.unlink()
            try:
                os.link(path, link_tmp)
            except OSError:  # a filesystem without hard links (some network and FUSE mounts)
                shutil.copyfile(path, link_tmp)
            os.replace(link_tmp, keep)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Returns:
        The payload, with ``model`` (state dict), ``optimizer`` (state dict),
        ``config`` (``Config.to_dict()``) and counters.

    Raises:
        CheckpointError: if the file is missing, unreadable, truncated or corrupt, or
            is not an asyncrl checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, corrupt or not a checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an asyncrl checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}, expected {VERSION}")
    for key in ("model", "config"):
        if key not in data:
            raise CheckpointError(f"{path} has no {key!r} entry")
    return data


def load_latest_good(path: str | os.PathLike) -> tuple[dict[str, Any], Path, str | None]:
    """Load ``path``, or the previous checkpoint if ``path`` is damaged.

    Returns:
        ``(payload, path_loaded, warning)``; ``warning`` says why the previous one was
        used (None when ``path`` itself was good).

    Raises:
        CheckpointError: if neither is readable (the message names both problems).
    """
    try:
        return load_checkpoint(path), Path(path), None
    except CheckpointError as first:
        prev = previous_path(path)
        try:
            data = load_checkpoint(prev)
        except CheckpointError as second:
            raise CheckpointError(f"{first}; and the previous one: {second}") from None
        return data, prev, f"{first}; using the previous checkpoint {prev} (T={data.get('global_step')})"


def snapshot_shared(shared: Any, writer_alive: Callable[[], bool]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The shared model's and optimizer's state dicts, to save.

    With a learner (``shared.policy``), copies taken from one complete publication,
    never half of one.

    Args:
        shared: the run's ``SharedState``.
        writer_alive: whether the learner process that publishes still runs.

    Returns:
        ``(model, optimizer)``, or None if the learner died in the middle of a
        publication (shared memory holds half of one: nothing consistent to save).

    Raises:
        storage.PublicationStalled: if a live learner held one publication open for
            ``storage.PUBLICATION_TIMEOUT_S``.
    """
    if shared.policy is None:
        return shared.model.state_dict(), shared.optimizer.state_dict()
    out: list = []

    def take_copies() -> None:
        out[:] = [copy.deepcopy(shared.model.state_dict()), copy.deepcopy(shared.optimizer.state_dict())]

    version = shared.policy.read(take_copies, should_stop=lambda: not writer_alive())
    return None if version is None else (out[0], out[1])


def restore_shared(shared: Any, data: dict[str, Any], path: str | os.PathLike) -> None:
    """Load a checkpoint's model, optimizer statistics, target network and policy version
    into the run's ``SharedState``, in place (the statistics stay in shared memory).

    Raises:
        CheckpointError: if the checkpoint ``path`` does not fit this run's shared state.
    """
    from asyncrl.shared import load_optimizer_state_in_place

    try:
        shared.model.load_state_dict(data["model"])
        load_optimizer_state_in_place(shared.optimizer, data["optimizer"])
        if shared.target is not None:
            shared.target.model.load_state_dict(data["target_model"])
            shared.target.refreshes_tensor.fill_(int(data["target_refreshes"]))
        if shared.policy is not None:
            shared.policy.sequence.fill_(2 * int(data["policy_version"]))
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} does not fit this run: {str(exc).splitlines()[0]}") from None
