"""Deep deterministic policy gradient (Lillicrap et al. 2016, Algorithm 1): TD3's update
(``asyncrl.algos.td3``) with one critic, no target policy smoothing and the actor updated
at every critic update (``DDPGConfig``'s defaults), with asynchronous actors on a
shared-memory replay."""

from __future__ import annotations

import dataclasses

from asyncrl.algos.td3 import PENDULUM, TD3Config
from asyncrl.algos.td3 import SPEC as TD3_SPEC
from asyncrl.config.fields import configclass
from asyncrl.registry import register


@configclass
class DDPGConfig(TD3Config):
    """Deep deterministic policy gradient (Lillicrap et al. 2016): TD3 with one critic, no
    target smoothing and no delay. Defaults as SB3's DDPG (Adam lr 1e-3 for actor and
    critic, tau 0.005, batch 256, 256-256 networks, Gaussian noise 0.1) rather than the
    paper's (lr 1e-4/1e-3, tau 0.001, batch 64, Ornstein-Uhlenbeck noise, 400-300)."""

    policy_delay: int = 1
    target_noise: float = 0.0
    target_noise_clip: float = 0.0
    n_critics: int = 1


SPEC = register(
    dataclasses.replace(
        TD3_SPEC,
        name="ddpg",
        config=DDPGConfig,
        summary="deep deterministic policy gradient (Lillicrap et al. 2016), asynchronous actors, shared replay",
        presets=(PENDULUM,),
        methods={},
    )
)
