"""The shared-memory backend (``--backend shm``, the default): the model, optimizer
statistics, step counter, rollout slots and replay in shared memory
(``asyncrl.shared``, ``asyncrl.storage``, ``asyncrl.replay``), the workers forked by
``asyncrl.supervisor.Supervisor`` on this machine."""

from __future__ import annotations

from typing import Any

from asyncrl.backends import Backend


def check(config: Any) -> None:
    """Nothing to check: shared memory runs every algorithm."""


def make_supervisor(config: Any, shared: Any, counters: Any, obs: Any, action: Any, learner_id: int | None) -> Any:
    """A ``Supervisor`` forking the workers on this machine."""
    from asyncrl.supervisor import Supervisor

    return Supervisor(config, shared, counters, learner_id)


BACKEND = Backend(
    name="shm",
    summary="shared memory on one machine; workers are forked processes",
    check=check,
    make_supervisor=make_supervisor,
)
