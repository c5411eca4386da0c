"""Losses: pure functions returning ``(loss, metrics)``."""

from __future__ import annotations

import torch

from asyncrl.distributions import Categorical, Distribution


def normalized(advantages: torch.Tensor) -> torch.Tensor:
    """``(A - mean(A)) / (std(A) + 1e-8)`` over all of ``advantages`` (any shape, float32;
    the unbiased std), or ``advantages`` unchanged if it holds a single value: the
    per-batch advantage normalisation of PPO implementations (OpenAI Baselines,
    Stable-Baselines3, CleanRL)."""
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def actor_critic_loss(
    params: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    value_coef: float,
    entropy_coef: float,
    advantages: torch.Tensor | None = None,
    reduction: str = "sum",
    dist: Distribution | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantage actor-critic loss: A3C (Mnih et al. 2016, Algorithm S3) and A2C.

    ``loss = -sum_t log pi(a_t|s_t) A_t + value_coef * sum_t (R_t - V(s_t))^2
    - entropy_coef * sum_t H(pi(.|s_t))`` with advantage ``A_t = R_t - V(s_t)`` (or the
    ``advantages`` given: GAE, V-trace) treated as a constant in the policy term, so the
    policy gradient is ``grad log pi(a_t|s_t) A_t`` and the critic gradient
    ``d(R_t - V(s_t))^2 / d theta_v``. ``reduction="mean"`` averages each term over the
    ``T * B`` steps instead (the A2C convention of OpenAI baselines and
    Stable-Baselines3).

    Args:
        params: ``[T, B, P]`` float32 policy parameters (``dist``'s; logits by default).
        values: ``[T, B]`` float32 ``V(s_t)``.
        actions: ``[T, B]`` int64 actions taken (``[T, B, D]`` float32 for a Gaussian).
        returns: ``[T, B]`` float32 value targets ``R_t`` (no gradient).
        value_coef: weight of the value loss.
        entropy_coef: beta, weight of the entropy bonus.
        advantages: ``[T, B]`` float32 policy-gradient advantages (no gradient);
            default ``R_t - V(s_t)``.
        reduction: ``"sum"`` (A3C) or ``"mean"`` over steps (A2C).
        dist: the policy distribution (``asyncrl.distributions``); default categorical
            over ``P`` logits.

    Returns:
        ``(loss, metrics)``: the scalar loss to minimise, and per-step means of
        ``policy_loss``, ``value_loss`` and ``entropy`` as floats.

    Raises:
        ValueError: if ``reduction`` is neither ``"sum"`` nor ``"mean"``.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    dist = dist or Categorical(params.shape[-1])
    action_log_probs, entropies = dist.log_prob_entropy(params, actions)  # [T, B], [T, B]
    errors = returns - values
    if advantages is None:
        advantages = errors
    policy_loss = -(action_log_probs * advantages.detach()).sum()
    value_loss = errors.pow(2).sum()
    entropy = entropies.sum()
    n = float(values.numel())
    scale = 1.0 / n if reduction == "mean" else 1.0
    loss = (policy_loss + value_coef * value_loss - entropy_coef * entropy) * scale
    metrics = {
        "policy_loss": policy_loss.item() / n,
        "value_loss": value_loss.item() / n,
        "entropy": entropy.item() / n,
    }
    return loss, metrics


def ppo_loss(
    params: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float,
    value_clip: float | None,
    value_coef: float,
    entropy_coef: float,
    dist: Distribution | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate objective with a value loss and an entropy bonus
    (Schulman et al. 2017, eq. 7 and 9), averaged over the ``N`` samples of a minibatch.

    ``r = exp(log pi(a|s) - log pi_old(a|s))``;
    ``L_clip = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``;
    ``L_V = mean((V - R)^2)``, or with ``value_clip`` = c,
    ``mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``;
    ``loss = L_clip + value_coef * L_V - entropy_coef * mean(H)``.

    Args:
        params: ``[N, P]`` float32 parameters of the policy being optimised (``dist``'s;
            logits by default).
        values: ``[N]`` float32 its ``V(s)``.
        actions: ``[N]`` int64 actions taken (``[N, D]`` float32 for a Gaussian).
        old_log_probs: ``[N]`` float32 ``log pi_old(a|s)`` of the acting policy.
        old_values: ``[N]`` float32 ``V_old(s)`` at collection time (for ``value_clip``).
        advantages: ``[N]`` float32 advantages (already normalised if wanted).
        returns: ``[N]`` float32 value targets.
        clip_range: epsilon of the ratio clip.
        value_clip: clip of the value change, or None for the plain squared error.
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        dist: the policy distribution; default categorical over ``P`` logits.

    Returns:
        ``(loss, metrics)``: the scalar loss, and ``policy_loss``, ``value_loss``,
        ``entropy``, ``approx_kl`` (``mean((r - 1) - log r)``, Schulman's unbiased
        estimator) and ``clip_fraction`` (share of samples with ``|r - 1| > eps``).
    """
    dist = dist or Categorical(params.shape[-1])
    new_log_probs, entropies = dist.log_prob_entropy(params, actions)  # [N], [N]
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages)
    policy_loss = -surrogate.mean()
    value_loss = (values - returns).pow(2)
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        value_loss = torch.max(value_loss, (clipped - returns).pow(2))
    value_loss = value_loss.mean()
    entropy = entropies.mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean().item()
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean().item()
    metrics = {
        "policy_loss": policy_loss.item(),
        "value_loss": value_loss.item(),
        "entropy": entropy.item(),
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }
    return loss, metrics


def q_loss(
    q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Squared TD error summed over time, for the asynchronous value-based methods
    (Mnih et al. 2016, Algorithms 1 and S2): ``sum_t (y_t - Q(s_t, a_t; theta))^2``.

    Args:
        q_values: ``[T, B, A]`` float32 ``Q(s_t, .; theta)``.
        actions: ``[T, B]`` int64 actions taken.
        targets: ``[T, B]`` float32 targets ``y_t`` (one-step or n-step; no gradient).

    Returns:
        ``(loss, metrics)``: the scalar loss, and per-step means ``td_loss`` (squared TD
        error) and ``q_taken`` (``Q(s_t, a_t)``) as floats.
    """
    q_taken = q_values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [T, B]
    loss = (targets - q_taken).pow(2).sum()
    n = float(q_taken.numel())
    return loss, {"td_loss": loss.item() / n, "q_taken": q_taken.detach().sum().item() / n}
