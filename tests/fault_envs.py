"""Environments that misbehave on purpose, for fault tests.

Used as ``--env fault_envs:FaultyCartPole-v0`` with this folder on PYTHONPATH.
"""

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    """CartPole whose ``step`` raises after ``fail_after`` steps (in every worker)."""

    def __init__(self, fail_after: int = 300, **kwargs):
        super().__init__(**kwargs)
        self.fail_after = fail_after
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps > self.fail_after:
            raise RuntimeError(f"simulated environment failure at step {self.steps}")
        return super().step(action)


gym.register("FaultyCartPole-v0", entry_point=FaultyCartPole, max_episode_steps=500)
