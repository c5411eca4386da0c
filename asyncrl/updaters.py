"""How the batched learner turns a loss into an update of its model.

``TorchUpdater`` uses autograd and a torch optimizer: any model, any device. On a CPU,
the small MLP actor-critics of control tasks spend most of an update in torch's
per-operation overhead (about 60 operations of a few microseconds each, plus a slow
``tanh`` kernel), so ``NumpyUpdater`` (``asyncrl.numpy_path``) computes the same forward pass, the hand-derived
gradients of the same losses and the same optimizer step in NumPy, on the very
parameter and optimizer-state tensors of the torch model and optimizer (it rebinds them
to views of flat buffers): checkpoints, publishing and the torch path all see one state.
``make_updater`` picks the NumPy path where it applies. Tests check both against each
other and against ``losses.py`` under autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from asyncrl.losses import actor_critic_loss, ppo_loss, q_loss
from asyncrl.networks import ActorCritic, QNetwork
from asyncrl.numpy_path import NumpyQGradient, NumpyUpdater, has_numpy_form, numpy_path_applies


class TorchUpdater:
    """Forward passes and clipped optimizer steps with autograd, on the model's device.

    Args:
        model: the learner's actor-critic.
        optimizer: its optimizer.
        max_grad_norm: clip each step's gradient to this global L2 norm.
    """

    def __init__(self, model: ActorCritic, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> None:
        self.model, self.optimizer, self.max_grad_norm = model, optimizer, max_grad_norm
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.recurrent = model.recurrent

    @torch.no_grad()
    def sequence(self, obs: torch.Tensor, state, resets: torch.Tensor):
        """``ActorCritic.sequence`` without gradients: ``obs: [T, B, *obs_shape]`` ->
        ``(params [T, B, P], values [T, B], states)``."""
        return self.model.sequence(obs, state, resets)

    @torch.no_grad()
    def peek_values(self, obs: torch.Tensor, state) -> torch.Tensor:
        """``V`` of ``obs: [K, *obs_shape]`` after a recurrent state ``(h, c)`` (each ``[K, H]``)."""
        return self.model.step(obs, state)[1]

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs: [N, *obs_shape]`` -> ``(params: [N, P], values: [N])``, without gradients
        (``params``: the policy distribution's, ``self.model.dist``)."""
        return self.model(obs)

    def step(
        self,
        obs: torch.Tensor,
        loss: str,
        lr: float | None,
        state=None,
        resets: torch.Tensor | None = None,
        **inputs: Any,
    ) -> dict[str, float]:
        """One optimizer step on ``loss`` (``"actor_critic"``: ``losses.actor_critic_loss``
        with mean reduction; ``"clipped_surrogate"``: ``losses.ppo_loss``) over ``obs: [N, *obs_shape]``,
        or for a recurrent model over whole sequences ``obs: [T, b, *obs_shape]`` unrolled
        from ``state`` with ``resets`` (``[T, b]``; ``N = T * b``, time-major);
        ``inputs`` are the loss's other arguments, ``[N, ...]``. Returns the loss's metrics."""
        if self.recurrent:
            params, values, _ = self.model.sequence(obs, state, resets, states=False)  # back-propagation through time
            params, values = params.flatten(0, 1), values.flatten(0, 1)
        else:
            params, values = self.model(obs)
        if loss == "clipped_surrogate":
            value, metrics = ppo_loss(params, values, dist=self.model.dist, **inputs)
        else:
            value, metrics = actor_critic_loss(params, values, reduction="mean", dist=self.model.dist, **inputs)
        for p in self.params:
            p.grad = None
        value.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True)
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()
        return metrics


def make_updater(
    model: ActorCritic, optimizer: torch.optim.Optimizer, max_grad_norm: float, device: torch.device
) -> TorchUpdater | NumpyUpdater:
    """``NumpyUpdater`` where ``numpy_path_applies``, else ``TorchUpdater``."""
    if numpy_path_applies(model, optimizer, device):
        return NumpyUpdater(model, optimizer, max_grad_norm)
    return TorchUpdater(model, optimizer, max_grad_norm)


class TorchQGradient:
    """``NumpyQGradient`` for any ``QNetwork`` (the CNNs): one batched forward and
    backward pass with autograd over the window's observations. ``torch.autograd.grad``
    returns fresh tensors on every call, so handing them to the parameters as their
    ``.grad`` gives each call (each learner, in ``--serial`` mode) its own gradient, as
    ``NumpyQGradient``'s buffers do, without a copy.

    ``__call__(obs: [N, *obs_shape], actions: [N] int, targets: [N] float32) -> metrics``.
    """

    def __init__(self, model: QNetwork) -> None:
        self.model = model
        self.params = list(model.parameters())

    def __call__(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        q_values = self.model(torch.from_numpy(obs))  # [N, A]
        loss, metrics = q_loss(
            q_values.unsqueeze(1),
            torch.from_numpy(actions).unsqueeze(1),  # [N, 1, A], [N, 1]
            torch.from_numpy(np.asarray(targets, np.float32)).unsqueeze(1),
        )  # [N, 1]
        for param, grad in zip(self.params, torch.autograd.grad(loss, self.params)):
            param.grad = grad  # this call's gradient, whoever computed one before
        return metrics


def make_q_gradient(model: QNetwork) -> NumpyQGradient | TorchQGradient:
    """``NumpyQGradient`` where the network's torso has a NumPy form, else ``TorchQGradient``."""
    if has_numpy_form(model.torso):
        return NumpyQGradient(model)
    return TorchQGradient(model)
