"""Staleness under control: ``--serial --policy-lag K``.

With real worker processes an actor-learner's gradient is computed on parameters some
updates old (the policy lag, measured by the Ray parameter server and the batched
learner). ``LaggedModel`` makes that lag a setting: in ``--serial`` mode every pull
(``theta' <- theta``) reads theta as it was ``K`` updates ago (updates of any
actor-learner), from a ring of the last ``K + 1`` snapshots, while every push updates the
current theta. The target network theta^- is unaffected. Serial runs stay deterministic,
so the data efficiency that ``N`` real workers' lag would cost can be studied at any
``N`` on any machine (``asyncrl.bench``).

The lag every run actually had is measured too: each Hogwild actor-learner's view of the
shared state (``MeasuredLag`` on shared memory, ``sync_round.SyncMember``, ``LaggedModel``,
the Ray backend's ``RemoteState``) counts, for each update it applies, the updates of theta
made between the theta its gradient was computed from and that update (``drain_lags``:
``{lag: updates}``); the batched learner counts each rollout's. ``metrics.lag_summary`` turns
the run's counts into the ``policy_lag`` entry of ``summary.json`` (median, 90th percentile).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from asyncrl.metrics import LagCounts, LagMeter
from asyncrl.shared import sync_local


class MeasuredLag:
    """One actor-learner's view of a Hogwild run's shared state on shared memory
    (``backends.contract.SharedModel``; ``SharedState.for_worker`` makes it): ``pull`` and
    ``push`` as the shared state's, and each push's policy lag counted.

    The lag of a push is the number of updates other actor-learners applied to theta since
    this one's last ``pull`` (the theta its gradient was computed from), or, for the one-step
    methods, which differentiate theta itself and never pull, since its own previous push.
    It is read from the global update counter, so a push takes it as of just before its
    own update is counted.

    Args:
        shared: the run's ``algos.base.SharedState``.
        counters: the run's global counters (``policy_version``: updates summed over workers).
    """

    def __init__(self, shared: Any, counters: Any) -> None:
        self.shared, self.counters = shared, counters
        self._since = counters.policy_version
        self.lags = LagMeter()

    def __getattr__(self, name: str) -> Any:  # model, target, optimizer, shared_params, ...
        return getattr(self.shared, name)

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta``, noting the version it reads."""
        self._since = self.counters.policy_version
        self.shared.pull(local_params)

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """``SharedState.push``, counting its lag."""
        version = self.counters.policy_version
        self.lags.count(version - self._since)
        self.shared.push(params, max_grad_norm, lr)
        self._since = version + 1  # (this update; a pull moves it on)

    def drain_lags(self) -> LagCounts:
        """The lags of the pushes since the last call."""
        return self.lags.drain()


class LaggedModel:
    """A Hogwild shared state (``backends.contract.SharedModel``) whose ``pull`` is ``K``
    updates stale.

    Args:
        shared: the run's shared state (``algos.base.SharedState``).
        lag: ``K >= 0``: ``pull`` after update ``u`` gives theta after update
            ``max(0, u - K)`` (the run's first parameters until ``K`` updates are made).

    Raises:
        ValueError: if ``lag`` is negative.
    """

    def __init__(self, shared: Any, lag: int) -> None:
        if lag < 0:
            raise ValueError(f"--policy-lag must be >= 0, got {lag}")
        self.shared, self.lag = shared, lag
        self.updates = 0  # pushes through this wrapper: u
        self._ring: deque[list[torch.Tensor]] = deque(maxlen=lag + 1)  # theta_{u-K} .. theta_u
        self._pulled = 0  # the version (updates) of theta the last pull gave
        self.lags = LagMeter()
        self._snapshot()

    def __getattr__(self, name: str) -> Any:  # model, target, optimizer, shared_params, ...
        return getattr(self.shared, name)

    def _snapshot(self) -> None:
        with torch.no_grad():
            self._ring.append([p.detach().clone() for p in self.shared.shared_params])

    def for_worker(self, worker_id: int, counters: Any) -> tuple[LaggedModel, Any]:
        """Every actor-learner shares the one ring (``--sync`` is not combined with a lag)."""
        return self, counters

    def pull(self, local_params: Sequence[torch.Tensor]) -> None:
        """``theta' <- theta_{u-K}``."""
        self._pulled = self.updates - len(self._ring) + 1
        sync_local(local_params, self._ring[0])

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """One update of the current theta (``SharedState.push``), then a snapshot of it."""
        self.lags.count(self.updates - self._pulled)
        self.shared.push(params, max_grad_norm, lr)
        self.updates += 1
        self._snapshot()

    def drain_lags(self) -> LagCounts:
        """The lags of the pushes since the last call: ``K`` once ``K`` updates are made (every
        actor-learner of a serial run shares these counts)."""
        return self.lags.drain()

    @property
    def current_lag(self) -> int:
        """The lag of the next pull, in updates: ``min(K, u)``."""
        return min(self.lag, self.updates)
