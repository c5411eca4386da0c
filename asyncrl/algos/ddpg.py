"""Deep deterministic policy gradient (Lillicrap et al. 2016, Algorithm 1): TD3's update
(``asyncrl.algos.td3``) with one critic, no target policy smoothing and the actor updated
at every critic update (``config.DDPGConfig``'s defaults), with asynchronous actors on a
shared-memory replay."""

from __future__ import annotations

from asyncrl.algos.td3 import LOSS_NAMES, ActorLearner, Learner, build_model, greedy_action, learn, make_shared

__all__ = ["LOSS_NAMES", "ActorLearner", "Learner", "build_model", "greedy_action", "learn", "make_shared"]
