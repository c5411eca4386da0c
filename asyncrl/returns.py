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


def _backward_scan(deltas: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """``x_t = deltas_t + coefs_t x_{t+1}`` with ``x_T = 0``, backwards over ``[T, B]``
    arrays: the recursion of GAE and of V-trace; returns ``[T, B]`` float32."""
    out = np.empty(deltas.shape, dtype=np.float32)
    running = np.zeros(deltas.shape[1], dtype=np.float32)
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + coefs[t] * running
        out[t] = running
    return out


def _check_shapes(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()) or len(first) != 2:
        described = ", ".join(f"{name} {s}" for name, s in shapes.items())
        raise ValueError(f"expected arrays of one shape [T, B], got {described}")
    if first[0] == 0:
        raise ValueError("need at least one time step (T >= 1)")


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation, GAE(gamma, lambda) (Schulman et al. 2016, eq. 16).

    ``delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}`` with ``done = terminated or
    truncated`` and ``A_T = 0``: the trace stops where an episode ends, and a truncated
    step still bootstraps from its own ``V(s_{t+1})``. ``lam = 1`` gives the n-step
    returns of A2C (``A_t + V(s_t) = n_step_returns``), ``lam = 0`` one-step TD.

    Args:
        rewards: ``[T, B]`` float, ``r_t``.
        values: ``[T, B]`` float, ``V(s_t)``.
        next_values: ``[T, B]`` float, ``V(s_{t+1})``: ``values[t + 1]`` inside an
            episode, the value of the episode's last observation where ``truncated[t]``,
            and the bootstrap ``V(s_T)`` at ``t = T - 1``; ignored where ``terminated[t]``.
        terminated: ``[T, B]`` bool, ``s_{t+1}`` is terminal.
        truncated: ``[T, B]`` bool, the episode was cut after step ``t``.
        gamma: discount factor in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``: ``[T, B]`` float32 ``A_t`` and the value targets
        ``A_t + V(s_t)``.

    Raises:
        ValueError: if the shapes differ or ``T`` is zero.
    """
    _check_shapes(rewards=rewards, values=values, next_values=next_values, terminated=terminated, truncated=truncated)
    terminated = terminated.astype(bool)
    not_done = ~(terminated | truncated.astype(bool))
    deltas = rewards + gamma * ~terminated * next_values - values  # [T, B]
    trace = gamma * lam * not_done  # [T, B]
    advantages = _backward_scan(deltas, trace)
    return advantages, (advantages + values).astype(np.float32)


def vtrace(
    behaviour_log_probs: np.ndarray,
    target_log_probs: np.ndarray,
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """V-trace targets and policy-gradient advantages for off-policy actor-critic
    (Espeholt et al. 2018, IMPALA, Section 4.1, eq. 1 and Remark 1).

    With ``rho_t = min(rho_bar, pi(a_t|s_t) / mu(a_t|s_t))``, ``c_t = min(c_bar, ...)``,
    ``delta_t = rho_t (r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t))``:
    ``v_t - V(s_t) = delta_t + gamma (1 - done_t) c_t (v_{t+1} - V(s_{t+1}))`` with
    ``v_T = V(s_T)``, and the advantage ``rho_t (r_t + gamma (1 - terminated_t) v'_{t+1}
    - V(s_t))`` where ``v'_{t+1} = v_{t+1}`` inside an episode and ``V(s_{t+1})`` where the
    trace stops (the last step, a truncated step). On-policy (``pi = mu``) with
    ``rho_bar = c_bar = 1`` the targets are the n-step returns.

    Args:
        behaviour_log_probs: ``[T, B]`` float, ``log mu(a_t|s_t)`` of the acting policy.
        target_log_probs: ``[T, B]`` float, ``log pi(a_t|s_t)`` of the learner's policy.
        rewards: ``[T, B]`` float.
        values: ``[T, B]`` float, ``V(s_t)`` under the learner's value function.
        next_values: ``[T, B]`` float, ``V(s_{t+1})`` as in ``gae``.
        terminated: ``[T, B]`` bool.
        truncated: ``[T, B]`` bool.
        gamma: discount factor in [0, 1].
        rho_bar: truncation of the importance weights in ``delta_t`` (paper: 1).
        c_bar: truncation of the trace coefficients ``c_t`` (paper: 1).

    Returns:
        ``(vs, advantages)``: ``[T, B]`` float32 value targets ``v_t`` and policy-gradient
        advantages.

    Raises:
        ValueError: if the shapes differ or ``T`` is zero.
    """
    _check_shapes(
        behaviour_log_probs=behaviour_log_probs,
        target_log_probs=target_log_probs,
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )
    ratios = np.exp(target_log_probs - behaviour_log_probs)  # [T, B]
    rhos = np.minimum(rho_bar, ratios)
    cs = np.minimum(c_bar, ratios)
    terminated = terminated.astype(bool)
    not_done = ~(terminated | truncated.astype(bool))
    discounts = gamma * ~terminated  # [T, B]
    deltas = rhos * (rewards + discounts * next_values - values)  # [T, B]
    vs = _backward_scan(deltas, gamma * not_done * cs) + values  # [T, B]
    next_vs = next_values.copy()  # v'_{t+1}: V(s_{t+1}) where the trace stops ...
    next_vs[:-1] = np.where(not_done[:-1], vs[1:], next_values[:-1])  # ... v_{t+1} inside an episode
    advantages = rhos * (rewards + discounts * next_vs - values)
    return vs.astype(np.float32), advantages.astype(np.float32)


def episode_returns(rewards: np.ndarray, lengths: np.ndarray, gamma: float) -> np.ndarray:
    """Monte Carlo returns of whole episodes, one per column, for REINFORCE (Williams 1992).

    ``G_t = sum_{k=t}^{L-1} gamma^(k-t) r_k`` for ``t < L``, the episode's length ``L``
    (the return to the episode's end, whether it terminated or a time limit cut it: no
    bootstrapping); 0 for ``t >= L`` (padding).

    Args:
        rewards: ``[T, B]`` float, ``r_t`` (anything past each episode's end).
        lengths: ``[B]`` int, ``L`` per column, each in ``1..T``.
        gamma: discount factor in [0, 1].

    Returns:
        ``[T, B]`` float32 ``G_t``.

    Raises:
        ValueError: if ``rewards`` is not ``[T, B]`` or a length is outside ``1..T``.
    """
    if rewards.ndim != 2 or lengths.shape != (rewards.shape[1],):
        raise ValueError(f"expected rewards [T, B] and lengths [B], got {rewards.shape} and {lengths.shape}")
    T = rewards.shape[0]
    if len(lengths) and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"episode lengths must be in 1..{T}, got {lengths.min()}..{lengths.max()}")
    valid = np.arange(T)[:, None] < lengths[None, :]  # [T, B]
    return _backward_scan(np.where(valid, rewards, 0.0).astype(np.float32), np.full(rewards.shape, gamma, np.float32))
