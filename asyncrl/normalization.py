"""Observation normalisation and reward scaling for the batched learner, with one set of
statistics for all actors.

The transformations are Gymnasium's wrappers, set up as CleanRL's
``ppo_continuous_action`` and Stable-Baselines3's ``VecNormalize`` use them:
``NormalizeObservation`` then a clip to ``[-obs_clip, obs_clip]``; ``NormalizeReward``
(each reward divided by the running standard deviation of the discounted return
``G_t = gamma G_{t-1} (1 - terminated) + r_t``) then a clip to ``[-reward_clip, reward_clip]``.

**Where the statistics live.** Each actor process steps its own copies of the wrappers;
left to themselves they would each keep their own running statistics and the actors
would act, and the learner learn, on differently scaled inputs. Here the statistics are
**kept by the learner and published with the weights**: they are buffers of the model
(``Normalizer``), so the learner's publication (one sequence-locked copy) carries weights
and statistics together, checkpoints save them, ``--resume`` restores them and
``evaluate`` normalises with them. The actors' wrappers never update themselves
(``update_running_mean = False``); each rollout, an actor sends the raw moments (count,
mean, variance) of the observations and discounted returns it saw, and the learner merges
them into its statistics with Chan et al.'s parallel update (Gymnasium's
``RunningMeanStd.update_from_moments``) after training on that batch.

Why not merge the actors' own running statistics: a policy is then a *pair* (weights,
statistics) that changes only at a publication, so ``policy_version`` names exactly the
function that chose each action (log-probs, V-trace and the policy lag stay exact), the
observations stored in a rollout are those the policy saw, and a run's result does not
depend on how the actors' steps interleave. The price is a lag of one publication: the
first rollouts are normalised with the initial statistics (mean 0, variance 1).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd
from torch import nn


class Normalizer(nn.Module):
    """The running statistics of the observations and discounted returns, as buffers of
    the actor-critic (see the module docstring); its ``forward`` is never called.

    Buffers (float64): ``obs_mean: [D]``, ``obs_var: [D]``, ``obs_count: []``,
    ``return_mean: []``, ``return_var: []``, ``return_count: []``; initially mean 0,
    variance 1, count 1e-4 (Gymnasium's ``RunningMeanStd``).

    Args:
        obs_dim: ``D``, the size of a flat observation.
    """

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        initial = RunningMeanStd(shape=(obs_dim,))
        self.register_buffer("obs_mean", torch.from_numpy(initial.mean.copy()))
        self.register_buffer("obs_var", torch.from_numpy(initial.var.copy()))
        self.register_buffer("obs_count", torch.tensor(float(initial.count), dtype=torch.float64))
        self.register_buffer("return_mean", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("return_var", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("return_count", torch.tensor(float(initial.count), dtype=torch.float64))

    def running(self) -> tuple[RunningMeanStd, RunningMeanStd]:
        """Gymnasium ``RunningMeanStd`` objects (observations, returns) holding copies of the
        buffers' values."""
        obs, ret = RunningMeanStd(shape=tuple(self.obs_mean.shape)), RunningMeanStd(shape=())
        obs.mean, obs.var, obs.count = (
            self.obs_mean.cpu().numpy().copy(),
            self.obs_var.cpu().numpy().copy(),
            float(self.obs_count),
        )
        ret.mean, ret.var, ret.count = (
            self.return_mean.cpu().numpy().copy(),
            self.return_var.cpu().numpy().copy(),
            float(self.return_count),
        )
        return obs, ret

    @torch.no_grad()
    def store(self, obs: RunningMeanStd, ret: RunningMeanStd) -> None:
        """Write the statistics of ``running``'s objects back into the buffers."""
        self.obs_mean.copy_(torch.as_tensor(obs.mean, dtype=torch.float64))
        self.obs_var.copy_(torch.as_tensor(obs.var, dtype=torch.float64))
        self.obs_count.fill_(float(obs.count))
        self.return_mean.fill_(float(ret.mean))
        self.return_var.fill_(float(ret.var))
        self.return_count.fill_(float(ret.count))


def stats_size(obs_dim: int) -> int:
    """Length of one rollout's moments vector (``rollout_moments``) for ``obs_dim``-sized observations."""
    return 2 * obs_dim + 4


def rollout_moments(raw_obs: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """The moments one rollout sends to the learner.

    Args:
        raw_obs: ``[N, D]`` the unnormalised observations the policy acted on.
        returns: ``[N]`` the discounted returns ``G_t`` after each step.

    Returns:
        ``[2D + 4]`` float64: ``N``, ``mean(raw_obs)``, ``var(raw_obs)``, ``N``,
        ``mean(returns)``, ``var(returns)`` (population variances, as ``RunningMeanStd``).
    """
    raw_obs = np.asarray(raw_obs, np.float64)
    returns = np.asarray(returns, np.float64)
    return np.concatenate(
        [[len(raw_obs)], raw_obs.mean(0), raw_obs.var(0), [len(returns), returns.mean(), returns.var()]]
    )


def merge_moments(obs: RunningMeanStd, ret: RunningMeanStd, moments: np.ndarray) -> None:
    """Merge one rollout's ``rollout_moments`` into the running statistics, in place."""
    dim = (len(moments) - 4) // 2
    if moments[0] > 0:
        obs.update_from_moments(moments[1 : 1 + dim], moments[1 + dim : 1 + 2 * dim], moments[0])
    if moments[1 + 2 * dim] > 0:
        ret.update_from_moments(moments[2 + 2 * dim], moments[3 + 2 * dim], moments[1 + 2 * dim])


class _RawObservation(gym.ObservationWrapper):
    """Passes observations through and keeps the last one (``last``), before any
    normalisation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last: np.ndarray | None = None

    def observation(self, observation):
        self.last = observation
        return observation


class _KeepScore(gym.Wrapper):
    """Keeps the environment's own reward in ``info["score"]`` (what episode returns report,
    ``envs.game_score``) before reward scaling changes it."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.setdefault("score", float(reward))
        return obs, reward, terminated, truncated, info


class NormalizedEnv:
    """One environment wrapped to normalise observations and/or scale rewards with
    statistics it is given (``load``), never its own.

    Args:
        env: the environment (flat ``Box`` observations).
        observations: normalise observations (``NormalizeObservation``, clip ``obs_clip``).
        rewards: scale rewards (``NormalizeReward`` with ``gamma``, clip ``reward_clip``).

    Attributes:
        env: the outermost wrapper, to step.
    """

    def __init__(
        self,
        env: gym.Env,
        observations: bool,
        rewards: bool,
        gamma: float = 0.99,
        obs_clip: float = 10.0,
        reward_clip: float = 10.0,
    ) -> None:
        from gymnasium.wrappers import NormalizeObservation, NormalizeReward, TransformObservation, TransformReward

        self._raw = _RawObservation(_KeepScore(env))
        wrapped: gym.Env = self._raw
        self._obs = self._reward = None
        self._obs_clip = obs_clip
        if observations:
            self._obs = NormalizeObservation(wrapped)
            self._obs.update_running_mean = False
            wrapped = TransformObservation(self._obs, self._clip_obs, self._obs.observation_space)
        if rewards:
            self._reward = NormalizeReward(wrapped, gamma=gamma)
            self._reward.update_running_mean = False
            wrapped = TransformReward(self._reward, lambda r: float(np.clip(r, -reward_clip, reward_clip)))
        self.env = wrapped

    def load(self, normalizer: Normalizer) -> None:
        """Normalise with ``normalizer``'s statistics from now on."""
        if self._obs is not None:
            rms = self._obs.obs_rms
            rms.mean = normalizer.obs_mean.numpy().astype(np.float32)
            rms.var = normalizer.obs_var.numpy().astype(np.float32)
            rms.count = float(normalizer.obs_count)
        if self._reward is not None:
            rms = self._reward.return_rms
            rms.mean, rms.var = float(normalizer.return_mean), float(normalizer.return_var)
            rms.count = float(normalizer.return_count)

    def _clip_obs(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(obs, -self._obs_clip, self._obs_clip)

    def observation(self, raw_obs: np.ndarray) -> np.ndarray:
        """``raw_obs`` as the wrappers would return it now (normalised and clipped, or as it is)."""
        if self._obs is None:
            return raw_obs
        return self._clip_obs(self._obs.observation(raw_obs))

    @property
    def raw_obs(self) -> np.ndarray:
        """The last observation before normalisation."""
        return self._raw.last

    @property
    def discounted_return(self) -> float:
        """``G_t`` after the last step (0 without reward scaling)."""
        return 0.0 if self._reward is None else float(np.asarray(self._reward.discounted_reward).reshape(-1)[0])
