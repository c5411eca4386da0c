"""Policy distributions: what an actor-critic's policy head outputs and what it means.

Every actor-critic algorithm (A3C, A2C, PPO) asks its model's ``dist`` for log-probs,
entropies, samples and greedy actions, and never looks at the action space itself:

- ``Categorical`` for ``Discrete(A)`` actions: the head outputs ``A`` logits ``z``,
  ``pi(a|s) = softmax(z)_a``.
- ``DiagGaussian`` for ``Box(D,)`` actions: the head outputs ``2D`` parameters, the mean
  ``mu`` and a scale parameter per dimension, ``pi(a|s) = prod_i N(a_i; mu_i, sigma_i^2)``.
  Two parameterisations of ``sigma``:

  - ``"softplus"`` (Mnih et al. 2016, Section 9 of the supplementary, MuJoCo): a linear
    output ``v`` per dimension, ``sigma^2 = softplus(v) + MIN_VARIANCE``: the variance
    depends on the state.
  - ``"parameter"`` (CleanRL's ``ppo_continuous_action``, Stable-Baselines3): a learned
    ``log sigma`` per dimension that does not depend on the state; the model appends it to
    the head's ``D`` means (``networks.PolicyHead``).

  Actions are sampled and scored unbounded; the environment clips them to its bounds
  (Gymnasium's ``ClipAction``, ``envs.make_env``), so the log-prob is always that of the
  unclipped sample, as in the paper and in CleanRL.

The soft actor-critic's policy is a third kind, ``SquashedGaussian``: ``tanh`` of a Gaussian
sample, bounded in ``[-1, 1]^D`` and scored with the change of variables.

Each of the first two has three faces, tested against ``torch.distributions`` and against
slow term-by-term references: torch functions for losses under autograd (``log_prob``,
``entropy``, ``mode``), NumPy sampling for the actors (``sample``, ``sample_batch``), and
NumPy log-probs and entropies with their gradients for ``updaters.NumpyUpdater``
(``np_log_prob``, ``np_entropy``).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

MIN_VARIANCE = 1e-6
"""Added to ``softplus(v)`` so that ``log sigma`` stays finite where ``softplus`` underflows
(``v`` below about -14 in float32)."""

STD_KINDS = ("softplus", "parameter")
"""Gaussian scale parameterisations (``--gaussian-std``)."""

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What one action is: ``Discrete(n)`` (``shape == ()``), a 1-D ``Box(D,)`` with bounds,
    ``MultiDiscrete(nvec)`` or ``MultiBinary(K)`` (``shape == (K,)``, int64 entries).

    Attributes:
        n: number of discrete actions, or 0 for another space.
        shape: ``()`` for discrete actions, ``(D,)`` for continuous ones, ``(K,)`` for the
            multi-discrete and multi-binary ones.
        low, high: the continuous space's bounds per dimension (empty for the others).
        nvec: choices per entry of a ``MultiDiscrete`` action (empty for the others).
        binary: a ``MultiBinary`` action.
    """

    n: int = 0
    shape: tuple[int, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    nvec: tuple[int, ...] = ()
    binary: bool = False

    @classmethod
    def of(cls, action: ActionSpec | int) -> ActionSpec:
        """``action`` itself, or a discrete spec for a number of actions."""
        return action if isinstance(action, ActionSpec) else cls(n=int(action))

    @classmethod
    def box(cls, low, high) -> ActionSpec:
        """A continuous spec with these per-dimension bounds."""
        low, high = np.asarray(low, np.float64).ravel(), np.asarray(high, np.float64).ravel()
        return cls(0, (len(low),), tuple(float(x) for x in low), tuple(float(x) for x in high))

    @classmethod
    def multi_discrete(cls, nvec) -> ActionSpec:
        """A ``MultiDiscrete(nvec)`` spec (a 1-D ``nvec``)."""
        nvec = tuple(int(n) for n in np.asarray(nvec).ravel())
        return cls(0, (len(nvec),), nvec=nvec)

    @classmethod
    def multi_binary(cls, k: int) -> ActionSpec:
        """A ``MultiBinary(k)`` spec."""
        return cls(0, (int(k),), binary=True)

    @property
    def discrete(self) -> bool:
        """A ``Discrete(n)`` action."""
        return not self.shape

    @property
    def continuous(self) -> bool:
        """A ``Box(D,)`` action."""
        return bool(self.shape) and not self.nvec and not self.binary

    @property
    def np_dtype(self) -> np.dtype:
        """``float32`` for continuous actions, ``int64`` for the others."""
        return np.dtype(np.float32 if self.continuous else np.int64)

    @property
    def bounded(self) -> bool:
        """A continuous space whose bounds are all finite."""
        return self.continuous and bool(np.isfinite(self.low).all() and np.isfinite(self.high).all())

    def rescale(self, action: np.ndarray) -> np.ndarray:
        """Map ``action: [D]`` (or ``[N, D]``) from ``[-1, 1]`` to ``[low, high]``, affinely
        (the squashed policies of DDPG, TD3 and SAC act in ``[-1, 1]``)."""
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return (low + (np.asarray(action, np.float32) + 1.0) * 0.5 * (high - low)).astype(np.float32)

    def describe(self) -> str:
        if self.discrete:
            return f"Discrete({self.n})"
        if self.nvec:
            return f"MultiDiscrete({list(self.nvec)})"
        if self.binary:
            return f"MultiBinary({self.shape[0]})"
        return f"Box({self.shape[0]},) in [{min(self.low):g}, {max(self.high):g}]"


class Categorical:
    """``pi(a|s) = softmax(z)_a`` over ``A`` actions; parameters ``z: [..., A]`` (logits).

    Actions: int64 indices, ``[...]``.
    """

    action_shape: tuple[int, ...] = ()
    action_dtype = np.dtype(np.int64)

    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions
        self.param_dim = num_actions  # logits the head outputs
        self.head_dim = num_actions  # outputs of the head's linear layer

    # -- torch, under autograd --------------------------------------------------

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)``: ``params [..., A]``, ``actions [...]`` int64 -> ``[...]``."""
        return F.log_softmax(params, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """``H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s)``: ``[..., A] -> [...]`` (nats)."""
        log_probs = F.log_softmax(params, dim=-1)
        return -(log_probs.exp() * log_probs).sum(-1)

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_prob, entropy)`` with one softmax."""
        log_probs = F.log_softmax(params, dim=-1)
        return (log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), -(log_probs.exp() * log_probs).sum(-1))

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The greedy action ``argmax_a pi(a|s)``: ``[..., A] -> [...]`` int64."""
        return params.argmax(-1)

    # -- NumPy, for acting ---------------------------------------------------------

    def sample(self, params: np.ndarray, rng: np.random.Generator) -> int:
        """One action from ``params: [A]``.

        Inverse-CDF sampling with one uniform draw, in plain Python: for the few actions of
        a control task this is several times faster than NumPy's per-call overhead.
        """
        values = params.tolist()
        top = max(values)
        cdf = list(itertools.accumulate(math.exp(v - top) for v in values))
        return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)

    def sample_batch(self, params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One action per row of ``params: [N, A]``.

        Returns:
            ``(actions [N] int64, log_probs [N] float32)``.
        """
        log_probs = _log_softmax(params)  # [N, A]
        cdf = np.cumsum(np.exp(log_probs), axis=1)  # [N, A]
        draws = rng.random(len(params))[:, None] * cdf[:, -1:]  # [N, 1]
        actions = np.minimum((cdf <= draws).sum(axis=1), params.shape[1] - 1)  # [N]
        return actions.astype(np.int64), log_probs[np.arange(len(actions)), actions].astype(np.float32)

    def env_action(self, action) -> int:
        """What ``env.step`` takes for one sampled action."""
        return int(action)

    # -- NumPy, with gradients (updaters.NumpyUpdater) ---------------------------------

    def np_log_prob(self, params: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log pi(a|s) [N], d log pi(a|s) / d params [N, A])`` = ``onehot(a) - pi``."""
        log_probs = _log_softmax(params)
        rows = np.arange(len(actions))
        grad = -np.exp(log_probs)
        grad[rows, actions] += 1.0
        return log_probs[rows, actions], grad

    def np_entropy(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H [N], dH / d params [N, A])`` with ``dH/dz_k = -pi_k (log pi_k + H)``."""
        log_probs = _log_softmax(params)
        probs = np.exp(log_probs)
        entropy = -(probs * log_probs).sum(axis=1)  # [N]
        return entropy, -probs * (log_probs + entropy[:, None])


class DiagGaussian:
    """A diagonal Gaussian over ``D`` dimensions; parameters ``[..., 2D]``: the means ``mu``
    then ``v`` (``std="softplus"``: ``sigma^2 = softplus(v) + MIN_VARIANCE``) or
    ``log sigma`` (``std="parameter"``).

    Actions: float32 ``[..., D]``, unbounded (the environment clips them).

    Raises:
        ValueError: if ``std`` is not one of ``STD_KINDS`` or ``dim < 1``.
    """

    action_dtype = np.dtype(np.float32)

    def __init__(self, dim: int, std: str = "parameter") -> None:
        if std not in STD_KINDS:
            raise ValueError(f"Gaussian std must be one of {', '.join(STD_KINDS)}, got {std!r}")
        if dim < 1:
            raise ValueError(f"a Gaussian needs at least one dimension, got {dim}")
        self.dim, self.std = dim, std
        self.action_shape = (dim,)
        self.param_dim = 2 * dim
        # the head's linear layer outputs mu and v; with a state-independent log sigma,
        # only mu (networks.PolicyHead appends log sigma)
        self.head_dim = 2 * dim if std == "softplus" else dim

    # -- torch -------------------------------------------------------------------------

    def mean_log_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu [..., D], log sigma [..., D])`` from ``params [..., 2D]``."""
        mean, scale = params[..., : self.dim], params[..., self.dim :]
        if self.std == "softplus":
            return mean, 0.5 * torch.log(F.softplus(scale) + MIN_VARIANCE)
        return mean, scale

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s) = sum_i [-(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2]``:
        ``params [..., 2D]``, ``actions [..., D]`` -> ``[...]``."""
        mean, log_std = self.mean_log_std(params)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std).sum(-1) - 0.5 * _LOG_2PI * self.dim

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """``H = sum_i [log sigma_i + (1 + log(2 pi)) / 2]``: ``[..., 2D] -> [...]`` (nats)."""
        _, log_std = self.mean_log_std(params)
        return log_std.sum(-1) + 0.5 * (1.0 + _LOG_2PI) * self.dim

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_prob, entropy)``, sharing ``log sigma``."""
        mean, log_std = self.mean_log_std(params)
        z = (actions - mean) * torch.exp(-log_std)
        log_std_sum = log_std.sum(-1)
        return (
            -0.5 * z.pow(2).sum(-1) - log_std_sum - 0.5 * _LOG_2PI * self.dim,
            log_std_sum + 0.5 * (1.0 + _LOG_2PI) * self.dim,
        )

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The greedy action, the mean ``mu``: ``[..., 2D] -> [..., D]``."""
        return params[..., : self.dim]

    # -- NumPy, for acting ---------------------------------------------------------------

    def _np_mean_std(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, scale = params[..., : self.dim], params[..., self.dim :]
        if self.std == "softplus":
            variance = _softplus(scale) + MIN_VARIANCE
            return mean, np.sqrt(variance), 0.5 * np.log(variance)
        return mean, np.exp(scale), scale

    def sample(self, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One action ``mu + sigma * eps``, ``eps ~ N(0, I)``, from ``params: [2D]`` -> ``[D]`` float32."""
        mean, std, _ = self._np_mean_std(params)
        return (mean + std * rng.standard_normal(self.dim)).astype(np.float32)

    def sample_batch(self, params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One action per row of ``params: [N, 2D]``.

        Returns:
            ``(actions [N, D] float32, log_probs [N] float32)``; the log-prob is of the
            float32 action returned.
        """
        mean, std, log_std = self._np_mean_std(params)
        actions = (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)
        z = (actions - mean) / std
        log_probs = (-0.5 * z**2 - log_std).sum(-1) - 0.5 * _LOG_2PI * self.dim
        return actions, log_probs.astype(np.float32)

    def env_action(self, action) -> np.ndarray:
        """What ``env.step`` takes for one sampled action (``ClipAction`` clips it)."""
        return action

    # -- NumPy, with gradients -----------------------------------------------------------

    def _np_log_std_grad(self, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log sigma, d log sigma / d scale)`` for the scale parameters ``[N, D]``."""
        if self.std == "softplus":
            variance = _softplus(scale) + MIN_VARIANCE
            return 0.5 * np.log(variance), 0.5 * _sigmoid(scale) / variance
        return scale, np.ones_like(scale)

    def np_log_prob(self, params: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log pi(a|s) [N], d log pi(a|s) / d params [N, 2D])``: ``d/d mu = (a - mu) / sigma^2``,
        ``d/d log sigma = z^2 - 1`` with ``z = (a - mu) / sigma``, chained through the scale."""
        mean, scale = params[:, : self.dim], params[:, self.dim :]
        log_std, d_log_std = self._np_log_std_grad(scale)
        inv_std = np.exp(-log_std)
        z = (actions - mean) * inv_std
        log_prob = (-0.5 * z**2 - log_std).sum(1) - 0.5 * _LOG_2PI * self.dim
        grad = np.concatenate([z * inv_std, (z**2 - 1.0) * d_log_std], axis=1)
        return log_prob, grad

    def np_entropy(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H [N], dH / d params [N, 2D])``: ``dH/d mu = 0``, ``dH/d log sigma = 1``."""
        log_std, d_log_std = self._np_log_std_grad(params[:, self.dim :])
        entropy = log_std.sum(1) + 0.5 * (1.0 + _LOG_2PI) * self.dim
        return entropy, np.concatenate([np.zeros_like(d_log_std), d_log_std], axis=1)


class MultiCategorical:
    """Independent categoricals, one per entry of a ``MultiDiscrete(nvec)`` action (SB3's
    ``MultiCategoricalDistribution``): ``pi(a|s) = prod_k softmax(z_k)_{a_k}``; parameters
    ``[..., sum(nvec)]``, the logits of entry 0, then of entry 1, ...

    Actions: int64 ``[..., K]``.
    """

    action_dtype = np.dtype(np.int64)

    def __init__(self, nvec) -> None:
        self.nvec = tuple(int(n) for n in nvec)
        if not self.nvec or min(self.nvec) < 1:
            raise ValueError(f"MultiDiscrete needs at least one entry of >= 1 choices, got {list(self.nvec)}")
        self.action_shape = (len(self.nvec),)
        self.param_dim = self.head_dim = sum(self.nvec)
        self.parts = [Categorical(n) for n in self.nvec]
        self._bounds = list(itertools.accumulate(self.nvec, initial=0))  # entry k: [bounds[k], bounds[k+1])

    def _split(self, params):
        return [params[..., lo:hi] for lo, hi in zip(self._bounds, self._bounds[1:])]

    # -- torch -------------------------------------------------------------------------

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``sum_k log softmax(z_k)_{a_k}``: ``params [..., sum(nvec)]``, ``actions [..., K]`` -> ``[...]``."""
        return self.log_prob_entropy(params, actions)[0]

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """``sum_k H(softmax(z_k))``: ``[..., sum(nvec)] -> [...]`` (nats)."""
        return functools.reduce(torch.add, [part.entropy(z) for part, z in zip(self.parts, self._split(params))])

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [
            part.log_prob_entropy(z, actions[..., k])
            for k, (part, z) in enumerate(zip(self.parts, self._split(params)))
        ]
        return functools.reduce(torch.add, [p[0] for p in pairs]), functools.reduce(torch.add, [p[1] for p in pairs])

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """Each entry's ``argmax``: ``[..., sum(nvec)] -> [..., K]`` int64."""
        return torch.stack([z.argmax(-1) for z in self._split(params)], dim=-1)

    # -- NumPy -------------------------------------------------------------------------

    def sample(self, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One action from ``params: [sum(nvec)]`` -> ``[K]`` int64."""
        return np.array([part.sample(z, rng) for part, z in zip(self.parts, self._split(params))], np.int64)

    def sample_batch(self, params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One action per row of ``params: [N, sum(nvec)]``: ``(actions [N, K] int64, log_probs [N] float32)``."""
        draws = [part.sample_batch(z, rng) for part, z in zip(self.parts, self._split(params))]
        return np.stack([a for a, _ in draws], axis=1), np.sum([lp for _, lp in draws], axis=0).astype(np.float32)

    def env_action(self, action) -> np.ndarray:
        return np.asarray(action, dtype=np.int64)

    def np_log_prob(self, params: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log pi(a|s) [N], d log pi / d params [N, sum(nvec)])``: each entry's ``onehot - pi``."""
        parts = [part.np_log_prob(z, actions[:, k]) for k, (part, z) in enumerate(zip(self.parts, self._split(params)))]
        return np.sum([lp for lp, _ in parts], axis=0), np.concatenate([g for _, g in parts], axis=1)

    def np_entropy(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [part.np_entropy(z) for part, z in zip(self.parts, self._split(params))]
        return np.sum([h for h, _ in parts], axis=0), np.concatenate([g for _, g in parts], axis=1)


class Bernoulli:
    """Independent Bernoullis, one per entry of a ``MultiBinary(K)`` action (SB3's
    ``BernoulliDistribution``): ``P(a_k = 1) = sigmoid(z_k)``; parameters ``z: [..., K]``.

    Actions: int64 ``[..., K]`` of 0 and 1.
    """

    action_dtype = np.dtype(np.int64)

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"MultiBinary needs at least one entry, got {k}")
        self.action_shape = (k,)
        self.param_dim = self.head_dim = k

    # -- torch -------------------------------------------------------------------------

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``sum_k [a_k log sigmoid(z_k) + (1 - a_k) log sigmoid(-z_k)]``: ``[..., K]`` -> ``[...]``."""
        return -F.binary_cross_entropy_with_logits(params, actions.to(params.dtype), reduction="none").sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """``sum_k H(Bernoulli(sigmoid(z_k)))``: ``[..., K] -> [...]`` (nats)."""
        return (F.softplus(params) - torch.sigmoid(params) * params).sum(-1)  # per entry: log(1 + e^z) - p z

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_prob(params, actions), self.entropy(params)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """``1`` where ``sigmoid(z_k) > 0.5``: ``[..., K]`` int64."""
        return (params > 0).long()

    # -- NumPy -------------------------------------------------------------------------

    def sample(self, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One action from ``params: [K]`` -> ``[K]`` int64."""
        return (rng.random(params.shape) < _sigmoid(params)).astype(np.int64)

    def sample_batch(self, params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(actions [N, K] int64, log_probs [N] float32)``."""
        actions = (rng.random(params.shape) < _sigmoid(params)).astype(np.int64)
        return actions, self.np_log_prob(params, actions)[0].astype(np.float32)

    def env_action(self, action) -> np.ndarray:
        return np.asarray(action, dtype=np.int8)  # (Gymnasium's MultiBinary dtype)

    def np_log_prob(self, params: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log pi(a|s) [N], d log pi / d z [N, K] = a - sigmoid(z))``."""
        log_p1, log_p0 = -_softplus(-params), -_softplus(params)  # log sigmoid(z), log sigmoid(-z)
        return np.where(actions == 1, log_p1, log_p0).sum(1), actions - _sigmoid(params)

    def np_entropy(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H [N], dH / dz [N, K] = -z sigmoid(z) (1 - sigmoid(z)))``."""
        p = _sigmoid(params)
        entropy = (_softplus(params) - p * params).sum(1)  # per entry: log(1 + e^z) - p z
        return entropy, -params * p * (1.0 - p)


Distribution = Categorical | DiagGaussian | MultiCategorical | Bernoulli


class SquashedGaussian:
    """``a = tanh(u)``, ``u ~ N(mean, diag(exp(log_std))^2)``: the soft actor-critic's
    policy (Haarnoja et al. 2018, Appendix C), bounded in ``[-1, 1]^D``.

    ``log pi(a|s) = sum_i [log N(u_i; mean_i, sigma_i^2) - log(1 - tanh(u_i)^2)]``, with
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` computed in that stable form
    (no ``1e-6`` floor inside the logarithm, as some implementations add).
    """

    @staticmethod
    def rsample(
        mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and its log-prob.

        Args:
            mean, log_std: ``[N, D]`` float32.
            noise: ``[N, D]`` standard normal draws (default: fresh ones).

        Returns:
            ``(actions [N, D], log_probs [N])``; gradients flow to ``mean`` and ``log_std``.
        """
        if noise is None:
            noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise  # [N, D]
        return torch.tanh(u), SquashedGaussian._log_prob_u(noise, log_std, u)

    @staticmethod
    def _log_prob_u(noise: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)  # [N, D]
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # [N, D]: log(1 - tanh(u)^2)
        return (gaussian - log_det).sum(-1)  # [N]

    @staticmethod
    def mode(mean: torch.Tensor) -> torch.Tensor:
        """The greedy action ``tanh(mean)``: ``[N, D]``."""
        return torch.tanh(mean)

    @staticmethod
    def sample(mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """NumPy sample for the actors: ``[D]`` or ``[N, D]`` -> the same shape, float32."""
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)


def make_distribution(action: ActionSpec | int, gaussian_std: str = "parameter") -> Distribution:
    """The policy distribution for an action space: ``Categorical`` for discrete actions,
    ``DiagGaussian(D, gaussian_std)`` for continuous ones, ``MultiCategorical`` for
    ``MultiDiscrete`` and ``Bernoulli`` for ``MultiBinary`` ones.

    Raises:
        ValueError: if ``gaussian_std`` is not one of ``STD_KINDS``.
    """
    action = ActionSpec.of(action)
    if action.discrete:
        return Categorical(action.n)
    if action.nvec:
        return MultiCategorical(action.nvec)
    if action.binary:
        return Bernoulli(action.shape[0])
    return DiagGaussian(action.shape[0], gaussian_std)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)  # log(1 + e^x), without overflow


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x), without overflow
