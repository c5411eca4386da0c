"""Process memory as reported in metrics.csv and the summary: shared pages counted once."""

import time

import psutil
import torch

from asyncrl.metrics import process_memory

CTX = torch.multiprocessing.get_context("fork")


def _hold(ready, release):
    ready.set()
    release.wait(30)


def test_process_memory_counts_pages_shared_by_forked_workers_once():
    """Forked workers map the parent's libraries (torch's alone is hundreds of MiB): RSS
    counts them once per process, PSS divides them among the processes."""
    children = []
    release = CTX.Event()
    try:
        for _ in range(3):
            ready = CTX.Event()
            child = CTX.Process(target=_hold, args=(ready, release), daemon=True)
            child.start()
            assert ready.wait(30)
            children.append(child)
        procs = [psutil.Process()] + [psutil.Process(c.pid) for c in children]
        memory = process_memory(procs)
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        alone = process_memory([psutil.Process()])
        assert 0 < memory["uss_mb"] < memory["pss_mb"] < rss
        assert memory["pss_mb"] < 0.6 * rss  # four processes sharing most of their pages
        assert alone["pss_mb"] < psutil.Process().memory_info().rss / 2**20
    finally:
        release.set()
        for child in children:
            child.join(timeout=10)


def test_process_memory_skips_processes_that_exited():
    child = CTX.Process(target=time.sleep, args=(0,))
    child.start()
    handle = psutil.Process(child.pid)
    child.join()
    memory = process_memory([psutil.Process(), handle])
    assert memory["pss_mb"] > 0 and memory["uss_mb"] > 0
