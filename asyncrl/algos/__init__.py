"""Algorithms: one module per algorithm, each ending with its ``AlgoSpec``.

Importing this package registers the built-in algorithms (``asyncrl.registry``). A module
declares its config class at the top and ``SPEC = register(AlgoSpec(...))`` at the bottom:
``make_shared(config, obs, action) -> SharedState``, ``build_model(config, obs, action)``,
``greedy_action(model, obs, state) -> (action, state)`` and its workers, which follow
``asyncrl.algos.base.Worker``: an actor-learner (the Hogwild family), or actors and one
learner (the batched and replay families; the learner adds ``finished()``).
"""

from __future__ import annotations

from asyncrl.algos import a2c, a3c, ddpg, dqn, n_step_q, one_step, ppo, reinforce, sac, td3

BUILTIN = (
    a3c.SPEC,
    one_step.SPEC,
    one_step.SARSA_SPEC,
    n_step_q.SPEC,
    a2c.SPEC,
    ppo.SPEC,
    reinforce.SPEC,
    dqn.SPEC,
    td3.SPEC,
    ddpg.SPEC,
    sac.SPEC,
)
"""The built-in algorithms, in the order of ``--help``, the docs and the speedup study."""
