"""The NumPy fast path, in one place: acting, the batched learner's update and the
value-based methods' gradient, for networks of small MLP torsos on a CPU.

On a CPU, a small MLP spends most of a forward or backward pass in torch's per-operation
overhead (tens of microseconds a layer, plus a slow ``tanh`` kernel), so these classes do
the same arithmetic in NumPy on views of the very parameter (and gradient, and optimizer
state) tensors: the torch modules, checkpoints and publishing all see one state.

The path is chosen once, by the torso: a torso's ``numpy_form()`` gives its linear layers
and activation (``MLPTorso``), or None where NumPy has no fast kernel (the CNNs), and every
user -- ``networks.fast_forward``, ``networks.acting_policy_value``, ``updaters.make_updater``,
``updaters.make_q_gradient`` -- asks ``has_numpy_form``. One activation rule
(``ACTIVATIONS``) serves every forward and backward pass here. The equivalence tests
against the torch path and autograd are ``tests/test_numpy_path.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from asyncrl.distributions import Distribution

if TYPE_CHECKING:
    from asyncrl.networks import ActorCritic, QNetwork


class Activation(NamedTuple):
    """An activation's NumPy forward pass (it may overwrite its argument) and its
    derivative, computed from the forward pass's output ``y``."""

    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


ACTIVATIONS = {
    "tanh": Activation(np.tanh, lambda y: 1.0 - y**2),  # tanh' = 1 - tanh^2
    "relu": Activation(_relu, lambda y: (y > 0.0).astype(y.dtype)),
}
"""The torsos' activations, by ``MLPTorso.activation``."""


def has_numpy_form(torso: nn.Module) -> bool:
    """Whether the NumPy fast path applies to ``torso`` (its ``numpy_form()`` is not None)."""
    return torso.numpy_form() is not None  # type: ignore[operator]


def numpy_form(torso: nn.Module, user: str) -> tuple[list[nn.Linear], Activation]:
    """``torso``'s linear layers, in order, and its activation rule.

    Raises:
        TypeError: if the torso has no NumPy form (``user`` names who asked).
    """
    form = torso.numpy_form()  # type: ignore[operator]
    if form is None:
        raise TypeError(f"{user} needs a torso with a NumPy form (an MLP), got {type(torso).__name__}")
    linears, activation = form
    return linears, ACTIVATIONS[activation]


def torso_forward(layers, activation: Activation, obs: np.ndarray) -> list[np.ndarray]:
    """The hidden activations ``[obs, h_1, ..., h_L]`` of an MLP given as ``(W, dW, b, db)``
    views, for ``obs: [N, obs_dim]``."""
    hidden = [obs]
    for W, _, b, _ in layers:
        hidden.append(activation.forward(hidden[-1] @ W.T + b))  # [N, width]
    return hidden


def torso_backward(layers, activation: Activation, hidden: list[np.ndarray], d_out: np.ndarray) -> None:
    """Back-propagate ``d_out = d loss / d h_L`` (``[N, width]``) through the MLP, writing
    each layer's ``dW`` and ``db`` in place."""
    for i in range(len(layers) - 1, -1, -1):
        W, dW, _, db = layers[i]
        d_pre = d_out * activation.derivative(hidden[i + 1])
        np.matmul(d_pre.T, hidden[i], out=dW)
        np.sum(d_pre, axis=0, out=db)
        if i:
            d_out = d_pre @ W


# ---------------------------------------------------------------------------
# Acting.


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
        TypeError: if the torso has no NumPy form (a CNN).
    """

    def __init__(self, torso: nn.Module, head: nn.Linear) -> None:
        linears, activation = numpy_form(torso, "NumpyMLP")
        self.layers = [(lin.weight.detach().numpy(), lin.bias.detach().numpy()) for lin in linears]
        self.activation = activation.forward
        self.head = (head.weight.detach().numpy(), head.bias.detach().numpy())
        log_std = getattr(head, "log_std", None)  # a PolicyHead's state-independent log sigma
        self.log_std = None if log_std is None else log_std.detach().numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = obs
        if h.ndim == 1:
            for weight, bias in self.layers:
                h = self.activation(weight @ h + bias)  # [width]
            weight, bias = self.head
            out = weight @ h + bias  # [out]
            return out if self.log_std is None else np.concatenate([out, self.log_std])
        for weight, bias in self.layers:
            h = self.activation(h @ weight.T + bias)  # [N, width]
        weight, bias = self.head
        out = h @ weight.T + bias  # [N, out]
        if self.log_std is None:
            return out
        return np.concatenate([out, np.broadcast_to(self.log_std, (len(out), len(self.log_std)))], axis=1)


class NumpyLSTM:
    """One step of a recurrent ``ActorCritic`` with an MLP torso in NumPy: the acting path
    of the LSTM policies on control tasks, where torch's per-operation overhead dwarfs the
    arithmetic (as ``NumpyMLP``). Reads the modules' parameters through views, so it sees
    their current values.

    ``__call__(obs [N, obs_dim], h [N, H], c [N, H]) -> (params [N, P], values [N], h', c')``,
    equal to ``model.step`` up to float rounding (torch's gate order i, f, g, o).

    Raises:
        TypeError: if the model has no LSTM core or its torso has no NumPy form.
    """

    def __init__(self, model: ActorCritic) -> None:
        if not model.recurrent:
            raise TypeError("NumpyLSTM needs a recurrent ActorCritic")
        self.torso = NumpyMLP(model.torso, model.policy)
        core = model.core
        assert core is not None  # (model.recurrent)
        self.w_ih, self.w_hh = core.weight_ih.detach().numpy(), core.weight_hh.detach().numpy()
        self.b_ih, self.b_hh = core.bias_ih.detach().numpy(), core.bias_hh.detach().numpy()
        self.size = core.hidden_size
        self.value = (model.value.weight.detach().numpy(), model.value.bias.detach().numpy())

    @staticmethod
    def _sigmoid(x: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|

    def __call__(self, obs: np.ndarray, h: np.ndarray, c: np.ndarray):
        x = obs
        for weight, bias in self.torso.layers:
            x = self.torso.activation(x @ weight.T + bias)  # [N, width]
        gates = x @ self.w_ih.T + h @ self.w_hh.T + (self.b_ih + self.b_hh)  # [N, 4H]
        H = self.size
        i, f = self._sigmoid(gates[:, :H]), self._sigmoid(gates[:, H : 2 * H])
        g, o = np.tanh(gates[:, 2 * H : 3 * H]), self._sigmoid(gates[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        weight, bias = self.torso.head
        params = h @ weight.T + bias
        if self.torso.log_std is not None:
            params = np.concatenate(
                [params, np.broadcast_to(self.torso.log_std, (len(h), len(self.torso.log_std)))], axis=1
            )
        weight, bias = self.value
        return params, (h @ weight.T + bias)[:, 0], h, c


def numpy_path_applies(model: Any, optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Whether ``NumpyUpdater`` can stand in for ``TorchUpdater``: a CPU actor-critic whose
    torsos have a NumPy form, without an LSTM core, and plain Adam or RMSprop (no weight
    decay, AMSGrad, momentum or centring)."""
    if device.type != "cpu" or getattr(model, "recurrent", True) or not has_numpy_form(model.torso):
        return False
    if model.value_torso is not None and not has_numpy_form(model.value_torso):
        return False
    group = optimizer.param_groups[0]
    if len(optimizer.param_groups) != 1 or group.get("weight_decay", 0) or group.get("maximize", False):
        return False
    if isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW):
        return not group["amsgrad"]
    if isinstance(optimizer, torch.optim.RMSprop):
        return not group["momentum"] and not group["centered"]
    return False


# ---------------------------------------------------------------------------
# The NumPy path.


def actor_critic_loss_grad(
    dist: Distribution,
    params: np.ndarray,
    values: np.ndarray,
    actions: np.ndarray,
    returns: np.ndarray,
    value_coef: float,
    entropy_coef: float,
    advantages: np.ndarray,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``losses.actor_critic_loss`` with ``reduction="mean"``, with its gradients.

    Args:
        dist: the policy distribution.
        params: ``[N, P]``; actions: ``[N]`` int (``[N, D]`` for a Gaussian); values,
            returns, advantages: ``[N]``.

    Returns:
        ``(metrics, d loss / d params [N, P], d loss / d values [N])``.
    """
    N = len(values)
    logp_a, d_logp = dist.np_log_prob(params, actions)
    entropy, d_entropy = dist.np_entropy(params)
    errors = returns - values
    d_params = d_logp * (-advantages / N)[:, None] - entropy_coef * (d_entropy / N)
    d_values = -2.0 * value_coef * errors / N
    metrics = {
        "policy_loss": float(-(logp_a * advantages).mean()),
        "value_loss": float((errors**2).mean()),
        "entropy": float(entropy.mean()),
    }
    return metrics, d_params, d_values


def ppo_loss_grad(
    dist: Distribution,
    params: np.ndarray,
    values: np.ndarray,
    actions: np.ndarray,
    old_log_probs: np.ndarray,
    old_values: np.ndarray,
    advantages: np.ndarray,
    returns: np.ndarray,
    clip_range: float,
    value_clip: float | None,
    value_coef: float,
    entropy_coef: float,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``losses.ppo_loss``, with its gradients (ties of ``min``/``max`` resolved as autograd
    does: where both branches are equal they carry the same gradient).

    Args:
        dist: the policy distribution.
        params: ``[N, P]``; actions ``[N]`` (``[N, D]`` for a Gaussian); the other arrays ``[N]``.

    Returns:
        ``(metrics, d loss / d params [N, P], d loss / d values [N])``.
    """
    N = len(values)
    logp_a, d_logp = dist.np_log_prob(params, actions)
    log_ratio = logp_a - old_log_probs
    ratio = np.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    surrogate = np.minimum(unclipped, clipped)
    # d surrogate / d log pi(a|s): r A where the unclipped branch is the minimum (inside the
    # clip range both branches are r A), 0 where the clipped branch is smaller.
    d_surrogate = np.where(unclipped <= clipped, unclipped, 0.0)
    entropy, d_entropy = dist.np_entropy(params)
    d_params = d_logp * (-d_surrogate / N)[:, None] - entropy_coef * (d_entropy / N)
    errors = values - returns
    squared = errors**2
    if value_clip is None:
        value_loss = squared.mean()
        d_values = 2.0 * value_coef * errors / N
    else:
        change = values - old_values
        clipped_errors = old_values + np.clip(change, -value_clip, value_clip) - returns
        clipped_squared = clipped_errors**2
        value_loss = np.maximum(squared, clipped_squared).mean()
        inside = np.abs(change) <= value_clip
        d_values = 2.0 * value_coef / N * np.where(squared >= clipped_squared, errors, clipped_errors * inside)
    metrics = {
        "policy_loss": float(-surrogate.mean()),
        "value_loss": float(value_loss),
        "entropy": float(entropy.mean()),
        "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
        "clip_fraction": float((np.abs(ratio - 1.0) > clip_range).mean()),
    }
    return metrics, d_params, d_values


_LOSS_GRADS: dict[str, Callable[..., Any]] = {
    "actor_critic": actor_critic_loss_grad,
    "clipped_surrogate": ppo_loss_grad,
}


def _linears(torso: nn.Module) -> list[nn.Linear]:
    return [m for m in torso.modules() if isinstance(m, nn.Linear)]


class NumpyUpdater:
    """``TorchUpdater``'s forward pass and step, in NumPy, for a CPU MLP actor-critic.

    The model's parameters, their gradients and the optimizer's statistics become views
    of three (or four) flat float32 buffers, so that clipping and the optimizer step are
    a handful of vector operations; the torch tensors keep working (they are views too).

    Args:
        model: a CPU ``ActorCritic`` of ``MLPTorso`` torsos (tanh).
        optimizer: its ``torch.optim.Adam`` or ``RMSprop``, with state already created
            (``load_state_dict``); ``numpy_path_applies`` must hold.
        max_grad_norm: clip each step's gradient to this global L2 norm.

    Raises:
        ValueError: if ``numpy_path_applies`` does not hold or the optimizer has no state.
    """

    def __init__(self, model: ActorCritic, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> None:
        if not numpy_path_applies(model, optimizer, torch.device("cpu")):
            raise ValueError("NumpyUpdater needs a CPU MLP ActorCritic with plain Adam or RMSprop")
        self.model, self.optimizer, self.max_grad_norm = model, optimizer, max_grad_norm
        self.recurrent = False
        self.group = optimizer.param_groups[0]
        self.adam = isinstance(optimizer, torch.optim.Adam)
        params = list(self.group["params"])
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        offsets = np.cumsum([0] + sizes)
        self.flat_params = np.empty(total, np.float32)
        self.flat_grads = np.zeros(total, np.float32)
        names = ["exp_avg", "exp_avg_sq"] if self.adam else ["square_avg"]
        self.flat_state = {name: np.empty(total, np.float32) for name in names}
        self._tmp = np.empty(total, np.float32)
        views: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with torch.no_grad():
            for p, start, end in zip(params, offsets[:-1], offsets[1:]):
                state = optimizer.state[p]
                if not all(name in state for name in names):
                    raise ValueError("NumpyUpdater needs the optimizer's state created first (load_state_dict)")
                param_view = torch.from_numpy(self.flat_params[start:end]).view_as(p)
                param_view.copy_(p)
                p.data = param_view  # the torch parameter now lives in the flat buffer
                p.grad = torch.from_numpy(self.flat_grads[start:end]).view_as(p)
                for name in names:
                    state_view = torch.from_numpy(self.flat_state[name][start:end]).view_as(p)
                    state_view.copy_(state[name])
                    state[name] = state_view
                views[id(p)] = (
                    self.flat_params[start:end].reshape(p.shape),
                    self.flat_grads[start:end].reshape(p.shape),
                )
        self.steps = [optimizer.state[p]["step"] for p in params]

        def layers(linears: list[nn.Linear]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
            return [(*views[id(lin.weight)], *views[id(lin.bias)]) for lin in linears]  # (W, dW, b, db)

        self.policy_torso = layers(_linears(model.torso))
        self.value_torso = layers(_linears(model.value_torso)) if model.value_torso is not None else None
        self.policy_head = layers([model.policy])[0]
        self.value_head = layers([model.value])[0]
        self.dist = model.dist
        log_std = model.policy.log_std  # a state-independent Gaussian scale, or None
        self.log_std = None if log_std is None else views[id(log_std)]  # (log_std [D], its grad [D])

    # -- forward and backward ---------------------------------------------------

    @staticmethod
    def _torso_forward(layers, obs: np.ndarray) -> list[np.ndarray]:
        hidden = [obs]
        for W, _, b, _ in layers:
            hidden.append(np.tanh(hidden[-1] @ W.T + b))  # [N, width]
        return hidden

    @staticmethod
    def _torso_backward(layers, hidden: list[np.ndarray], d_out: np.ndarray) -> None:
        for i in range(len(layers) - 1, -1, -1):
            W, dW, _, db = layers[i]
            d_pre = d_out * (1.0 - hidden[i + 1] ** 2)  # tanh' = 1 - tanh^2
            np.matmul(d_pre.T, hidden[i], out=dW)
            np.sum(d_pre, axis=0, out=db)
            if i:
                d_out = d_pre @ W

    def _forward(self, obs: np.ndarray):
        policy_hidden = self._torso_forward(self.policy_torso, obs)
        value_hidden = policy_hidden if self.value_torso is None else self._torso_forward(self.value_torso, obs)
        W, _, b, _ = self.policy_head
        params = policy_hidden[-1] @ W.T + b  # [N, head_dim]
        if self.log_std is not None:
            log_std = self.log_std[0]
            params = np.concatenate([params, np.broadcast_to(log_std, (len(params), len(log_std)))], axis=1)
        W, _, b, _ = self.value_head
        values = (value_hidden[-1] @ W.T + b)[:, 0]  # [N]
        return params, values, policy_hidden, value_hidden  # params: [N, P]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs: [N, obs_dim]`` -> ``(params: [N, P], values: [N])``, without gradients."""
        params, values, _, _ = self._forward(obs.numpy())
        return torch.from_numpy(params), torch.from_numpy(values)

    def step(self, obs: torch.Tensor, loss: str, lr: float | None, **inputs: Any) -> dict[str, float]:
        """As ``TorchUpdater.step``."""
        params, values, policy_hidden, value_hidden = self._forward(obs.numpy())
        arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        metrics, d_params, d_values = _LOSS_GRADS[loss](self.dist, params, values, **arrays)
        d_params, d_values = d_params.astype(np.float32), d_values.astype(np.float32)
        d_logits = d_params  # [N, head_dim]: the head's linear outputs
        if self.log_std is not None:
            head_dim = self.policy_head[0].shape[0]
            d_logits = d_params[:, :head_dim]
            np.sum(d_params[:, head_dim:], axis=0, out=self.log_std[1])
        W, dW, _, db = self.policy_head
        np.matmul(d_logits.T, policy_hidden[-1], out=dW)
        np.sum(d_logits, axis=0, out=db)
        d_policy = d_logits @ W  # [N, width]
        W, dW, _, db = self.value_head
        np.matmul(d_values[None, :], value_hidden[-1], out=dW)
        db[0] = d_values.sum()
        d_value = d_values[:, None] * W  # [N, width]
        if self.value_torso is None:
            self._torso_backward(self.policy_torso, policy_hidden, d_policy + d_value)
        else:
            self._torso_backward(self.policy_torso, policy_hidden, d_policy)
            self._torso_backward(self.value_torso, value_hidden, d_value)
        self._clip_and_apply(lr if lr is not None else self.group["lr"])
        return metrics

    # -- clipping and the optimizer step ------------------------------------------

    def _clip_and_apply(self, lr: float) -> None:
        g, tmp = self.flat_grads, self._tmp
        norm = math.sqrt(float(np.dot(g, g)))
        coef = self.max_grad_norm / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
        if coef < 1.0:
            g *= coef
        self.group["lr"] = lr
        step = float(self.steps[0]) + 1.0
        for s in self.steps:
            s.fill_(step)
        eps = self.group["eps"]
        if self.adam:  # torch.optim.Adam
            beta1, beta2 = self.group["betas"]
            m, v = self.flat_state["exp_avg"], self.flat_state["exp_avg_sq"]
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - beta2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= math.sqrt(1.0 - beta2**step)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= lr / (1.0 - beta1**step)
            self.flat_params -= tmp
        else:  # torch.optim.RMSprop
            alpha = self.group["alpha"]
            sq = self.flat_state["square_avg"]
            sq *= alpha
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - alpha
            sq += tmp
            np.sqrt(sq, out=tmp)
            tmp += eps
            np.divide(g, tmp, out=tmp)
            tmp *= lr
            self.flat_params -= tmp


# ---------------------------------------------------------------------------
# The asynchronous value-based methods: the gradient of the squared TD error in NumPy.


def q_loss_grad(q_values: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """``losses.q_loss`` (``sum_i (y_i - Q(s_i, a_i))^2``) with its gradient.

    Args:
        q_values: ``[N, A]``; actions: ``[N]`` int; targets: ``[N]``.

    Returns:
        ``(metrics, d loss / d q_values [N, A])``: only the taken actions' entries are
        non-zero, ``-2 (y_i - Q(s_i, a_i))``.
    """
    rows = np.arange(len(actions))
    q_taken = q_values[rows, actions]
    errors = targets - q_taken
    d_q = np.zeros_like(q_values)
    d_q[rows, actions] = -2.0 * errors
    n = float(len(actions))
    return {"td_loss": float((errors**2).sum()) / n, "q_taken": float(q_taken.sum()) / n}, d_q


class NumpyQGradient:
    """The gradient of ``losses.q_loss`` for a ``QNetwork`` whose torso has a NumPy form,
    computed in NumPy and handed to the parameters as their ``.grad``.

    The asynchronous value-based actor-learners update every few env steps on a handful
    of observations, where torch's autograd costs far more than the arithmetic. Each
    instance owns its gradient buffers, allocated once and overwritten by each call, and
    points every parameter's ``.grad`` at them on each call: a ``.grad`` is a
    per-process attribute even when the parameter lives in shared memory, but in
    ``--serial`` mode several actor-learners share one process and one shared ``theta``,
    and each must apply the gradient it computed itself. Clipping and the optimizer step
    stay torch's.

    Args:
        model: the network whose parameters the gradient is taken at (the shared theta,
            or a local copy theta'); parameters on the CPU.

    Raises:
        TypeError: if ``model`` is not a ``QNetwork`` or its torso has no NumPy form.
    """

    def __init__(self, model: QNetwork) -> None:
        from asyncrl import networks  # (networks imports this module)

        if not isinstance(model, networks.QNetwork):
            raise TypeError(f"NumpyQGradient needs a QNetwork, got {type(model).__name__}")
        linears, self.activation = numpy_form(model.torso, "NumpyQGradient")
        self.params = list(model.parameters())
        self.grads = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        grads = {id(p): g for p, g in zip(self.params, self.grads)}

        def layer(linear: nn.Linear):
            return (
                linear.weight.detach().numpy(),
                grads[id(linear.weight)].numpy(),
                linear.bias.detach().numpy(),
                grads[id(linear.bias)].numpy(),
            )

        self.torso = [layer(lin) for lin in linears]
        self.head = layer(model.head)

    def __call__(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Compute ``d q_loss / d theta`` for ``obs: [N, obs_dim]``, ``actions: [N]``,
        ``targets: [N]`` and make it the parameters' ``.grad``; returns ``q_loss``'s metrics."""
        hidden = torso_forward(self.torso, self.activation, obs)
        W, dW, b, db = self.head
        q_values = hidden[-1] @ W.T + b  # [N, A]
        metrics, d_q = q_loss_grad(q_values, actions, targets)
        d_q = d_q.astype(np.float32)
        np.matmul(d_q.T, hidden[-1], out=dW)
        np.sum(d_q, axis=0, out=db)
        torso_backward(self.torso, self.activation, hidden, d_q @ W)
        for param, grad in zip(self.params, self.grads):
            param.grad = grad  # this call's gradient, whoever computed one before
        return metrics
