"""WorkerStats: drained from another thread than the one that counts (the Ray learner
server reports from its RPC thread while its learner trains)."""

import sys
import threading

from asyncrl.algos.base import WorkerStats
from asyncrl.shared import GlobalCounters


def test_drains_from_another_thread_lose_and_repeat_nothing():
    stats = WorkerStats(GlobalCounters(1))
    n, drained = 300_000, []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch at almost every bytecode
    try:
        def train():
            for i in range(n):
                stats.update({"loss": 1.0, "entropy": 2.0})
                stats.step(1.0, done=i % 100 == 99)

        thread = threading.Thread(target=train)
        thread.start()
        while thread.is_alive():
            drained.append(stats.drain())
        thread.join()
    finally:
        sys.setswitchinterval(old)
    drained.append(stats.drain())
    assert sum(d["updates"] for d in drained) == n
    assert sum(d["loss_sums"].get("loss", 0.0) for d in drained) == n
    assert sum(d["loss_sums"].get("entropy", 0.0) for d in drained) == 2 * n
    assert sum(len(d["episodes"]) for d in drained) == n // 100
    # each drain's loss sums belong to exactly its own updates
    assert all(d["loss_sums"].get("loss", 0.0) == d["updates"] for d in drained)
