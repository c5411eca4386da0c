"""Shared-memory machinery: optimizers with shared statistics, the global step
counter ``T``, and the gradient hand-off from an actor-learner's local model to the
shared model (Mnih et al. 2016, Section 4 and Supplementary Section 7).

All updates are lock-free (Hogwild, Recht et al. 2011): actor-learners read and write
the shared parameters and optimizer statistics concurrently without locks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn


class _SharedOptimizer:
    """What the shared optimizers have in common: one parameter group, per-parameter
    statistics preallocated in shared memory, and ``torch.optim``'s ``state`` /
    ``param_groups`` / ``state_dict()`` layout (checkpoints, and ``load_state_dict`` of a
    ``torch.optim`` optimizer, read them as torch's own).

    Not a ``torch.optim.Optimizer``: its constructor, ``state_dict`` and ``step`` import
    ``torch._dynamo`` on first use, about as long again as importing torch, in the
    trainer before any worker starts. The steps below are torch's multi-tensor
    (``foreach``) and fused kernels called directly, the same arithmetic (tested step for
    step against ``torch.optim``).

    Every process that receives the optimizer (pickled to a worker, or forked) updates the
    same statistics and step count, lock-free.
    """

    BUFFERS: tuple[str, ...] = ()
    TORCH_DEFAULTS: dict = {}

    def step(self) -> None:
        """Apply the gradients in the parameters' ``.grad`` (each optimizer's own rule)."""
        raise NotImplementedError

    def __init__(self, params, **defaults) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.defaults = {**self.TORCH_DEFAULTS, **defaults}
        self.param_groups = [{"params": params, **self.defaults}]
        self.state = {
            p: {
                "step": torch.zeros((), dtype=torch.float32).share_memory_(),
                **{
                    name: torch.zeros_like(p, memory_format=torch.preserve_format).share_memory_()
                    for name in self.BUFFERS
                },
            }
            for p in params
        }
        self._bind()

    def _bind(self) -> None:
        params = self.param_groups[0]["params"]
        self._params = params
        self._steps = [self.state[p]["step"] for p in params]
        self._buffers = {name: [self.state[p][name] for p in params] for name in self.BUFFERS}
        self._one = torch.tensor(1.0)

    def __getstate__(self):
        return {"defaults": self.defaults, "param_groups": self.param_groups, "state": self.state}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    def state_dict(self) -> dict:
        """``torch.optim.Optimizer.state_dict()``'s layout: parameters by index; the
        statistics are the live shared tensors (copy them to keep a snapshot)."""
        params = self._params
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {i: dict(self.state[p]) for i, p in enumerate(params)},
            "param_groups": [{**group, "params": list(range(len(params)))}],
        }

    def zero_grad(self) -> None:
        for p in self._params:
            p.grad = None

    def _grads(self) -> list[torch.Tensor]:
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            raise RuntimeError(f"{type(self).__name__}.step: a parameter has no gradient")
        return grads


class SharedRMSprop(_SharedOptimizer):
    """RMSProp whose statistics ``g`` live in shared memory (Mnih et al. 2016, Section 4).

    ``g <- alpha g + (1 - alpha) grad^2``, ``theta <- theta - lr grad / (sqrt(g) + eps)``:
    torch's ``RMSprop`` exactly (its multi-tensor path), so with one actor-learner it
    matches ``torch.optim.RMSprop`` step for step. With ``eps_in_sqrt``,
    ``theta <- theta - lr grad / sqrt(g + eps)``, as the paper writes it: with a large eps
    (0.1, the Atari presets) a weight's step is proportional to its gradient until the
    gradient is large, where torch's form moves every weight by about ``lr`` per update
    however small its gradient (which kills the CNN torso's units on Atari:
    ``benchmarks/results/torso_health.md``).

    Args:
        params: parameters of the shared model (already in shared memory).
        lr: learning rate eta.
        alpha: decay of the squared-gradient average (paper: 0.99).
        eps: added to ``sqrt(g)`` (or, with ``eps_in_sqrt``, to ``g``) for stability.
        foreach: accepted for ``torch.optim`` compatibility; the step is always multi-tensor.
        eps_in_sqrt: divide by ``sqrt(g + eps)`` instead of ``sqrt(g) + eps``.
        initial_square_avg: ``g``'s value before the first step: 0 as torch's, 1 as
            TensorFlow's ``RMSPropOptimizer`` (Stable-Baselines3's ``RMSpropTFLike``, the
            optimizer of OpenAI Baselines' A2C), where the first updates are damped
            instead of ``~lr / sqrt(1 - alpha)`` per weight.

    Raises:
        ValueError: if ``params`` is empty or ``initial_square_avg`` is negative.
    """

    BUFFERS = ("square_avg",)
    TORCH_DEFAULTS = {
        "weight_decay": 0,
        "momentum": 0,
        "centered": False,
        "capturable": False,
        "foreach": True,
        "maximize": False,
        "differentiable": False,
    }

    def __init__(
        self,
        params,
        lr: float = 7e-4,
        alpha: float = 0.99,
        eps: float = 1e-5,
        foreach: bool | None = None,
        eps_in_sqrt: bool = False,
        initial_square_avg: float = 0.0,
    ) -> None:
        if initial_square_avg < 0:
            raise ValueError(f"initial_square_avg must be >= 0, got {initial_square_avg}")
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt)
        if initial_square_avg:
            torch._foreach_add_(self._buffers["square_avg"], initial_square_avg)

    def _bind(self) -> None:
        super()._bind()
        self._denominators: list[torch.Tensor] | None = None  # per process, allocated at the first step
        self._numpy_roots: list[tuple[np.ndarray, np.ndarray]] = []

    @torch.no_grad()
    def step(self) -> None:
        """One RMSProp step with the parameters' current ``.grad``.

        ``sqrt(g)`` goes into preallocated, process-local buffers, through NumPy on the CPU:
        torch's vectorised ``sqrt`` takes a slow path for zeros (measured: 3.6 ms for 678k
        zeros against 0.3 ms in NumPy, on AVX-512 and AVX2 alike), and every statistic of
        a parameter whose gradient has been zero so far (a dead ReLU unit's weights, say)
        is zero. Both roots are IEEE-correctly rounded: the results are the same.

        Raises:
            RuntimeError: if a parameter has no gradient.
        """
        group = self.param_groups[0]
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        grads, square_avgs = self._grads(), self._buffers["square_avg"]
        torch._foreach_add_(self._steps, self._one, alpha=1.0)
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        if self._denominators is None:
            self._denominators = [torch.empty_like(p) for p in square_avgs]  # same strides
            self._numpy_roots = [
                (g.numpy(), root.numpy()) for g, root in zip(square_avgs, self._denominators) if g.device.type == "cpu"
            ]
        avg, in_sqrt = self._denominators, group.get("eps_in_sqrt", False)
        if len(self._numpy_roots) == len(avg):
            for square_avg, root in self._numpy_roots:
                if in_sqrt:
                    np.add(square_avg, eps, out=root)
                    np.sqrt(root, out=root)  # sqrt(g + eps)
                else:
                    np.sqrt(square_avg, out=root)
        else:
            torch._foreach_copy_(avg, square_avgs)
            if in_sqrt:
                torch._foreach_add_(avg, eps)
            torch._foreach_sqrt_(avg)
        if not in_sqrt:
            torch._foreach_add_(avg, eps)  # sqrt(g) + eps
        torch._foreach_addcdiv_(self._params, grads, avg, value=-lr)


class SharedAdam(_SharedOptimizer):
    """Adam whose moment estimates and step count live in shared memory.

    Identical to ``torch.optim.Adam`` with one actor-learner (Kingma & Ba 2015): torch's
    fused kernel where it applies (float32 on the CPU or CUDA), else its multi-tensor
    path. With several actor-learners the moments and the bias-correction step count are
    shared, updated lock-free by all of them.

    Args:
        params: parameters of the shared model (already in shared memory).
        lr: learning rate.
        betas: decay of the first and second moment estimates.
        eps: added to the root of the second moment.
        foreach: False or True: the multi-tensor path rather than the fused kernel.

    Raises:
        ValueError: if ``params`` is empty.
    """

    BUFFERS = ("exp_avg", "exp_avg_sq")
    TORCH_DEFAULTS = {
        "weight_decay": 0,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "fused": None,
        "decoupled_weight_decay": False,
    }

    def __init__(
        self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, foreach: bool | None = None
    ) -> None:
        params = list(params)
        devices = {p.device.type for p in params}
        fused = (
            foreach is None
            and all(p.dtype == torch.float32 for p in params)
            and len(devices) == 1
            and devices <= {"cpu", "cuda"}
        )
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None, foreach=not fused)

    def _bind(self) -> None:
        super()._bind()
        self._fused = bool(self.param_groups[0]["fused"])  # (rebound in a spawned worker too)

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step with the parameters' current ``.grad``.

        Raises:
            RuntimeError: if a parameter has no gradient.
        """
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads, exp_avgs, exp_avg_sqs = self._grads(), self._buffers["exp_avg"], self._buffers["exp_avg_sq"]
        if self._fused:
            torch._foreach_add_(self._steps, 1)
            torch._fused_adam_(
                self._params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                self._steps,
                amsgrad=False,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=eps,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        torch._foreach_add_(self._steps, self._one, alpha=1.0)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        steps = [float(s) for s in self._steps]
        step_size = [-lr / (1 - beta1**t) for t in steps]
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in steps]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(self._params, exp_avgs, denom, step_size)


@torch.no_grad()
def load_optimizer_state_in_place(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """Copy a saved ``optimizer.state_dict()`` into ``optimizer``'s existing state tensors.

    ``Optimizer.load_state_dict`` would replace the shared-memory statistics with new,
    process-local tensors; this keeps them shared.

    Raises:
        ValueError: if the saved state does not match the optimizer's parameters.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved = state_dict.get("state", {})
    if len(saved) != len(params):
        raise ValueError(f"saved optimizer state has {len(saved)} parameters, expected {len(params)}")
    for index, param in enumerate(params):
        live = optimizer.state[param]
        for name, value in saved[index].items():
            if name not in live or live[name].shape != torch.as_tensor(value).shape:
                raise ValueError(f"saved optimizer state {name!r} of parameter {index} does not match")
            live[name].copy_(torch.as_tensor(value))


def linear_lr(base_lr: float, global_step: float, total_steps: float) -> float:
    """``base_lr`` annealed linearly to 0 at ``T = total_steps`` (Mnih et al. 2016,
    Supplementary Section 8: learning rates annealed to 0 over training)."""
    return base_lr * max(0.0, 1.0 - global_step / total_steps)


def make_shared_optimizer(
    name: str,
    params,
    lr: float,
    eps: float,
    rms_alpha: float = 0.99,
    rms_eps_inside: bool = False,
    rms_init: float = 0.0,
):
    """``SharedRMSprop`` (``rms_eps_inside``: ``sqrt(g + eps)``; ``rms_init``: the squared
    gradients' initial average) or ``SharedAdam`` by name.

    Raises:
        ValueError: if ``name`` is neither ``"rmsprop"`` nor ``"adam"``.
    """
    if name == "rmsprop":
        return SharedRMSprop(
            params, lr=lr, alpha=rms_alpha, eps=eps, eps_in_sqrt=rms_eps_inside, initial_square_avg=rms_init
        )
    if name == "adam":
        return SharedAdam(params, lr=lr, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; expected 'rmsprop' or 'adam'")


def optimizer_for(a: Any, params) -> SharedRMSprop | SharedAdam:
    """The shared optimizer a config's fields describe (``--optimizer``, ``--lr``,
    ``--optim-eps``, ``--rms-alpha``, ``--rms-eps-inside``, ``--rms-init``;
    ``asyncrl.config.fields.LearnerFields``).

    Raises:
        ValueError: if ``a.optimizer`` is neither ``"rmsprop"`` nor ``"adam"``.
    """
    return make_shared_optimizer(
        a.optimizer,
        params,
        lr=a.lr,
        eps=a.optim_eps,
        rms_alpha=a.rms_alpha,
        rms_eps_inside=a.rms_eps_inside,
        rms_init=a.rms_init,
    )


def share_model(model: nn.Module) -> nn.Module:
    """Move ``model``'s parameters and buffers to shared memory, in place; returns it."""
    return model.share_memory()


@torch.no_grad()
def sync_local(local_params: Sequence[torch.Tensor], shared_params: Sequence[torch.Tensor]) -> None:
    """``theta' <- theta``: copy the shared parameters into an actor-learner's local ones.

    Args:
        local_params: ``list(local_model.parameters())`` (lists, built once: calling
            ``Module.parameters()`` costs microseconds per call on the hot path).
        shared_params: ``list(shared_model.parameters())``, in the same order.
    """
    torch._foreach_copy_(list(local_params), list(shared_params))


def hand_off_gradients(local_params: Sequence[torch.Tensor], shared_params: Sequence[torch.Tensor]) -> None:
    """Give the shared model exactly this update's gradient.

    Each shared parameter's ``.grad`` (a per-process attribute, not shared memory) is
    pointed at the local parameter's fresh ``.grad`` tensor. Nothing is accumulated, so
    the shared optimizer's next ``step()`` applies this update's gradient alone. (The
    common ``ensure_shared_grads`` pattern assigns the shared ``.grad`` only once; with
    ``zero_grad(set_to_none=True)``, torch's default since 2.0, it then keeps pointing
    at a stale tensor.)

    Args:
        local_params: the local model's parameters, after ``backward``.
        shared_params: the shared model's parameters, in the same order.

    Raises:
        RuntimeError: if a local parameter has no gradient (``backward`` not run).
    """
    for local_param, shared_param in zip(local_params, shared_params):
        if local_param.grad is None:
            raise RuntimeError("hand_off_gradients: a local parameter has no gradient; run backward first")
        shared_param.grad = local_param.grad


@torch.no_grad()
def clip_gradients(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` on CPU gradients, without its multiply by 1.0
    when the norm is within ``max_norm`` (one pass over every gradient saved on most
    updates: the results are the same).

    Returns:
        The gradients' global L2 norm before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # float32, as torch computes it
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)  # torch multiplies by the same float32 coefficient
    return float(norm)


def apply_gradients(
    params: Sequence[torch.Tensor],
    shared_params: Sequence[torch.Tensor],
    optimizer: _SharedOptimizer | torch.optim.Optimizer,
    max_grad_norm: float,
    lr: float | None = None,
) -> None:
    """One asynchronous update, lock-free: ``params[i].grad`` already holds ``d theta`` (from
    ``backward`` or computed otherwise, e.g. ``updaters.NumpyQGradient``); clip it, hand it
    to ``shared_params`` and step the shared optimizer (Mnih et al. 2016, "perform
    asynchronous update of theta using d theta").

    Args:
        params: the parameters the gradient was taken at: a local copy theta' (its
            gradient is handed off to ``shared_params``), or ``shared_params`` themselves.
        shared_params: the shared model's parameters, in the same order.
        optimizer: the shared optimizer over ``shared_params``.
        max_grad_norm: clip the gradient to this global L2 norm.
        lr: if given, the learning rate of this step (``optimizer.param_groups`` are
            per process, so only this worker's copy changes).
    """
    clip_gradients(params, max_grad_norm)
    if params is not shared_params:
        hand_off_gradients(params, shared_params)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()


_SLOT = 8  # int64s per worker slot: one 64-byte cache line

PARENT_CHECK_S = 0.25
"""Seconds between two looks at the trainer's process from a child it did not fork itself
(``--start-method forkserver``)."""


class GlobalCounters:
    """The global step counter ``T`` and a stop flag, in shared memory, lock-free.

    Each actor-learner adds to its own slot, so no increment is ever lost without a
    lock; ``T`` is the sum of the slots. Reads and writes go through NumPy views of
    shared tensors (tens of nanoseconds, versus microseconds for tensor indexing).

    A child process calls ``watch_parent`` once it starts; from then on
    ``stop_requested`` is also true there once its parent has died (the trainer,
    SIGKILLed say), so that every loop that checks the stop flag also ends an orphan.

    Args:
        workers: number of actor-learner slots.
        initial_step: env steps already taken (when a run is resumed).
        initial_updates: optimizer updates already applied (when a run is resumed).

    Raises:
        ValueError: if ``workers`` is below 1.
    """

    # Per process, set by watch_parent in a child: the trainer's pid, and where the trainer
    # is not the parent (forkserver), its psutil handle and when to look at it next.
    _parent_pid: int | None = None
    _trainer: psutil.Process | None = None
    _trainer_dead = False
    _next_parent_check = 0.0

    def __init__(self, workers: int, initial_step: int = 0, initial_updates: int = 0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        # One 64-byte row per worker (column 0 used): each worker writes its own cache line,
        # so the per-step increments of two workers do not invalidate each other's line.
        self.steps_tensor = torch.zeros(workers, _SLOT, dtype=torch.int64).share_memory_()
        self.updates_tensor = torch.zeros(workers, _SLOT, dtype=torch.int64).share_memory_()
        self.flags_tensor = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.initial_step = int(initial_step)
        self.initial_updates = int(initial_updates)
        self._bind()

    def _bind(self) -> None:
        self.steps = self.steps_tensor.numpy()[:, 0]  # [workers] int64, env steps per worker
        self.updates = self.updates_tensor.numpy()[:, 0]  # [workers] int64, updates per worker
        self._flags = self.flags_tensor.numpy()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if isinstance(v, (torch.Tensor, int))}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    def add(self, worker_id: int, env_steps: int, updates: int = 1) -> None:
        """Record ``env_steps`` env steps and ``updates`` optimizer updates by ``worker_id``."""
        self.steps[worker_id] += env_steps
        self.updates[worker_id] += updates

    @property
    def global_step(self) -> int:
        """``T``: env steps summed over all workers, including ``initial_step``."""
        return self.initial_step + int(self.steps.sum())

    @property
    def policy_version(self) -> int:
        """Optimizer updates applied to the shared model, summed over all workers."""
        return self.initial_updates + int(self.updates.sum())

    def request_stop(self) -> None:
        """Ask every process of the run to stop."""
        self._flags[0] = 1

    def watch_parent(self, trainer_pid: int) -> None:
        """In a child process: from now on, treat the death of the trainer ``trainer_pid``
        as a stop request.

        A child of the trainer (``fork``, ``spawn``) notices it as a change of
        ``os.getppid()``: the kernel re-parents an orphan at once, even before the dead
        trainer is reaped, so a reused pid cannot pass for it. A child of the
        ``forkserver`` (which outlives the trainer while its children live) asks psutil
        instead, at most every ``PARENT_CHECK_S`` seconds; psutil compares creation times,
        so a reused pid cannot pass for the trainer there either.
        """
        self._parent_pid = trainer_pid
        self._trainer = None
        if os.getppid() != trainer_pid:
            try:
                self._trainer = psutil.Process(trainer_pid)
            except psutil.NoSuchProcess:
                self._trainer_dead = True

    @property
    def orphaned(self) -> bool:
        """Whether this process watches the trainer (``watch_parent``) and it died."""
        if self._parent_pid is None or os.getppid() == self._parent_pid:
            return False
        if self._trainer is None:  # a child of the trainer, now re-parented: or died at once
            return True
        if not self._trainer_dead:
            now = time.monotonic()
            if now >= self._next_parent_check:
                self._next_parent_check = now + PARENT_CHECK_S
                try:
                    self._trainer_dead = (
                        self._trainer.status() == psutil.STATUS_ZOMBIE or not self._trainer.is_running()
                    )
                except psutil.NoSuchProcess:
                    self._trainer_dead = True
        return self._trainer_dead

    @property
    def stop_requested(self) -> bool:
        """Whether the trainer asked the run to stop, or (in a child that called
        ``watch_parent``) the trainer is gone. About 0.1 us: checked in every wait loop."""
        return bool(self._flags[0]) or self.orphaned


class TargetNetwork:
    """The shared target network theta^- and its refresh rule (Mnih et al. 2016, Algorithm 1).

    ``theta^- <- theta`` happens once each time the global step counter ``T`` crosses a
    multiple of ``I_target``, and at no other time: the actor-learner that first sees
    ``T // I_target`` exceed the number of refreshes made so far does the copy, under a
    lock (refreshes are rare; every other check is a lock-free read of a shared int).

    Args:
        model: the target network, a copy of the online model, already in shared memory.
        online: the shared online model theta.
        interval: ``I_target``, in global env steps.
        lock: a lock from the run's multiprocessing context.
    """

    def __init__(self, model: nn.Module, online: nn.Module, interval: int, lock) -> None:
        if interval < 1:
            raise ValueError(f"target update interval must be >= 1, got {interval}")
        self.model = model
        self.online = online
        self.interval = int(interval)
        self.lock = lock
        self.refreshes_tensor = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._bind()

    def _bind(self) -> None:
        self._refreshes = self.refreshes_tensor.numpy()
        self._target_params = list(self.model.parameters())
        self._online_params = list(self.online.parameters())

    def __getstate__(self):
        return {k: self.__dict__[k] for k in ("model", "online", "interval", "lock", "refreshes_tensor")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    @property
    def refreshes(self) -> int:
        """How many times theta^- has been refreshed, i.e. ``T // I_target`` at the last one."""
        return int(self._refreshes[0])

    def maybe_refresh(self, global_step: int) -> bool:
        """Copy theta into theta^- if ``T`` has crossed a multiple of ``I_target`` since the
        last refresh. Returns whether this call copied."""
        due = global_step // self.interval
        if due <= self._refreshes[0]:
            return False
        with self.lock:
            if due <= self._refreshes[0]:
                return False
            with torch.no_grad():
                torch._foreach_copy_(list(self._target_params), list(self._online_params))
            self._refreshes[0] = due
        return True
