"""Neural networks: torsos chosen by the observation's shape, actor-critic and Q heads,
and fast forward passes for acting one observation at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asyncrl.distributions import ActionSpec, Distribution, make_distribution
from asyncrl.numpy_path import NumpyLSTM, NumpyMLP, has_numpy_form

NETWORKS = ("auto", "mlp", "nature", "nature2015", "minatar")
"""Values of ``--network``: ``auto`` picks ``mlp`` for flat observations, ``minatar`` for
images smaller than 36x36 and ``nature`` for larger ones; ``nature2015`` is the DQN
paper's larger CNN."""


class NetworkError(ValueError):
    """A ``--network`` that cannot read the environment's observations."""


@dataclasses.dataclass(frozen=True)
class ObsSpec:
    """What one observation is: its shape and dtype, and for images the largest pixel value.

    Flat observations are ``(obs_dim,)`` float32; images are ``(C, H, W)`` uint8,
    channels first, kept uint8 end to end (rollout slots, buffers) and divided by
    ``high`` inside the network.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    high: float = 1.0

    @classmethod
    def of(cls, obs: ObsSpec | int | Sequence[int]) -> ObsSpec:
        """``obs`` itself, or a flat float32 spec for a size or shape."""
        if isinstance(obs, ObsSpec):
            return obs
        return cls((int(obs),) if isinstance(obs, int) else tuple(int(n) for n in obs))

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def describe(self) -> str:
        return f"{'images' if self.is_image else 'vectors'} {list(self.shape)} {self.dtype}"


def resolve_network(network: str, obs: ObsSpec) -> str:
    """The torso ``--network network`` means for observations ``obs``.

    Raises:
        NetworkError: if ``network`` is unknown, ``mlp`` is asked for images, a CNN for
            vectors, or the images are too small for the CNN (``nature`` and
            ``nature2015`` need at least 36x36, ``minatar`` at least 3x3).
    """
    if network not in NETWORKS:
        raise NetworkError(f"--network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if len(obs.shape) not in (1, 3):
        raise NetworkError(
            f"no network reads observations of shape {list(obs.shape)}: need flat vectors or (C, H, W) images"
        )
    if network == "auto":
        if not obs.is_image:
            return "mlp"
        return "nature" if min(obs.shape[1:]) >= 36 else "minatar"
    if network == "mlp" and obs.is_image:
        raise NetworkError(
            f"--network mlp needs flat observations, got {obs.describe()}; "
            "use --network auto, nature, nature2015 or minatar"
        )
    if network != "mlp" and not obs.is_image:
        raise NetworkError(
            f"--network {network} needs image observations, got {obs.describe()}; use --network auto or mlp"
        )
    smallest = 36 if network in ("nature", "nature2015") else 3
    if obs.is_image and min(obs.shape[1:]) < smallest:
        raise NetworkError(f"--network {network} needs images of at least {smallest}x{smallest}, got {obs.describe()}")
    return network


class MLPTorso(nn.Module):
    """Fully connected torso for flat observations: ``[N, obs_dim] float32 -> [N, out_dim]``.

    ``activation="tanh"`` (the actor-critics'): layers orthogonally initialised (gain
    sqrt(2)) with zero biases and tanh activations, the usual choice for small control
    tasks. ``"relu"`` (the off-policy learners', as SB3's): ReLU with PyTorch's default
    initialisation.
    """

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be tanh or relu, got {activation!r}")
        layers: list[nn.Module] = []
        in_dim = obs_dim
        for width in hidden_sizes:
            linear = nn.Linear(in_dim, width)
            if activation == "tanh":
                nn.init.orthogonal_(linear.weight, gain=2**0.5)
                nn.init.zeros_(linear.bias)
            layers += [linear, nn.Tanh() if activation == "tanh" else nn.ReLU()]
            in_dim = width
        self.activation = activation
        self.net = nn.Sequential(*layers)
        self.obs_shape = (obs_dim,)
        self.out_dim = in_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def numpy_form(self) -> tuple[list[nn.Linear], str]:
        """Its linear layers, in order, and its activation: the NumPy fast path applies
        (``asyncrl.numpy_path``)."""
        return [m for m in self.net if isinstance(m, nn.Linear)], self.activation


def _relu_layer(layer: nn.Conv2d | nn.Linear) -> nn.Conv2d | nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=2**0.5)
    nn.init.zeros_(layer.bias)
    return layer


class ConvTorso(nn.Module):
    """Convolutional torso for images: ``[N, C, H, W] uint8 -> [N, out_dim] float32``.

    The observation is cast to float32 and divided by ``high`` (255 for Atari frames,
    1 for MinAtar's 0/1 channels) inside the network, so that images travel as uint8.
    Convolutions and the fully connected layer are followed by ReLU, orthogonally
    initialised (gain sqrt(2)) with zero biases.

    Args:
        obs: the observation spec, ``(C, H, W)``.
        convs: ``(out_channels, kernel, stride)`` per convolution.
        hidden: width of the fully connected layer.
    """

    def __init__(self, obs: ObsSpec, convs: Sequence[tuple[int, int, int]], hidden: int) -> None:
        super().__init__()
        channels, height, width = obs.shape
        layers: list[nn.Module] = []
        for out_channels, kernel, stride in convs:
            layers += [_relu_layer(nn.Conv2d(channels, out_channels, kernel, stride)), nn.ReLU()]
            channels = out_channels
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        self.convs = nn.Sequential(*layers)
        self._conv_layers = [m for m in layers if isinstance(m, nn.Conv2d)]  # (not registered twice)
        self.fc = _relu_layer(nn.Linear(channels * height * width, hidden))
        self.scale = 1.0 / obs.high
        self.obs_shape = obs.shape
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Batches go channels-last (NHWC): oneDNN's convolutions, backward above all, run
        # 1.3-2x faster so on one CPU thread (measured at batch 256); one observation
        # stays as it is, where the layout gains nothing.
        layout = torch.channels_last if obs.shape[0] > 1 else torch.contiguous_format
        x = obs.to(torch.float32, memory_format=layout) * self.scale  # [N, C, H, W] in [0, 1]
        for conv in self._conv_layers:  # self.convs without nn.Module's per-call machinery
            x = torch.relu(F.conv2d(x, conv.weight, conv.bias, conv.stride))
        return torch.relu(F.linear(x.flatten(1), self.fc.weight, self.fc.bias))  # [N, hidden]

    def numpy_form(self) -> None:
        """None: NumPy has no fast convolution, so the fast path does not apply
        (``asyncrl.numpy_path``)."""
        return None


def nature_torso(obs: ObsSpec) -> ConvTorso:
    """The paper's Atari network (Mnih et al. 2016, Section 8, after Mnih et al. 2013):
    conv 16 8x8 stride 4, conv 32 4x4 stride 2, fully connected 256, ReLU; for
    ``4 x 84 x 84`` frame stacks."""
    return ConvTorso(obs, [(16, 8, 4), (32, 4, 2)], 256)


def nature2015_torso(obs: ObsSpec) -> ConvTorso:
    """The DQN paper's network (Mnih et al. 2015, Methods): conv 32 8x8 stride 4, conv 64
    4x4 stride 2, conv 64 3x3 stride 1, fully connected 512, ReLU; for ``4 x 84 x 84``
    frame stacks (SB3's ``NatureCNN``)."""
    return ConvTorso(obs, [(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512)


def minatar_torso(obs: ObsSpec) -> ConvTorso:
    """MinAtar's network (Young & Tian 2019): conv 16 3x3 stride 1, fully connected 128,
    ReLU; for ``C x 10 x 10`` inputs."""
    return ConvTorso(obs, [(16, 3, 1)], 128)


def build_torso(obs: ObsSpec | int, network: str, hidden_sizes: Sequence[int], activation: str = "tanh") -> nn.Module:
    """The torso ``--network network`` gives for observations ``obs`` (``hidden_sizes``
    and ``activation``: the MLP's; the CNNs have their papers' own).

    Raises:
        NetworkError: as ``resolve_network``.
    """
    obs = ObsSpec.of(obs)
    kind = resolve_network(network, obs)
    if kind == "mlp":
        return MLPTorso(obs.shape[0], hidden_sizes, activation)
    return {"nature": nature_torso, "nature2015": nature2015_torso, "minatar": minatar_torso}[kind](obs)


def _head(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    linear = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


class PolicyHead(nn.Linear):
    """The policy head: a linear layer to ``dist.head_dim`` outputs, and for a Gaussian with a
    state-independent scale (``DiagGaussian(std="parameter")``) a learned ``log_std: [D]``
    (initially 0: sigma = 1, as CleanRL's and SB3's) appended to every row.

    ``forward(features: [N, in]) -> params: [N, dist.param_dim]``. Initialised orthogonally
    with gain 0.01 (near-uniform or near-zero-mean policies) and zero biases.
    """

    def __init__(self, in_dim: int, dist: Distribution) -> None:
        super().__init__(in_dim, dist.head_dim)
        nn.init.orthogonal_(self.weight, gain=0.01)
        nn.init.zeros_(self.bias)
        appends = dist.param_dim - dist.head_dim
        self.log_std = nn.Parameter(torch.zeros(appends)) if appends else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = F.linear(features, self.weight, self.bias)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand(*out.shape[:-1], -1)], dim=-1)


RecurrentState = tuple[torch.Tensor, torch.Tensor]
"""An LSTM core's state ``(h, c)``, each ``[B, lstm_size]`` float32."""


class ActorCritic(nn.Module):
    """Policy and value heads, on one shared torso (Mnih et al. 2016, Section 5.1) or,
    with ``value_torso``, on two separate ones; with ``lstm_size``, an LSTM core between the
    shared torso and both heads (the paper's A3C LSTM: Section 8 and supplementary Section 9).

    ``forward(obs: [N, *obs_shape]) -> (params: [N, P] float32, value: [N] float32)``: the
    policy's distribution parameters (logits for ``Categorical``, ``P = A``; mean and scale
    for ``DiagGaussian``, ``P = 2D``), read through ``model.dist``
    (``asyncrl.distributions``), for a feed-forward model. ``sequence`` works for both
    kinds: time-major ``[T, B]`` observations, and for a recurrent model its state and
    resets. The policy head starts near uniform / near zero mean (gain 0.01), the value
    head at gain 1; the LSTM's weights are orthogonal, its biases zero (CleanRL's
    ``ppo_atari_lstm``).

    Args:
        torso: the policy's (and, without ``value_torso``, the value's) torso.
        action: the action space, or the number of discrete actions.
        value_torso: the value head's own torso, or None to share ``torso``.
        gaussian_std: the Gaussian's scale parameterisation (continuous actions).
        normalizer: the observation and return statistics of a run that normalises them
            (``asyncrl.normalization``): buffers only, which travel with the weights.
        lstm_size: width of the LSTM core, or 0 for none.

    Raises:
        ValueError: if ``lstm_size`` is combined with a ``value_torso``.
    """

    dist: Distribution
    torso: nn.Module
    value_torso: nn.Module | None
    core: nn.LSTMCell | None
    policy: PolicyHead
    value: nn.Linear
    normalizer: nn.Module | None

    def __init__(
        self,
        torso: nn.Module,
        action: ActionSpec | int,
        value_torso: nn.Module | None = None,
        gaussian_std: str = "parameter",
        normalizer: nn.Module | None = None,
        lstm_size: int = 0,
    ) -> None:
        super().__init__()
        if lstm_size and value_torso is not None:
            raise ValueError("an LSTM core feeds both heads: it needs one shared torso")
        self.dist = make_distribution(action, gaussian_std)
        self.torso = torso
        self.value_torso = value_torso
        self.core = nn.LSTMCell(torso.out_dim, lstm_size) if lstm_size else None
        if self.core is not None:
            for name, param in self.core.named_parameters():
                nn.init.zeros_(param) if "bias" in name else nn.init.orthogonal_(param)
        features = lstm_size or torso.out_dim
        self.policy = PolicyHead(features, self.dist)
        self.value = _head(lstm_size or (value_torso or torso).out_dim, 1, gain=1.0)
        self.normalizer = normalizer

    @property
    def recurrent(self) -> bool:
        return self.core is not None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.core is not None:
            raise TypeError("a recurrent ActorCritic needs its state: use sequence() or step()")
        features = self.torso(obs)
        value_features = features if self.value_torso is None else self.value_torso(obs)
        return self.policy(features), self.value(value_features).squeeze(-1)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> RecurrentState | None:
        """Zeros ``(h, c)`` for ``batch`` environments, or None for a feed-forward model."""
        if self.core is None:
            return None
        zeros = torch.zeros(batch, self.core.hidden_size, device=device)
        return zeros, zeros.clone()

    def sequence(
        self,
        obs: torch.Tensor,
        state: RecurrentState | None = None,
        resets: torch.Tensor | None = None,
        states: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState | None]:
        """Run ``T`` steps of ``B`` environments: ``obs: [T, B, *obs_shape]``.

        The torso runs once on all ``T * B`` observations; the LSTM core then steps through
        time from ``state`` (each ``[B, H]``), zeroing the state of environment ``b``
        before step ``t`` where ``resets[t, b]`` (an episode begins at ``obs[t, b]``).
        Gradients flow through the whole unroll (truncated back-propagation through time
        over these ``T`` steps; pass a detached ``state``).

        Args:
            states: return every step's ``(h, c)``. Without them the core runs as
                ``torch.lstm`` (one C++ loop) over the spans between reset times, several
                times faster than stepping it from Python; the results are the same up to
                float rounding.

        Returns:
            ``(params [T, B, P], values [T, B], states)``: ``states = (h, c)``, each
            ``[T, B, H]``, the core's state after each step (before any reset for the
            next); None for a feed-forward model (which ignores ``state`` and ``resets``)
            or without ``states``.
        """
        T, B = obs.shape[:2]
        if self.core is None:
            params, values = self(obs.flatten(0, 1))
            return params.view(T, B, -1), values.view(T, B), None
        features = self.torso(obs.flatten(0, 1)).view(T, B, -1)  # [T, B, F]
        h, c = state if state is not None else self.initial_state(B, obs.device)
        if not states:
            h_all = self._spans(features, h, c, resets)
            return self.policy(h_all), self.value(h_all).squeeze(-1), None
        keep = None if resets is None else (~resets).to(features.dtype).unsqueeze(-1)  # [T, B, 1]
        hs, cs = [], []
        for t in range(T):
            if keep is not None:
                h, c = h * keep[t], c * keep[t]
            h, c = self.core(features[t], (h, c))
            hs.append(h)
            cs.append(c)
        h_all, c_all = torch.stack(hs), torch.stack(cs)  # [T, B, H]
        return self.policy(h_all), self.value(h_all).squeeze(-1), (h_all, c_all)

    def _spans(
        self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor, resets: torch.Tensor | None
    ) -> torch.Tensor:
        """``h`` after every step (``[T, B, H]``), the core run by ``torch.lstm`` over each
        span of steps between two reset times, the state masked at the span's start."""
        T = features.shape[0]
        weights = [self.core.weight_ih, self.core.weight_hh, self.core.bias_ih, self.core.bias_hh]
        starts = [0] if resets is None else sorted({0, *torch.nonzero(resets.any(1)).flatten().tolist()})
        outputs = []
        for start, end in zip(starts, starts[1:] + [T]):
            if resets is not None:
                keep = (~resets[start]).to(h.dtype).unsqueeze(-1)  # [B, 1]
                h, c = h * keep, c * keep
            out, h_n, c_n = torch.lstm(
                features[start:end],
                (h.unsqueeze(0), c.unsqueeze(0)),
                weights,
                True,
                1,
                0.0,
                self.training,
                False,
                False,
            )
            h, c = h_n[0], c_n[0]
            outputs.append(out)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def step(
        self, obs: torch.Tensor, state: RecurrentState | None
    ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState | None]:
        """One step of ``B`` environments, ``obs: [B, *obs_shape]`` -> ``(params [B, P],
        values [B], new state)``."""
        params, values, states = self.sequence(obs.unsqueeze(0), state)
        new_state = None if states is None else (states[0][0], states[1][0])
        return params[0], values[0], new_state


class QNetwork(nn.Module):
    """Action values ``Q(s, .)``: ``forward(obs: [N, *obs_shape]) -> [N, A] float32``."""

    def __init__(self, torso: nn.Module, num_actions: int) -> None:
        super().__init__()
        self.torso = torso
        self.head = _head(torso.out_dim, num_actions, gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


def build_q_network(
    obs: ObsSpec | int,
    action: ActionSpec | int,
    hidden_sizes: Sequence[int],
    network: str = "auto",
    activation: str = "tanh",
) -> QNetwork:
    """The Q-network for observations ``obs`` and a ``Discrete`` action space (or its size).

    Raises:
        NetworkError: as ``resolve_network``.
        ValueError: if ``action`` is continuous.
    """
    action = ActionSpec.of(action)
    if not action.discrete:
        raise ValueError(f"a Q-network needs discrete actions, got {action.describe()}")
    return QNetwork(build_torso(obs, network, hidden_sizes, activation), action.n)


class DeterministicActor(nn.Module):
    """A deterministic policy ``mu(s) = tanh(head(torso(s)))`` in ``[-1, 1]^D`` (DDPG,
    TD3; the environment's bounds are an affine map away): ``[N, obs_dim] -> [N, D]``.

    Args:
        obs_dim: observation width.
        action_dim: ``D``.
        hidden_sizes: ReLU MLP widths.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.torso = MLPTorso(obs_dim, hidden_sizes, "relu")
        self.head = nn.Linear(self.torso.out_dim, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.torso(obs)))


class SquashedGaussianActor(nn.Module):
    """The SAC policy's parameters: ``[N, obs_dim] -> (mean [N, D], log_std [N, D])``, the
    pre-tanh Gaussian of ``distributions.SquashedGaussian``; ``log_std`` clamped to
    ``[LOG_STD_MIN, LOG_STD_MAX]`` (Haarnoja et al.'s implementation, SB3).

    Args:
        obs_dim: observation width.
        action_dim: ``D``.
        hidden_sizes: ReLU MLP widths.
    """

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.torso = MLPTorso(obs_dim, hidden_sizes, "relu")
        self.head = nn.Linear(self.torso.out_dim, 2 * action_dim)  # [mean, log_std]
        self.action_dim = action_dim

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.torso(obs)).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)


class Critics(nn.Module):
    """``K`` independent critics ``Q_k(s, a)``, each a ReLU MLP on ``[s, a]``, computed
    together as one ensemble (batched matrix products, one kernel per layer for all ``K``).

    ``forward(obs: [N, obs_dim], actions: [N, D]) -> [K, N]``; ``first(obs, actions) ->
    [N]`` is ``Q_1`` alone (TD3's actor loss). Each critic is initialised as an
    ``nn.Linear`` stack would be (uniform in +-1/sqrt(fan_in)).

    Args:
        obs_dim: observation width.
        action_dim: ``D``.
        hidden_sizes: widths.
        n: ``K``.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int], n: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        in_dim = obs_dim + action_dim
        for width in (*hidden_sizes, 1):
            bound = 1.0 / in_dim**0.5
            self.weights.append(nn.Parameter(torch.empty(n, in_dim, width).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, width).uniform_(-bound, bound)))
            in_dim = width
        self.n = n

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._ensemble(torch.cat([obs, actions], dim=-1), self.n)

    def first(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._ensemble(torch.cat([obs, actions], dim=-1), 1)[0]

    def _ensemble(self, x: torch.Tensor, k: int) -> torch.Tensor:
        h = x.unsqueeze(0).expand(k, *x.shape)  # [k, N, in]
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias[:k], h, weight[:k])  # [k, N, width]
            if i < last:
                h = torch.relu(h)
        return h.squeeze(-1)  # [k, N]


def build_actor_critic(
    obs: ObsSpec | int,
    action: ActionSpec | int,
    hidden_sizes: Sequence[int],
    shared_torso: bool | None = True,
    network: str = "auto",
    gaussian_std: str = "parameter",
    normalizer: nn.Module | None = None,
    lstm_size: int = 0,
) -> ActorCritic:
    """The actor-critic for observations ``obs`` and the action space ``action`` (or a
    number of discrete actions).

    Args:
        shared_torso: one torso for both heads; ``None``: shared for a CNN (the paper's
            Atari network) or with an LSTM core, one torso per head for an MLP.
        gaussian_std: ``"softplus"`` or ``"parameter"``, for continuous actions
            (``distributions.DiagGaussian``).
        normalizer: see ``ActorCritic``.
        lstm_size: width of an LSTM core between torso and heads (0: none).

    Raises:
        NetworkError: as ``resolve_network``, or if an LSTM core is asked with one torso
            per head.
    """
    torso = build_torso(obs, network, hidden_sizes)
    if shared_torso is None:
        shared_torso = bool(lstm_size) or not isinstance(torso, MLPTorso)
    if lstm_size and not shared_torso:
        raise NetworkError("--lstm feeds both heads from one core: it needs --shared-torso")
    value_torso = None if shared_torso else build_torso(obs, network, hidden_sizes)
    return ActorCritic(torso, action, value_torso, gaussian_std, normalizer, lstm_size)


class TorchForward:
    """``head(torso(obs))`` without autograd, for any torso: the acting path where
    ``NumpyMLP`` does not apply (the CNNs, whose convolutions NumPy has no fast kernel for).

    ``__call__(obs: [*obs_shape]) -> [out] float32`` or ``[N, *obs_shape] -> [N, out]``;
    the modules are used as they are, so the forward pass sees their current values.
    """

    def __init__(self, torso: nn.Module, head: nn.Linear) -> None:
        self.torso, self.head = torso, head
        self.obs_ndim = len(torso.obs_shape)

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(obs)
        single = x.dim() == self.obs_ndim
        features = self.torso.forward(x.unsqueeze(0) if single else x)
        if isinstance(self.head, PolicyHead):
            out = self.head.forward(features)
        else:
            out = F.linear(features, self.head.weight, self.head.bias)
        return out[0].numpy() if single else out.numpy()  # [out] or [N, out]


def fast_forward(torso: nn.Module, head: nn.Linear) -> Callable[[np.ndarray], np.ndarray]:
    """The fastest forward pass of ``head(torso(.))`` for acting: ``NumpyMLP`` where the torso
    has a NumPy form, else ``TorchForward``. Both read the modules' current parameters."""
    if has_numpy_form(torso):
        return NumpyMLP(torso, head)
    return TorchForward(torso, head)


class PolicyValue:
    """``(params [N, P], values [N])`` of a feed-forward ``ActorCritic`` for a batch
    ``obs: [N, *obs_shape]``, without autograd, by ``fast_forward``: one pass through a
    shared torso, two through separate ones. Stateless: ``reset`` and ``state`` are there
    for the interface ``RecurrentPolicyValue`` shares."""

    def __init__(self, model: ActorCritic) -> None:
        self.shared_cnn = model.value_torso is None and not has_numpy_form(model.torso)
        self.model = model
        self.policy = fast_forward(model.torso, model.policy)
        self.value = fast_forward(model.value_torso or model.torso, model.value)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.shared_cnn:
            with torch.inference_mode():
                logits, values = self.model(torch.from_numpy(obs))
            return logits.numpy(), values.numpy()
        return self.policy(obs), self.value(obs)[:, 0]

    def params(self, obs: np.ndarray) -> np.ndarray:
        """The policy's parameters alone, ``[N, P]`` (A3C's acting: its values come from the
        update's own forward pass)."""
        return self.policy(obs)

    def values(self, obs: np.ndarray, envs: Sequence[int] | slice = slice(None)) -> np.ndarray:
        """``V(s)`` for a batch ``obs: [N, *obs_shape]`` -> ``[N]`` (``envs``: which
        environments the rows belong to, for a recurrent model)."""
        return self.value(obs)[:, 0]

    def reset(self, env: int) -> None:
        """Where environment ``env``'s episode ended (nothing to forget here)."""

    def state(self) -> np.ndarray | None:
        """The recurrent state of every environment (None: feed-forward)."""
        return None


class _RecurrentStep:
    """``model.step`` on NumPy arrays without autograd: ``NumpyLSTM`` where the torso has a
    NumPy form, torch (``no_grad``) otherwise."""

    def __init__(self, model: ActorCritic) -> None:
        self.model = model
        self.numpy = NumpyLSTM(model) if has_numpy_form(model.torso) else None

    def __call__(self, obs: np.ndarray, h: np.ndarray, c: np.ndarray):
        if self.numpy is not None:
            return self.numpy(obs, h, c)
        with torch.no_grad():
            params, values, (h, c) = self.model.step(torch.from_numpy(obs), (torch.from_numpy(h), torch.from_numpy(c)))
        return params.numpy(), values.numpy(), h.numpy(), c.numpy()


class RecurrentPolicyValue:
    """``PolicyValue`` for a recurrent ``ActorCritic`` acting in ``num_envs`` environments:
    each call steps the LSTM core one observation per environment, carrying its state
    ``(h, c)`` from step to step; ``reset(e)`` zeroes environment ``e``'s state where its
    episode ended. NumPy for an MLP torso (``NumpyLSTM``), torch without autograd otherwise.
    """

    def __init__(self, model: ActorCritic, num_envs: int) -> None:
        self.step = _RecurrentStep(model)
        self.h = np.zeros((num_envs, model.core.hidden_size), np.float32)
        self.c = np.zeros_like(self.h)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params, values, self.h, self.c = self.step(obs, self.h, self.c)
        return params, values

    def params(self, obs: np.ndarray) -> np.ndarray:
        """The policy's parameters, ``[N, P]``; steps the state as a call does."""
        return self(obs)[0]

    def values(self, obs: np.ndarray, envs: Sequence[int] | slice = slice(None)) -> np.ndarray:
        """``V(s)`` of ``obs: [N, *obs_shape]`` after the current state of ``envs``, without
        moving that state (the bootstrap value of a rollout's last observation, the last
        observation of a truncated episode)."""
        return self.step(obs, self.h[envs], self.c[envs])[1]

    def reset(self, env: int) -> None:
        self.h[env] = 0.0
        self.c[env] = 0.0

    def state(self) -> np.ndarray:
        """``[num_envs, 2, H]`` float32, a copy of ``(h, c)`` per environment."""
        return np.stack([self.h, self.c], axis=1)


def acting_policy_value(model: ActorCritic, num_envs: int) -> PolicyValue | RecurrentPolicyValue:
    """The acting path of an actor or actor-learner stepping ``num_envs`` environments."""
    return RecurrentPolicyValue(model, num_envs) if model.recurrent else PolicyValue(model)
