"""Staleness under control: ``--serial --policy-lag K``.

With real worker processes an actor-learner's gradient is computed on parameters some
updates old (the policy lag, measured by the Ray parameter server and the batched
learner). ``LaggedModel`` makes that lag a setting: in ``--serial`` mode every pull
(``theta' <- theta``) reads theta as it was ``K`` updates ago (updates of any
actor-learner), from a ring of the last ``K + 1`` snapshots, while every push updates the
current theta. The target network theta^- is unaffected. Serial runs stay deterministic,
so the data efficiency that ``N`` real workers' lag would cost can be studied at any
``N`` on any machine (``asyncrl.bench``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from asyncrl.shared import sync_local


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
        sync_local(local_params, self._ring[0])

    def push(self, params: Sequence[torch.Tensor], max_grad_norm: float, lr: float | None = None) -> None:
        """One update of the current theta (``SharedState.push``), then a snapshot of it."""
        self.shared.push(params, max_grad_norm, lr)
        self.updates += 1
        self._snapshot()

    @property
    def current_lag(self) -> int:
        """The lag of the next pull, in updates: ``min(K, u)``."""
        return min(self.lag, self.updates)
