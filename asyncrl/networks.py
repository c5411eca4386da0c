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

NETWORKS = ("auto", "mlp", "nature", "minatar")
"""Values of ``--network``: ``auto`` picks ``mlp`` for flat observations, ``minatar`` for
images smaller than 36x36 and ``nature`` for larger ones."""


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
    def of(cls, obs: "ObsSpec | int | Sequence[int]") -> "ObsSpec":
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
            vectors, or the images are too small for the CNN (``nature`` needs at least
            36x36, ``minatar`` at least 3x3).
    """
    if network not in NETWORKS:
        raise NetworkError(f"--network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if len(obs.shape) not in (1, 3):
        raise NetworkError(f"no network reads observations of shape {list(obs.shape)}: "
                           "need flat vectors or (C, H, W) images")
    if network == "auto":
        if not obs.is_image:
            return "mlp"
        return "nature" if min(obs.shape[1:]) >= 36 else "minatar"
    if network == "mlp" and obs.is_image:
        raise NetworkError(f"--network mlp needs flat observations, got {obs.describe()}; "
                           "use --network auto, nature or minatar")
    if network != "mlp" and not obs.is_image:
        raise NetworkError(f"--network {network} needs image observations, got {obs.describe()}; "
                           "use --network auto or mlp")
    smallest = 36 if network == "nature" else 3
    if obs.is_image and min(obs.shape[1:]) < smallest:
        raise NetworkError(f"--network {network} needs images of at least {smallest}x{smallest}, got "
                           f"{obs.describe()}")
    return network


class MLPTorso(nn.Module):
    """Fully connected torso for flat observations: ``[N, obs_dim] float32 -> [N, out_dim]``.

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
        self.obs_shape = (obs_dim,)
        self.out_dim = in_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


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


def nature_torso(obs: ObsSpec) -> ConvTorso:
    """The paper's Atari network (Mnih et al. 2016, Section 8, after Mnih et al. 2013):
    conv 16 8x8 stride 4, conv 32 4x4 stride 2, fully connected 256, ReLU; for
    ``4 x 84 x 84`` frame stacks."""
    return ConvTorso(obs, [(16, 8, 4), (32, 4, 2)], 256)


def minatar_torso(obs: ObsSpec) -> ConvTorso:
    """MinAtar's network (Young & Tian 2019): conv 16 3x3 stride 1, fully connected 128,
    ReLU; for ``C x 10 x 10`` inputs."""
    return ConvTorso(obs, [(16, 3, 1)], 128)


def build_torso(obs: ObsSpec | int, network: str, hidden_sizes: Sequence[int]) -> nn.Module:
    """The torso ``--network network`` gives for observations ``obs`` (``hidden_sizes``:
    the MLP's widths; the CNNs have their papers' own).

    Raises:
        NetworkError: as ``resolve_network``.
    """
    obs = ObsSpec.of(obs)
    kind = resolve_network(network, obs)
    if kind == "mlp":
        return MLPTorso(obs.shape[0], hidden_sizes)
    return nature_torso(obs) if kind == "nature" else minatar_torso(obs)


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


class ActorCritic(nn.Module):
    """Policy and value heads, on one shared torso (Mnih et al. 2016, Section 5.1) or,
    with ``value_torso``, on two separate ones.

    ``forward(obs: [N, *obs_shape]) -> (params: [N, P] float32, value: [N] float32)``: the
    policy's distribution parameters (logits for ``Categorical``, ``P = A``; mean and scale
    for ``DiagGaussian``, ``P = 2D``), read through ``model.dist``
    (``asyncrl.distributions``). The policy head starts near uniform / near zero mean
    (gain 0.01), the value head at gain 1.

    Args:
        torso: the policy's (and, without ``value_torso``, the value's) torso.
        action: the action space, or the number of discrete actions.
        value_torso: the value head's own torso, or None to share ``torso``.
        gaussian_std: the Gaussian's scale parameterisation (continuous actions).
        normalizer: the observation and return statistics of a run that normalises them
            (``asyncrl.normalization``): buffers only, which travel with the weights.
    """

    def __init__(self, torso: nn.Module, action: ActionSpec | int, value_torso: nn.Module | None = None,
                 gaussian_std: str = "parameter", normalizer: nn.Module | None = None) -> None:
        super().__init__()
        self.dist = make_distribution(action, gaussian_std)
        self.torso = torso
        self.value_torso = value_torso
        self.policy = PolicyHead(torso.out_dim, self.dist)
        self.value = _head((value_torso or torso).out_dim, 1, gain=1.0)
        self.normalizer = normalizer

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso(obs)
        value_features = features if self.value_torso is None else self.value_torso(obs)
        return self.policy(features), self.value(value_features).squeeze(-1)


class QNetwork(nn.Module):
    """Action values ``Q(s, .)``: ``forward(obs: [N, *obs_shape]) -> [N, A] float32``."""

    def __init__(self, torso: nn.Module, num_actions: int) -> None:
        super().__init__()
        self.torso = torso
        self.head = _head(torso.out_dim, num_actions, gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


def build_q_network(obs: ObsSpec | int, action: ActionSpec | int, hidden_sizes: Sequence[int],
                    network: str = "auto") -> QNetwork:
    """The Q-network for observations ``obs`` and a ``Discrete`` action space (or its size).

    Raises:
        NetworkError: as ``resolve_network``.
        ValueError: if ``action`` is continuous.
    """
    action = ActionSpec.of(action)
    if not action.discrete:
        raise ValueError(f"a Q-network needs discrete actions, got {action.describe()}")
    return QNetwork(build_torso(obs, network, hidden_sizes), action.n)


def build_actor_critic(obs: ObsSpec | int, action: ActionSpec | int, hidden_sizes: Sequence[int],
                       shared_torso: bool | None = True, network: str = "auto", gaussian_std: str = "parameter",
                       normalizer: nn.Module | None = None) -> ActorCritic:
    """The actor-critic for observations ``obs`` and the action space ``action`` (or a
    number of discrete actions).

    Args:
        shared_torso: one torso for both heads; ``None``: shared for a CNN (the paper's
            Atari network), one torso per head for an MLP.
        gaussian_std: ``"softplus"`` or ``"parameter"``, for continuous actions
            (``distributions.DiagGaussian``).
        normalizer: see ``ActorCritic``.

    Raises:
        NetworkError: as ``resolve_network``.
    """
    torso = build_torso(obs, network, hidden_sizes)
    if shared_torso is None:
        shared_torso = not isinstance(torso, MLPTorso)
    value_torso = None if shared_torso else build_torso(obs, network, hidden_sizes)
    return ActorCritic(torso, action, value_torso, gaussian_std, normalizer)


class NumpyMLP:
    """Fast forward pass of an ``MLPTorso`` and one linear head (a ``PolicyHead``'s
    ``log_std``, where it has one, appended), in NumPy.

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
        log_std = getattr(head, "log_std", None)  # a PolicyHead's state-independent log sigma
        self.log_std = None if log_std is None else log_std.detach().numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = obs
        if h.ndim == 1:
            for weight, bias in self.layers:
                h = np.tanh(weight @ h + bias)  # [width]
            weight, bias = self.head
            out = weight @ h + bias  # [out]
            return out if self.log_std is None else np.concatenate([out, self.log_std])
        for weight, bias in self.layers:
            h = np.tanh(h @ weight.T + bias)  # [N, width]
        weight, bias = self.head
        out = h @ weight.T + bias  # [N, out]
        if self.log_std is None:
            return out
        return np.concatenate([out, np.broadcast_to(self.log_std, (len(out), len(self.log_std)))], axis=1)


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
    """The fastest forward pass of ``head(torso(.))`` for acting: ``NumpyMLP`` for an
    ``MLPTorso``, else ``TorchForward``. Both read the modules' current parameters."""
    if isinstance(torso, MLPTorso):
        return NumpyMLP(torso, head)
    return TorchForward(torso, head)


class PolicyValue:
    """``(params [N, P], values [N])`` of an ``ActorCritic`` for a batch ``obs: [N, *obs_shape]``,
    without autograd, by ``fast_forward``: one pass through a shared torso, two through
    separate ones."""

    def __init__(self, model: ActorCritic) -> None:
        self.shared_cnn = model.value_torso is None and not isinstance(model.torso, MLPTorso)
        self.model = model
        self.policy = fast_forward(model.torso, model.policy)
        self.value = fast_forward(model.value_torso or model.torso, model.value)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.shared_cnn:
            with torch.inference_mode():
                logits, values = self.model(torch.from_numpy(obs))
            return logits.numpy(), values.numpy()
        return self.policy(obs), self.value(obs)[:, 0]

    def values(self, obs: np.ndarray) -> np.ndarray:
        """``V(s)`` for a batch ``obs: [N, *obs_shape]`` -> ``[N]``."""
        return self.value(obs)[:, 0]
