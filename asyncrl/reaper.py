"""``python -m asyncrl.reaper PID``: end a local Ray instance whose driver was killed.

A run with ``--backend ray`` and no ``--address`` starts its own Ray instance (GCS, raylet,
agents, workers) as descendants of the driver. ``ray.shutdown()`` ends them when the driver
exits in any ordinary way (also on Ctrl-C); a driver killed outright (SIGKILL, the OOM
killer) would leave some behind (Ray's per-node agents outlive their raylet). This
watcher, started by the driver with a pipe on its standard input, notes the driver's Ray
descendants every ``SNAPSHOT_S`` seconds; when the pipe closes without the word ``exit``
(the driver died), it kills the ones still running and everything they started since, even
if the driver's last moments hid them from a look. It imports psutil only.
"""

from __future__ import annotations

import os
import select
import signal
import sys

import psutil

SNAPSHOT_S = 0.5
"""Seconds between two looks at the driver's descendants."""


def ray_descendants(driver: psutil.Process) -> list[psutil.Process]:
    """The driver's descendants that belong to Ray (by name or command line)."""
    out = []
    for proc in driver.children(recursive=True):
        try:
            text = proc.name() + " " + " ".join(proc.cmdline()[:3])
        except psutil.Error:
            continue
        if "ray" in text:
            out.append(proc)
    return out


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _with_descendants(processes: list[psutil.Process]) -> list[psutil.Process]:
    """``processes`` and their descendants now: a worker the raylet started after the last
    snapshot is found under it, not left behind when the raylet is killed."""
    out = {p.pid: p for p in processes}
    for proc in processes:
        try:
            out.update((child.pid, child) for child in proc.children(recursive=True))
        except psutil.Error:
            pass
    return list(out.values())


def watch(driver_pid: int, stream=None) -> int:
    """Watch ``driver_pid`` until ``stream`` (a pipe from it) says ``exit`` or closes; on a
    close, kill the Ray descendants it has seen that still run, and theirs. Returns how many
    it killed."""
    stream = stream if stream is not None else sys.stdin.buffer
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    known: dict[int, psutil.Process] = {}
    fd = stream.fileno()
    while True:
        readable, _, _ = select.select([fd], [], [], SNAPSHOT_S)
        if readable:
            data = os.read(fd, 64)
            if data.startswith(b"exit"):
                return 0
            if not data:  # EOF: the driver is gone, however it died
                break
        try:
            seen = ray_descendants(driver)
        except psutil.NoSuchProcess:
            break
        # Keep what earlier looks saw: a driver that died since (a zombie until reaped) has
        # no children left to list, and its pipe may close only after this look.
        known = {pid: proc for pid, proc in known.items() if _running(proc)}
        known.update((proc.pid, proc) for proc in seen)
    killed = 0
    for proc in _with_descendants(list(known.values())):
        try:
            if proc.is_running():  # (psutil compares creation times: a reused pid is not this process)
                proc.kill()
                killed += 1
        except psutil.Error:
            pass
    return killed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the driver's to handle
    watch(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
