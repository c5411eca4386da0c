"""Where the shared state lives: one backend per ``--backend`` value.

A backend is a ``Backend``: a check run before anything starts, and the supervisor that
starts the workers and collects their reports. What the workers and the trainer may ask of
it is written in ``asyncrl.backends.contract``; ``shm`` (shared memory, one machine) and
``ray`` (a parameter server or learner server as a Ray actor, workers on any node)
implement it, and the algorithms do not know which one runs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAMES = ("shm", "ray")
"""The ``--backend`` values, each a module ``asyncrl.backends.<name>`` with a ``BACKEND``."""


class BackendError(ValueError):
    """A run that its backend cannot start (missing extra, unreachable cluster, an algorithm
    it does not run); the CLI prints it on one line and exits with code 2."""


@dataclass(frozen=True)
class Backend:
    """One backend, as the trainer sees it.

    Attributes:
        name: the ``--backend`` value.
        summary: one line for the docs.
        check: ``(config) -> None``, before any process starts; raises ``BackendError``.
        make_supervisor: ``(config, shared, counters, obs, action, learner_id) ->
            Supervisor`` (``contract.Supervisor``); may raise ``BackendError``.
        remote: workers reach the shared state through a server rather than shared
            memory: the server measures each update's policy lag, and the run's summary
            records where the workers ran.
    """

    name: str
    summary: str
    check: Callable[[Any], None]
    make_supervisor: Callable[..., Any]
    remote: bool = False


def get(name: str) -> Backend:
    """The backend ``--backend name`` (its module is imported now).

    Raises:
        ValueError: if there is no such backend.
    """
    if name not in NAMES:
        raise ValueError(f"--backend must be one of {', '.join(NAMES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").BACKEND
