"""Losses: pure functions returning ``(loss, metrics)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def a3c_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantage actor-critic loss, summed over time (Mnih et al. 2016, Algorithm S3).

    ``loss = -sum_t log pi(a_t|s_t) A_t + value_coef * sum_t (R_t - V(s_t))^2
    - entropy_coef * sum_t H(pi(.|s_t))`` with advantage ``A_t = R_t - V(s_t)`` treated
    as a constant in the policy term, so the policy gradient is
    ``grad log pi(a_t|s_t) A_t`` and the critic gradient ``d(R_t - V(s_t))^2 / d theta_v``.

    Args:
        logits: ``[T, B, A]`` float32 policy logits.
        values: ``[T, B]`` float32 ``V(s_t)``.
        actions: ``[T, B]`` int64 actions taken.
        returns: ``[T, B]`` float32 n-step returns ``R_t`` (no gradient).
        value_coef: weight of the value loss.
        entropy_coef: beta, weight of the entropy bonus.

    Returns:
        ``(loss, metrics)``: the scalar loss to minimise, and per-step means of
        ``policy_loss``, ``value_loss`` and ``entropy`` as floats.
    """
    log_probs = F.log_softmax(logits, dim=-1)  # [T, B, A]
    action_log_probs = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [T, B]
    advantages = returns - values
    policy_loss = -(action_log_probs * advantages.detach()).sum()
    value_loss = advantages.pow(2).sum()
    entropy = -(log_probs.exp() * log_probs).sum()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    n = float(values.numel())
    metrics = {
        "policy_loss": policy_loss.item() / n,
        "value_loss": value_loss.item() / n,
        "entropy": entropy.item() / n,
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
