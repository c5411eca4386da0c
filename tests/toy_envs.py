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


class DictChain(Chain):
    """``Chain`` with a ``Dict`` observation: ``{"position": Discrete(4), "bias": Box(1,)}``
    (``image=True``: and a ``(3, 8, 8)`` camera)."""

    def __init__(self, image: bool = False):
        spaces = {"position": gym.spaces.Discrete(4), "bias": gym.spaces.Box(0, 1, (1,), np.float32)}
        if image:
            spaces["camera"] = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)

    def _obs(self):
        obs = {"position": self.position, "bias": np.ones(1, np.float32)}
        if "camera" in self.observation_space.spaces:
            obs["camera"] = np.zeros((3, 8, 8), np.uint8)
        return obs


class OddImages(Chain):
    """Images whose channel axis cannot be told: ``(3, 8, 3)``."""

    observation_space = gym.spaces.Box(0, 255, shape=(3, 8, 3), dtype=np.uint8)

    def _obs(self):
        return np.zeros((3, 8, 3), np.uint8)


class MatchTargets(gym.Env):
    """Each step shows K targets (one-hot each) and pays the fraction of entries the action
    matches: ``MultiDiscrete([n] * K)`` actions (``binary=True``: ``MultiBinary(K)``, targets
    0/1). Episodes of 10 steps: the best return is 10, a uniform policy's 10 / n."""

    def __init__(self, k: int = 3, n: int = 3, binary: bool = False):
        self.k, self.n = k, 2 if binary else n
        self.action_space = gym.spaces.MultiBinary(k) if binary else gym.spaces.MultiDiscrete([n] * k)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (k * self.n,), np.float32)

    def _obs(self):
        obs = np.zeros((self.k, self.n), np.float32)
        obs[np.arange(self.k), self.targets] = 1.0
        return obs.ravel()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.targets = self.np_random.integers(0, self.n, self.k)
        return self._obs(), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.targets))
        self.targets = self.np_random.integers(0, self.n, self.k)
        return self._obs(), reward, False, False, {}


gym.register("FaultyCartPole-v0", entry_point=FaultyCartPole, max_episode_steps=500)
gym.register("MatchTargets-v0", entry_point=MatchTargets, max_episode_steps=10)
gym.register("MatchBits-v0", entry_point=MatchTargets, kwargs={"k": 4, "binary": True}, max_episode_steps=10)
gym.register("DictChain-v0", entry_point=DictChain, max_episode_steps=4)
gym.register("ImageDictChain-v0", entry_point=DictChain, kwargs={"image": True}, max_episode_steps=4)
gym.register("OddImages-v0", entry_point=OddImages, max_episode_steps=4)
gym.register("Chain-v0", entry_point=Chain, max_episode_steps=4)
gym.register("PixelChain-v0", entry_point=PixelChain, max_episode_steps=4)
gym.register("Scripted-v0", entry_point=Scripted)
