"""Neural networks: torsos and heads, and a NumPy path for acting one step at a time."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class MLPTorso(nn.Module):
    """Fully connected torso for flat observations: ``[N, obs_dim] -> [N, out_dim]``.

    Layers are orthogonally initialised (gain sqrt(2)) with zero biases and tanh
    activations, the usual choice for small control tasks.
    """

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_dim = obs_dim
        for width in hidden_sizes:
            linear = nn.Linear(in_dim, width)
            nn.init.orthogonal_(linear.weight, gain=2**0.5)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.Tanh()]
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _head(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    linear = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


class ActorCritic(nn.Module):
    """Policy and value heads, on one shared torso (Mnih et al. 2016, Section 5.1) or,
    with ``value_torso``, on two separate ones.

    ``forward(obs: [N, obs_dim] float32) -> (logits: [N, A] float32, value: [N] float32)``.
    The policy head starts near uniform (gain 0.01), the value head at gain 1.
    """

    def __init__(self, torso: nn.Module, num_actions: int, value_torso: nn.Module | None = None) -> None:
        super().__init__()
        self.torso = torso
        self.value_torso = value_torso
        self.policy = _head(torso.out_dim, num_actions, gain=0.01)
        self.value = _head((value_torso or torso).out_dim, 1, gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso(obs)
        value_features = features if self.value_torso is None else self.value_torso(obs)
        return self.policy(features), self.value(value_features).squeeze(-1)


class QNetwork(nn.Module):
    """Action values ``Q(s, .)``: ``forward(obs: [N, obs_dim] float32) -> [N, A] float32``."""

    def __init__(self, torso: nn.Module, num_actions: int) -> None:
        super().__init__()
        self.torso = torso
        self.head = _head(torso.out_dim, num_actions, gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


def build_q_network(obs_dim: int, num_actions: int, hidden_sizes: Sequence[int]) -> QNetwork:
    """The Q-network for flat observations and ``num_actions`` discrete actions."""
    return QNetwork(MLPTorso(obs_dim, hidden_sizes), num_actions)


def build_actor_critic(
    obs_dim: int, num_actions: int, hidden_sizes: Sequence[int], shared_torso: bool = True
) -> ActorCritic:
    """The actor-critic for flat observations and ``num_actions`` discrete actions."""
    value_torso = None if shared_torso else MLPTorso(obs_dim, hidden_sizes)
    return ActorCritic(MLPTorso(obs_dim, hidden_sizes), num_actions, value_torso)


class NumpyMLP:
    """Fast forward pass of an ``MLPTorso`` and one linear head, in NumPy.

    Acting runs one observation at a time, where torch's per-call overhead (tens of
    microseconds a layer) dwarfs the arithmetic; NumPy on the same weights is several
    times faster. The arrays are views of the modules' parameters, not copies, so the
    forward pass always uses their current values (after ``sync_local``, or as other
    processes write them when the modules live in shared memory).

    ``__call__(obs: [obs_dim] float32) -> [out] float32`` (or a batch,
    ``[N, obs_dim] -> [N, out]``), equal to ``head(torso(obs))`` up to float rounding.

    Raises:
        TypeError: if ``torso`` is not an ``MLPTorso``.
    """

    def __init__(self, torso: nn.Module, head: nn.Linear) -> None:
        if not isinstance(torso, MLPTorso):
            raise TypeError(f"NumpyMLP needs an MLPTorso, got {type(torso).__name__}")
        linears = [m for m in torso.net if isinstance(m, nn.Linear)]
        self.layers = [(lin.weight.detach().numpy(), lin.bias.detach().numpy()) for lin in linears]
        self.head = (head.weight.detach().numpy(), head.bias.detach().numpy())

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = obs
        if h.ndim == 1:
            for weight, bias in self.layers:
                h = np.tanh(weight @ h + bias)  # [width]
            weight, bias = self.head
            return weight @ h + bias  # [out]
        for weight, bias in self.layers:
            h = np.tanh(h @ weight.T + bias)  # [N, width]
        weight, bias = self.head
        return h @ weight.T + bias  # [N, out]


def sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> int:
    """Sample an action from ``softmax(logits)``: ``logits: [A] float`` -> index in ``[0, A)``.

    Inverse-CDF sampling with one uniform draw, in plain Python: for the few actions of
    a control task this is several times faster than NumPy's per-call overhead.
    """
    values = logits.tolist()
    top = max(values)
    cdf = list(itertools.accumulate(math.exp(v - top) for v in values))
    return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)


def sample_categorical_batch(logits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample one action per row of ``softmax(logits)``: ``logits: [N, A] float``.

    Returns:
        ``(actions, log_probs)``: ``[N]`` int64 actions and ``[N]`` float32
        ``log softmax(logits)[a]`` of the actions drawn.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)  # [N, A]
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # [N, A]
    cdf = np.cumsum(np.exp(log_probs), axis=1)  # [N, A]
    draws = rng.random(len(logits))[:, None] * cdf[:, -1:]  # [N, 1]
    actions = np.minimum((cdf <= draws).sum(axis=1), logits.shape[1] - 1)  # [N]
    return actions.astype(np.int64), log_probs[np.arange(len(actions)), actions].astype(np.float32)
