"""Checkpoints: atomic writes that keep the previous one, damaged files detected."""

import pytest
import torch

from asyncrl.checkpoint import CheckpointError, load_checkpoint, load_latest_good, previous_path, save_checkpoint


def _payload(step):
    return {"model": {"w": torch.full((3,), float(step))}, "config": {}, "global_step": step}


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1))
    assert not previous_path(path).exists()
    save_checkpoint(path, _payload(2))
    save_checkpoint(path, _payload(3))
    assert load_checkpoint(path)["global_step"] == 3
    assert load_checkpoint(previous_path(path))["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_damaged_checkpoint_is_detected_and_the_previous_one_used(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(data))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    loaded, used, warning = load_latest_good(path)
    assert loaded["global_step"] == 1 and used == previous_path(path)
    assert "using the previous checkpoint" in warning


def test_no_readable_checkpoint_raises(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="and the previous one"):
        load_latest_good(path)


def test_filesystem_without_hard_links_keeps_the_previous_checkpoint_as_a_copy(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")  # as on some network and FUSE mounts

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1))
    save_checkpoint(path, _payload(2))
    save_checkpoint(path, _payload(3))
    assert load_checkpoint(path)["global_step"] == 3
    assert load_checkpoint(previous_path(path))["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]
