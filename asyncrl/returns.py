"""Return targets: pure functions on time-major NumPy arrays.

Conventions: ``T`` time steps, ``B`` independent sequences. Step ``t`` is the
transition ``(s_t, a_t, r_t, s_{t+1})``. ``terminated[t]`` means ``s_{t+1}`` is terminal
(its value is zero); ``truncated[t]`` means the episode was cut at ``s_{t+1}`` by a time
limit, so its value is bootstrapped from ``V(s_{t+1})`` — which requires ``next_values[t]``
to be the value of the episode's last observation, not of the next episode's first.

These run on NumPy: the backward recursion is a loop over ``T`` of tiny vector
operations, where NumPy costs about a microsecond an operation and torch several.
CPU tensors convert for free with ``.numpy()`` and back with ``torch.from_numpy``.
"""

from __future__ import annotations

import numpy as np


def n_step_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """Backward n-step returns, bootstrapped where a sequence or an episode is cut.

    ``R_t = r_t + gamma * (1 - terminated_t) * X_t``, where ``X_t = V(s_{t+1})`` if
    ``t = T - 1`` or ``truncated_t``, and ``X_t = R_{t+1}`` otherwise
    (Mnih et al. 2016, Algorithm S3, with time-limit truncation bootstrapped).

    Args:
        rewards: ``[T, B]`` float, ``r_t``.
        terminated: ``[T, B]`` bool, ``s_{t+1}`` is terminal.
        truncated: ``[T, B]`` bool, the episode was cut after step ``t``.
        next_values: ``[T, B]`` float, ``V(s_{t+1})``; read only where a bootstrap is
            needed (the last step and truncated steps), so other rows may hold anything.
        gamma: discount factor in [0, 1].

    Returns:
        ``[T, B]`` float32 returns ``R_t``.

    Raises:
        ValueError: if the shapes differ or ``T`` is zero.
    """
    _check_shapes(rewards=rewards, terminated=terminated, truncated=truncated, next_values=next_values)
    discounts = gamma * ~terminated.astype(bool)  # [T, B]
    cut = truncated.astype(bool).copy()
    cut[-1] = True  # the sequence ends: bootstrap from V(s_T)
    returns = np.empty(rewards.shape, dtype=np.float32)
    future = next_values[-1]
    for t in range(rewards.shape[0] - 1, -1, -1):
        future = rewards[t] + discounts[t] * np.where(cut[t], next_values[t], future)
        returns[t] = future
    return returns


def segment_end_flags(length: int, terminated: bool, truncated: bool) -> tuple[np.ndarray, np.ndarray]:
    """``terminated`` and ``truncated`` arrays ``[length, 1]`` bool for one actor-learner's
    segment, which can end an episode only at its last step."""
    term = np.zeros((length, 1), dtype=bool)
    trunc = np.zeros((length, 1), dtype=bool)
    term[-1, 0] = terminated
    trunc[-1, 0] = truncated
    return term, trunc


def _check_shapes(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()) or len(first) != 2:
        described = ", ".join(f"{name} {s}" for name, s in shapes.items())
        raise ValueError(f"expected arrays of one shape [T, B], got {described}")
    if first[0] == 0:
        raise ValueError("need at least one time step (T >= 1)")
