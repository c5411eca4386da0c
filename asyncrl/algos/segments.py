"""The environments of one Hogwild actor-learner, and the segments it learns from.

With ``--envs-per-actor k`` an actor-learner steps ``k`` environments in lockstep: one
batched forward pass picks ``k`` actions, every environment takes its step, and the
update is computed on the ``t_max x k`` batch (the layout of PAAC, Clemente et al. 2017,
and GA3C, Babaeizadeh et al. 2017). With ``k = 1``, the paper's actor-learner, a segment
also ends where its episode ends (Mnih et al. 2016, Algorithm S3: "until terminal s_t or
t - t_start == t_max"); with ``k > 1`` it always runs ``t_max`` steps, and an episode that
ends inside it cuts its environment's returns there (``returns.n_step_returns`` reads the
``terminated`` and ``truncated`` flags per step, and a time limit's cut is bootstrapped
from the value of the episode's last observation, ``Segment.final_obs``).

The environments are Gymnasium environments stepped one after the other in this
process, as the batched family's actors step theirs: each keeps its own episode
(whole-game scores, ``EpisodicLife``) and its own seed, ``seed + worker_id * k + e``,
which is the paper's ``seed + worker_id`` for ``k = 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from asyncrl.algos.base import WorkerStats
from asyncrl.envs import game_over, game_score, start_worker_env
from asyncrl.shared import GlobalCounters


@dataclass
class Segment:
    """One segment of ``n <= t_max`` steps of ``k`` environments, time-major.

    The arrays are views of the collector's buffers, valid until its next ``collect``.
    """

    obs: np.ndarray
    """``[n+1, k, *obs_shape]``: ``s_t``; row ``n`` is where the next segment starts (a new
    episode's first observation in an environment whose episode ended at step ``n - 1``)."""
    actions: np.ndarray
    """``[n, k, *action_shape]``: ``a_t`` as sampled (a Gaussian's unclipped sample)."""
    rewards: np.ndarray
    """``[n, k]`` float32: ``r_t``, scaled by ``reward_scale`` (Atari: clipped to its sign)."""
    terminated: np.ndarray
    """``[n, k]`` bool: ``s_{t+1}`` is terminal."""
    truncated: np.ndarray
    """``[n, k]`` bool: a time limit cut the episode after step ``t``."""
    final_obs: np.ndarray
    """``[n, k, *obs_shape]``: the last observation of an episode cut where ``truncated``
    (other entries hold stale data)."""
    final_values: np.ndarray
    """``[n, k]`` float32: ``V`` of ``final_obs`` where ``truncated``, as ``collect``'s
    ``value`` gave it (0 elsewhere, and everywhere when no ``value`` was given)."""
    initial_state: np.ndarray | None
    """``[k, 2, H]`` float32: a recurrent acting policy's ``(h, c)`` at the segment's start,
    where back-propagation through time starts; None for a feed-forward one."""

    @property
    def length(self) -> int:
        """``n``, the segment's steps per environment."""
        return self.rewards.shape[0]

    @property
    def done(self) -> np.ndarray:
        """``[n, k]`` bool: an episode ended after step ``t`` (terminated or truncated)."""
        return self.terminated | self.truncated

    def resets(self) -> np.ndarray:
        """``[n+1, k]`` bool: a recurrent state is zeroed before row ``t`` (an episode begins
        at ``obs[t]``), the ``resets`` of ``ActorCritic.sequence``."""
        resets = np.zeros((self.length + 1, self.rewards.shape[1]), dtype=bool)
        resets[1:] = self.done
        return resets

    def next_values(self, values: np.ndarray) -> np.ndarray:
        """``[n, k]`` float32 ``V(s_{t+1})`` for ``returns.n_step_returns``: ``values[t + 1]``,
        or the cut episode's ``final_values[t]`` where ``truncated``.

        Args:
            values: ``[n+1, k]`` float32, the bootstrap value of each row of ``obs``.
        """
        return np.where(self.truncated, self.final_values, values[1:]).astype(np.float32)


Act = Callable[[np.ndarray], np.ndarray]
"""``act(obs [k, *obs_shape]) -> actions [k, *action_shape]``: the behaviour policy."""


class ActorEnvs:
    """The ``k`` environments of actor-learner ``worker_id`` and the buffers of its segments.

    Args:
        run: the run's ``RunConfig``.
        worker_id: the actor-learner's index, 0-based.
        num_envs: ``k`` (``--envs-per-actor``).
        t_max: the most steps of a segment.
        action_shape, action_dtype: one stored action's.
        counters: the global step counter ``T``, advanced by ``k`` each step.
        stats: the actor-learner's statistics (``WorkerStats(counters, num_envs=k)``).

    Raises:
        EnvError: if an environment cannot be made or ``run.algo`` cannot act in it.
    """

    def __init__(
        self,
        run: Any,
        worker_id: int,
        num_envs: int,
        t_max: int,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        counters: GlobalCounters,
        stats: WorkerStats,
    ) -> None:
        self.worker_id = worker_id
        self.counters = counters
        self.stats = stats
        self.envs: list[gym.Env] = []
        first_obs = []
        for e in range(num_envs):
            env, obs, spec = start_worker_env(run, worker_id * num_envs + e)
            self.envs.append(env)
            first_obs.append(obs)
        self.spec = spec
        self.obs = np.stack(first_obs)  # [k, *obs_shape], where the next segment starts
        k = num_envs
        self._obs = np.zeros((t_max + 1, k, *spec.shape), spec.np_dtype)
        self._final_obs = np.zeros((t_max, k, *spec.shape), spec.np_dtype)
        self._actions = np.zeros((t_max, k, *action_shape), action_dtype)
        self._rewards = np.zeros((t_max, k), np.float32)
        self._terminated = np.zeros((t_max, k), bool)
        self._truncated = np.zeros((t_max, k), bool)
        self._final_values = np.zeros((t_max, k), np.float32)

    @property
    def env(self) -> gym.Env:
        """The first environment (what a one-environment caller reads)."""
        return self.envs[0]

    def __iter__(self) -> Iterator[gym.Env]:
        """The environments, in seed order (a checkpoint saves their random states)."""
        return iter(self.envs)

    def __len__(self) -> int:
        return len(self.envs)

    def collect(
        self,
        act: Act,
        env_action: Callable[[Any], Any] = int,
        reward_scale: float = 1.0,
        value: Callable[[np.ndarray, int], float] | None = None,
        on_reset: Callable[[int], None] | None = None,
        on_step: Callable[[int], object] | None = None,
        initial_state: np.ndarray | None = None,
    ) -> Segment:
        """Step every environment for up to ``t_max`` steps with the actions of ``act``.

        Args:
            act: the behaviour policy on the current observations.
            env_action: what the environment takes for one stored action (a Gaussian's
                sample is clipped to the action bounds only here).
            reward_scale: multiplies the rewards stored for training (episode returns
                and game scores stay unscaled).
            value: ``value(obs [*obs_shape], e)``: ``V`` of the last observation of
                environment ``e``'s truncated episode, read before ``on_reset(e)``.
            on_reset: called with ``e`` where environment ``e``'s episode ended (a
                recurrent policy zeroes that environment's state).
            on_step: called with ``T`` after each step has added ``k`` to it (the
                target network's refresh).
            initial_state: stored as the segment's ``initial_state``.

        Returns:
            The segment; ``self.obs`` is where the next one starts.
        """
        envs, k = self.envs, len(self.envs)
        obs_buf, final_obs, actions_buf = self._obs, self._final_obs, self._actions
        rewards, terminated, truncated = self._rewards, self._terminated, self._truncated
        final_values = self._final_values
        terminated.fill(False)
        truncated.fill(False)
        final_values.fill(0.0)
        t_max = rewards.shape[0]
        n = t_max
        for t in range(t_max):
            obs_buf[t] = self.obs
            actions = act(self.obs)
            actions_buf[t] = actions
            ended = False
            for e, env in enumerate(envs):
                obs, reward, term, trunc, info = env.step(env_action(actions[e]))
                rewards[t, e] = float(reward) * reward_scale
                self.stats.step(game_score(reward, info), game_over(term, trunc, info), e)
                if term or trunc:
                    ended = True
                    terminated[t, e] = term
                    truncated[t, e] = trunc and not term
                    if truncated[t, e]:
                        final_obs[t, e] = obs
                        if value is not None:
                            final_values[t, e] = value(final_obs[t, e], e)
                    if on_reset is not None:
                        on_reset(e)
                    obs, _ = env.reset()
                self.obs[e] = obs
            self.counters.add(self.worker_id, k, updates=0)  # T <- T + k
            if on_step is not None:
                on_step(self.counters.global_step)
            if ended and k == 1:  # the paper's segment ends with its episode
                n = t + 1
                break
        obs_buf[n] = self.obs
        return Segment(
            obs=obs_buf[: n + 1],
            actions=actions_buf[:n],
            rewards=rewards[:n],
            terminated=terminated[:n],
            truncated=truncated[:n],
            final_obs=final_obs[:n],
            final_values=final_values[:n],
            initial_state=initial_state,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
