"""Algorithms: one module per algorithm, each an actor-learner and its shared state.

Each module provides ``make_shared(config, obs, action) -> SharedState`` (``obs``: a
``networks.ObsSpec``; ``action``: a ``distributions.ActionSpec`` or a number of discrete
actions), ``build_model(config, obs, action)``, ``greedy_action(model, obs, state) ->
(action, state)`` (``state``: a recurrent policy's, else None) and an ``ActorLearner``
class following ``asyncrl.algos.base.ActorLearner``. The batched-learner algorithms (A2C,
PPO, REINFORCE) and the off-policy learners (DQN, DDPG, TD3, SAC) also provide
``Learner``: the same protocol for the one learner process, plus ``finished()``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ALGO_MODULES = {
    "a3c": "asyncrl.algos.a3c",
    "one-step-q": "asyncrl.algos.one_step",
    "one-step-sarsa": "asyncrl.algos.one_step",
    "n-step-q": "asyncrl.algos.n_step_q",
    "a2c": "asyncrl.algos.a2c",
    "ppo": "asyncrl.algos.ppo",
    "reinforce": "asyncrl.algos.reinforce",
    "dqn": "asyncrl.algos.dqn",
    "ddpg": "asyncrl.algos.ddpg",
    "td3": "asyncrl.algos.td3",
    "sac": "asyncrl.algos.sac",
}
"""``--algo`` value to the module implementing it."""

CONTINUOUS_ACTIONS = frozenset({"a3c", "a2c", "ppo", "reinforce", "ddpg", "td3", "sac"})
"""Algorithms that can act in ``Box`` action spaces (the others need ``Discrete`` ones)."""

MULTI_ACTIONS = frozenset({"a3c", "a2c", "ppo"})
"""Algorithms that can act in ``MultiDiscrete`` and ``MultiBinary`` action spaces
(independent categoricals / Bernoullis)."""

CONTINUOUS_ONLY = frozenset({"ddpg", "td3", "sac"})
"""Algorithms that need a bounded ``Box`` action space (their policies act in ``[-1, 1]``)."""

OFF_POLICY = frozenset({"dqn", "ddpg", "td3", "sac"})
"""Algorithms that learn from a shared-memory replay (``asyncrl.algos.offpolicy``)."""


def algo_module(name: str) -> ModuleType:
    """The module implementing algorithm ``name``.

    Raises:
        ValueError: if ``name`` is not an algorithm of this package.
    """
    try:
        return importlib.import_module(ALGO_MODULES[name])
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(ALGO_MODULES)}") from None
