"""Algorithms: one module per algorithm, each ending with its ``AlgoSpec``.

Importing this package registers the built-in algorithms (``asyncrl.registry``). A module
declares its config class at the top and ``SPEC = register(AlgoSpec(...))`` at the bottom:
``make_shared(config, obs, action) -> SharedState``, ``build_model(config, obs, action)``,
``greedy_action(model, obs, state) -> (action, state)`` and its workers, which follow
``asyncrl.algos.base.Worker``: an actor-learner (the Hogwild family), or actors and one
learner (the batched and replay families; the learner adds ``finished()``).
"""

# isort: skip_file  (the order of registration is the order of --help, the docs and the study)
from __future__ import annotations

from asyncrl.algos import (
    a2c,  # noqa: F401
    a3c,  # noqa: F401
    ddpg,  # noqa: F401
    dqn,  # noqa: F401
    n_step_q,  # noqa: F401
    one_step,  # noqa: F401
    ppo,  # noqa: F401
    reinforce,  # noqa: F401
    sac,  # noqa: F401
    td3,  # noqa: F401
)
