"""The algorithm registry: what each algorithm is, declared once in its own module.

An algorithm module ends with ``SPEC = register(AlgoSpec(...))``: its ``--algo`` name, its
family, its config class, the callables the trainer and the backends build it from, the
action and observation kinds it takes, the backends it runs on, its presets and its
speedup-study methods. Everything else -- the CLI's ``--algo`` choices and flags, the space
checks, the Ray backend's dispatch, the benchmark's method list, the docs' algorithm table
-- reads the registry; no other module names an algorithm.

A new algorithm needs nothing under ``asyncrl/``: define its config class (a subclass of
one of ``asyncrl.config.fields``' groups) and its actor-learner, and ``register`` a spec
before ``asyncrl.run.main`` parses the command line (``tests/test_registry.py`` trains one
defined entirely in the test file).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asyncrl.backends import NAMES as backend_names

HOGWILD = "hogwild"
"""Family: actor-learner processes update one shared model lock-free (Mnih et al. 2016)."""
BATCHED = "batched"
"""Family: actor processes fill rollout slots, one learner process trains on them (A2C, PPO)."""
REPLAY = "replay"
"""Family: actor processes fill a shared-memory replay, one learner process samples it (DQN)."""
FAMILIES = (HOGWILD, BATCHED, REPLAY)

ACTION_KINDS = ("discrete", "box", "multi")
"""``Discrete``; a 1-D ``Box``; ``MultiDiscrete`` and ``MultiBinary``."""
OBSERVATION_KINDS = ("vector", "image")
"""A flat ``Box`` (``Discrete``/``Dict``/... are flattened into one); a ``(C, H, W)`` image."""
BACKENDS = backend_names
"""The ``--backend`` values (``asyncrl.backends``)."""

_BUILTIN_PACKAGE = "asyncrl.algos"


@dataclass(frozen=True)
class Preset:
    """Defaults of one algorithm for an environment, replacing its config class's.

    Attributes:
        env: a Gymnasium id, or an ``fnmatch`` pattern (``ALE/*``) used where no exact id
            matches.
        values: config field name to value.
        source: one line: where the values come from and the measurement behind them
            (a ``benchmarks/results/*.md`` file).
    """

    env: str
    values: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class AlgoSpec:
    """One algorithm, as the rest of the package sees it.

    Attributes:
        name: the ``--algo`` value.
        family: ``HOGWILD``, ``BATCHED`` or ``REPLAY``.
        config: its frozen config dataclass (a subclass of a group in
            ``asyncrl.config.fields``); every field is a flag.
        summary: one line for ``--help`` and the docs (with the source paper).
        build_model: ``(config, obs: ObsSpec, action: ActionSpec) -> nn.Module``, not shared.
        make_shared: ``(config, obs, action) -> SharedState``: the model, optimizer and
            whatever the family shares, created before any worker starts.
        greedy_action: ``(model, obs: [*obs_shape] tensor, state) -> (action, state)``.
        actor: ``(worker_id, config, shared, counters) -> Worker``: an actor-learner
            (``HOGWILD``) or an actor.
        learner: the same for the one learner process of ``BATCHED`` and ``REPLAY``
            (``Worker`` plus ``finished()``); None for ``HOGWILD``.
        loss_names: the per-update means its workers report (columns of ``metrics.csv``).
        actions: the ``ACTION_KINDS`` it can act in.
        bounded_actions: a ``Box`` action space must be bounded (policies act in [-1, 1]).
        observations: the ``OBSERVATION_KINDS`` it reads.
        backends: the ``BACKENDS`` it runs on.
        presets: per-environment defaults, most specific first.
        methods: speedup-study method names to the flags they add to ``--algo name``;
            default ``{name: ()}``.
        study: whether the speedup study runs its methods by default: ``"quick"`` (in
            ``--quick`` and the full study), ``"full"`` or ``None``.
        local_copy: its actor-learners act and differentiate on a local copy theta' that
            they ``pull`` from theta, so ``--policy-lag`` can make it stale
            (``asyncrl.policy_lag``).
    """

    name: str
    family: str
    config: type
    summary: str
    build_model: Callable[..., Any]
    make_shared: Callable[..., Any]
    greedy_action: Callable[..., Any]
    actor: Callable[..., Any]
    learner: Callable[..., Any] | None = None
    loss_names: tuple[str, ...] = ()
    actions: frozenset[str] = frozenset({"discrete"})
    bounded_actions: bool = False
    observations: frozenset[str] = frozenset(OBSERVATION_KINDS)
    backends: frozenset[str] = frozenset({"shm"})
    presets: tuple[Preset, ...] = ()
    methods: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    study: str | None = None
    local_copy: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"algorithm {self.name!r}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}"
            )
        if (self.learner is None) != (self.family == HOGWILD):
            raise ValueError(
                f"algorithm {self.name!r}: a {self.family} algorithm "
                + ("has no learner process" if self.family == HOGWILD else "needs a learner")
            )
        for what, kinds, allowed in (
            ("actions", self.actions, ACTION_KINDS),
            ("observations", self.observations, OBSERVATION_KINDS),
            ("backends", self.backends, BACKENDS),
        ):
            if not kinds or set(kinds) - set(allowed):
                raise ValueError(
                    f"algorithm {self.name!r}: {what} must be some of {', '.join(allowed)}, got {sorted(kinds)}"
                )
        if self.study not in (None, "quick", "full"):
            raise ValueError(f"algorithm {self.name!r}: study must be None, 'quick' or 'full', got {self.study!r}")
        if not self.methods:
            object.__setattr__(self, "methods", {self.name: ()})

    def preset(self, env: str) -> Preset | None:
        """The preset for ``env``: the exact id's, else the first matching pattern's, else None."""
        for p in self.presets:
            if p.env == env:
                return p
        for p in self.presets:
            if fnmatch.fnmatchcase(env, p.env):
                return p
        return None


_REGISTRY: dict[str, AlgoSpec] = {}
_builtins_loaded = False


def register(spec: AlgoSpec) -> AlgoSpec:
    """Add ``spec`` to the registry and return it (``SPEC = register(AlgoSpec(...))``).

    Raises:
        ValueError: if another algorithm already has its name.
    """
    known = _REGISTRY.get(spec.name)
    if known is not None and known is not spec:
        raise ValueError(f"algorithm {spec.name!r} is already registered (by {known.actor.__module__})")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove algorithm ``name`` (tests that register their own); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        importlib.import_module(_BUILTIN_PACKAGE)  # each module registers its spec on import


def get(name: str) -> AlgoSpec:
    """The registered algorithm ``name``.

    Raises:
        ValueError: if no algorithm has that name (the message lists those that exist).
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"--algo must be one of {', '.join(names())}, got {name!r}") from None


def specs() -> list[AlgoSpec]:
    """Every registered algorithm: the built-in ones in ``asyncrl.algos.BUILTIN``'s order,
    then the others in registration order."""
    _load_builtins()
    order = {spec.name: i for i, spec in enumerate(importlib.import_module(_BUILTIN_PACKAGE).BUILTIN)}
    return sorted(
        _REGISTRY.values(), key=lambda spec: order.get(spec.name, len(order))
    )  # (stable: then by registration)


def names(where: Callable[[AlgoSpec], bool] | None = None) -> list[str]:
    """The names of the registered algorithms (those for which ``where`` is true), sorted."""
    return sorted(s.name for s in specs() if where is None or where(s))


def methods() -> dict[str, tuple[AlgoSpec, tuple[str, ...]]]:
    """Speedup-study method name to ``(spec, its asyncrl.run flags)``: ``--algo name`` plus
    the method's own flags."""
    return {method: (s, ("--algo", s.name, *flags)) for s in specs() for method, flags in s.methods.items()}
