"""Checkpoints: atomic writes, validated reads."""

from __future__ import annotations

import os
import tempfile
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
    readable at ``previous_path(path)`` (a hard link, taken before the rename).

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
            os.link(path, link_tmp)
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
