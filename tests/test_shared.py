"""Shared optimizers, gradient hand-off and the global step counter."""

import pytest
import torch
from torch import nn

from asyncrl.networks import build_actor_critic
from asyncrl.shared import (
    GlobalCounters,
    SharedAdam,
    SharedRMSprop,
    hand_off_gradients,
    make_shared_optimizer,
    sync_local,
)

CTX = torch.multiprocessing.get_context("fork")


def _model(seed=0):
    torch.manual_seed(seed)
    return build_actor_critic(4, 3, (16, 16))


def _random_grads(model, step):
    g = torch.Generator().manual_seed(1000 + step)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


@pytest.mark.parametrize(
    "shared_cls, torch_cls, kwargs",
    [
        (SharedRMSprop, torch.optim.RMSprop, dict(lr=7e-4, alpha=0.99, eps=1e-5)),
        (SharedRMSprop, torch.optim.RMSprop, dict(lr=1e-2, alpha=0.9, eps=0.1, foreach=False)),
        (SharedAdam, torch.optim.Adam, dict(lr=1e-3, eps=1e-8)),
        (SharedAdam, torch.optim.Adam, dict(lr=1e-2, eps=1e-5, foreach=False)),
    ],
)
def test_one_worker_matches_torch_optimizer_step_for_step(shared_cls, torch_cls, kwargs):
    ours, theirs = _model().share_memory(), _model()
    opt_ours = shared_cls(ours.parameters(), **kwargs)
    opt_theirs = torch_cls(theirs.parameters(), **{k: v for k, v in kwargs.items() if k != "foreach"})
    for step in range(25):
        _random_grads(ours, step)
        _random_grads(theirs, step)
        opt_ours.step()
        opt_theirs.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    state = opt_ours.state[next(iter(ours.parameters()))]
    assert state["step"].item() == 25
    assert all(t.is_shared() for t in state.values())


@pytest.mark.parametrize("on_cpu_numpy", [True, False])
def test_rmsprop_with_eps_inside_the_root_follows_the_papers_formula(on_cpu_numpy):
    """Mnih et al. 2016, Section 4: g <- alpha g + (1 - alpha) grad^2,
    theta <- theta - lr grad / sqrt(g + eps), element by element in float64."""
    ours = _model().share_memory()
    optimizer = SharedRMSprop(ours.parameters(), lr=7e-4, alpha=0.99, eps=0.1, eps_in_sqrt=True)
    if not on_cpu_numpy:
        optimizer._numpy_roots = [None]  # the torch path (a non-CPU device's)
    params = [p.detach().double().clone() for p in _model().parameters()]
    squares = [torch.zeros_like(p) for p in params]
    for step in range(20):
        _random_grads(ours, step)
        optimizer.step()
        for theta, g, p in zip(params, squares, ours.parameters()):
            grad = p.grad.double()
            for i in range(theta.numel()):  # one element at a time, as the formula reads
                g.view(-1)[i] = 0.99 * g.view(-1)[i] + 0.01 * grad.view(-1)[i] ** 2
                theta.view(-1)[i] -= 7e-4 * grad.view(-1)[i] / (g.view(-1)[i] + 0.1) ** 0.5
    for theta, p in zip(params, ours.parameters()):
        torch.testing.assert_close(p.double(), theta, rtol=1e-5, atol=1e-6)


def test_eps_inside_the_root_bounds_the_step_of_a_small_gradient():
    """The collapse it prevents: with torch's sqrt(g) + 1e-5 the first step of any weight
    is ~lr / sqrt(1 - alpha) = 10 lr whatever its gradient; sqrt(g + 0.1) keeps a gradient
    of 1e-3 to a step of ~lr * 3e-3."""
    lr, grad = 7e-4, 1e-3
    for inside, eps, expected in ((False, 1e-5, lr * grad / (0.1 * grad + 1e-5)),  # 9.1 lr
                                  (True, 0.1, lr * grad / (0.01 * grad**2 + 0.1) ** 0.5)):  # 0.0032 lr
        w = torch.zeros(3).share_memory_()
        optimizer = SharedRMSprop([w], lr=lr, alpha=0.99, eps=eps, eps_in_sqrt=inside)
        w.grad = torch.full((3,), grad)
        optimizer.step()
        torch.testing.assert_close(w, torch.full((3,), -expected), rtol=1e-3, atol=0.0)


def test_square_average_starting_at_one_is_tensorflows_rmsprop():
    """TensorFlow's RMSPropOptimizer (OpenAI Baselines' A2C) starts g at 1 with eps inside
    the root: g_1 = alpha + (1 - alpha) grad^2, step = lr grad / sqrt(g_1 + eps); written out
    for three steps against the same recursion in float64."""
    lr, alpha, eps = 7e-4, 0.99, 1e-5
    grads = [torch.tensor([1e-3, -2.0, 0.0]), torch.tensor([5e-2, 1.0, 0.0]), torch.tensor([-1e-3, 0.5, 3.0])]
    w = torch.zeros(3).share_memory_()
    optimizer = SharedRMSprop([w], lr=lr, alpha=alpha, eps=eps, eps_in_sqrt=True, initial_square_avg=1.0)
    theta, g = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for step, grad in enumerate(grads):
        w.grad = grad.clone()
        optimizer.step()
        g = alpha * g + (1 - alpha) * grad.double() ** 2
        theta -= lr * grad.double() / (g + eps).sqrt()
        torch.testing.assert_close(w.double(), theta, rtol=1e-5, atol=1e-12)
        if step == 0:  # a small gradient's first step is ~lr * grad (torch's start: ~10 lr)
            assert float(w[0]) == pytest.approx(-lr * 1e-3 / 0.99**0.5, rel=1e-4)
    torch.testing.assert_close(optimizer.state[w]["square_avg"].double(), g, rtol=1e-5, atol=0.0)


def test_square_average_must_not_start_negative():
    with pytest.raises(ValueError, match="initial_square_avg"):
        SharedRMSprop([torch.zeros(2).share_memory_()], initial_square_avg=-1.0)


def _step_in_child(model, optimizer, step):
    _random_grads(model, step)
    optimizer.step()


def test_statistics_are_shared_across_processes():
    model = _model().share_memory()
    optimizer = make_shared_optimizer("rmsprop", model.parameters(), lr=1e-3, eps=1e-5)
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(2):  # two processes, one update each, one after the other
        proc = CTX.Process(target=_step_in_child, args=(model, optimizer, step))
        proc.start()
        proc.join(timeout=30)
        assert proc.exitcode == 0
    # The parent sees both updates, and a single-process RMSprop replays them exactly.
    reference = _model()
    ref_opt = torch.optim.RMSprop(reference.parameters(), lr=1e-3, alpha=0.99, eps=1e-5)
    for step in range(2):
        _random_grads(reference, step)
        ref_opt.step()
    for p, q, b in zip(model.parameters(), reference.parameters(), before):
        assert not torch.equal(p, b)
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert optimizer.state[next(iter(model.parameters()))]["step"].item() == 2


def test_hand_off_delivers_exactly_this_updates_gradient():
    """Three updates with SGD(lr=1): each must move the shared weights by exactly that
    update's gradient. The ``ensure_shared_grads`` pattern under zero_grad(set_to_none=True)
    would keep applying the first gradient; an accumulating one would apply g1, g1+g2, ..."""
    shared = _model().share_memory()
    local = _model(seed=1)
    optimizer = torch.optim.SGD(shared.parameters(), lr=1.0)
    x = torch.randn(5, 4)
    local_params, shared_params = list(local.parameters()), list(shared.parameters())
    for update in range(3):
        sync_local(local_params, shared_params)
        for a, b in zip(local.parameters(), shared.parameters()):
            assert torch.equal(a, b)
        local.zero_grad(set_to_none=True)
        logits, values = local(x * (update + 1))
        (logits.pow(2).sum() + values.sum()).backward()
        grads = [p.grad.clone() for p in local.parameters()]
        before = [p.detach().clone() for p in shared.parameters()]
        hand_off_gradients(local_params, shared_params)
        optimizer.step()
        for p, b, g in zip(shared.parameters(), before, grads):
            torch.testing.assert_close(b - p.detach(), g)


def test_hand_off_without_backward_raises():
    with pytest.raises(RuntimeError, match="no gradient"):
        hand_off_gradients(list(_model().parameters()), list(_model().parameters()))


def _count(counters, worker_id, n, start):
    start.wait(10)
    for _ in range(n):
        counters.add(worker_id, 3)


def test_global_step_counter_loses_no_increment_across_processes():
    """Three processes add concurrently (released together) while this one reads ``T``:
    every read is a value ``T`` really passed through (never lower than an earlier read,
    never above the final count), and no increment is lost. Each worker's slot is a
    64-byte cache line of its own, which is what lets increments go without a lock and
    without two workers' increments invalidating each other's line."""
    counters = GlobalCounters(workers=3, initial_step=10)
    assert counters.steps_tensor.stride(0) * counters.steps_tensor.element_size() == 64
    assert counters.steps_tensor.data_ptr() % 64 == 0  # shared memory is page-aligned: row i is line i
    start = CTX.Event()
    procs = [CTX.Process(target=_count, args=(counters, w, 20_000, start)) for w in range(3)]
    for p in procs:
        p.start()
    start.set()
    reads = []
    while any(p.is_alive() for p in procs):
        reads.append(counters.global_step)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    final = 10 + 3 * 20_000 * 3
    assert counters.global_step == final
    assert counters.policy_version == 3 * 20_000
    assert len(reads) > 10 and reads == sorted(reads) and reads[-1] <= final
    assert any(10 < r < final for r in reads)  # the reads did overlap the increments
    assert counters.steps.tolist() == [3 * 20_000] * 3  # each worker wrote its own slot only
    assert not counters.stop_requested
    counters.request_stop()
    assert counters.stop_requested


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_shared_optimizer("sgd", nn.Linear(2, 2).parameters(), lr=0.1, eps=1e-5)


def test_shared_optimizers_do_not_import_torch_dynamo():
    """``torch.optim``'s optimizers import ``torch._dynamo`` on first use (about as long as
    importing torch itself); the shared ones, built and stepped in the trainer before any
    worker starts, must not."""
    import subprocess
    import sys

    code = """
import sys, torch
from asyncrl.networks import build_actor_critic
from asyncrl.shared import SharedAdam, SharedRMSprop, apply_gradients
model = build_actor_critic(4, 2, (8,)).share_memory()
for cls in (SharedRMSprop, SharedAdam):
    optimizer = cls(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    apply_gradients(list(model.parameters()), list(model.parameters()), optimizer, 1.0, 5e-4)
    optimizer.state_dict()
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_shared_optimizer_state_dict_loads_into_torch_optimizers():
    model = _model().share_memory()
    for shared_cls, torch_cls in ((SharedRMSprop, torch.optim.RMSprop), (SharedAdam, torch.optim.Adam)):
        ours = shared_cls(model.parameters(), lr=1e-3)
        _random_grads(model, 0)
        ours.step()
        theirs = torch_cls(_model().parameters(), lr=1e-3)
        theirs.load_state_dict(ours.state_dict())
        for a, b in zip(ours.state.values(), theirs.state.values()):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("scale", [0.01, 100.0], ids=["within-the-norm", "clipped"])
def test_clip_gradients_is_torchs_clip_grad_norm_bit_for_bit(scale):
    from asyncrl.shared import clip_gradients

    torch.manual_seed(0)
    ours = [torch.randn(50, 30, requires_grad=True), torch.randn(7, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0, foreach=True)
    assert clip_gradients(ours, 1.0) == float(expected)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
    assert (float(expected) > 1.0) == (scale == 100.0)
