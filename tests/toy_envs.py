"""Small environments for tests, registered on import.

Use as ``--env toy_envs:FaultyCartPole-v0`` with this folder on PYTHONPATH, or import
this module and ``gym.make("Chain-v0")``.
"""

import gymnasium as gym
import numpy as np
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


class Chain(gym.Env):
    """A walk on the integers from 0: action 1 moves right, action 0 stays. Reaching 3
    terminates with reward 10; every other step pays ``0.1 * position``. Registered with a
    time limit of 4 steps, so episodes both terminate and are truncated."""

    observation_space = gym.spaces.Box(-1.0, 10.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.position, 1.0], dtype=np.float32)

    def step(self, action):
        self.position += int(action)
        terminated = self.position >= 3
        reward = 10.0 if terminated else 0.1 * self.position
        return self._obs(), reward, terminated, False, {}


class Scripted(gym.Env):
    """One-step episodes whose return follows a script: 1.0 for this instance's first
    ``good_episodes`` episodes, 0.0 after them."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, good_episodes: int = 25):
        self.good_episodes = good_episodes
        self.episodes = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        reward = 1.0 if self.episodes < self.good_episodes else 0.0
        self.episodes += 1
        return np.zeros(1, np.float32), reward, True, False, {}


class PixelChain(Chain):
    """``Chain`` seen as ``[2, 6, 6] uint8`` images: channel 0 lights column ``position``
    with 255, channel 1 is all 255 (the image counterpart of Chain's constant feature)."""

    observation_space = gym.spaces.Box(0, 255, shape=(2, 6, 6), dtype=np.uint8)

    def _obs(self):
        image = np.zeros((2, 6, 6), np.uint8)
        image[0, :, self.position] = 255
        image[1] = 255
        return image


gym.register("FaultyCartPole-v0", entry_point=FaultyCartPole, max_episode_steps=500)
gym.register("Chain-v0", entry_point=Chain, max_episode_steps=4)
gym.register("PixelChain-v0", entry_point=PixelChain, max_episode_steps=4)
gym.register("Scripted-v0", entry_point=Scripted)
