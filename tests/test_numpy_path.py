"""The NumPy fast path (``asyncrl.numpy_path``) against torch and autograd: acting, the
learner's gradients, optimizer steps and metrics, the value-based methods' gradient."""

import copy

import numpy as np
import pytest
import torch

from asyncrl.distributions import ActionSpec
from asyncrl.losses import q_loss
from asyncrl.networks import ObsSpec, TorchForward, build_actor_critic, build_q_network, fast_forward
from asyncrl.numpy_path import NumpyMLP, NumpyQGradient, NumpyUpdater, has_numpy_form, numpy_path_applies
from asyncrl.shared import make_shared_optimizer
from asyncrl.updaters import TorchQGradient, TorchUpdater, make_q_gradient, make_updater

ACTIONS = {"discrete": (3, "parameter"),  # (action space, Gaussian scale)
           "gaussian": (ActionSpec.box([-1, -2], [1, 2]), "parameter"),
           "gaussian-softplus": (ActionSpec.box([-1, -2], [1, 2]), "softplus")}


def _inputs(loss, N=24, A=3, seed=0, action="discrete"):
    g = torch.Generator().manual_seed(seed)
    if action == "discrete":
        actions = torch.randint(0, A, (N,), generator=g)
        old_log_probs = torch.log(torch.rand(N, generator=g) * 0.8 + 0.1)
    else:  # 2-D Gaussians with sigma near 1: log-probs near -2.8
        actions = torch.randn(N, 2, generator=g) * 1.5
        old_log_probs = -2.8 + 0.5 * torch.randn(N, generator=g)
    common = {"actions": actions, "returns": torch.randn(N, generator=g) * 3,
              "advantages": torch.randn(N, generator=g), "value_coef": 0.5, "entropy_coef": 0.01}
    if loss == "clipped_surrogate":
        common.pop("returns")
        return {**common, "returns": torch.randn(N, generator=g) * 3, "old_log_probs": old_log_probs,
                "old_values": torch.randn(N, generator=g), "clip_range": 0.2}
    return common


def _pair(shared_torso, optimizer, max_grad_norm, seed=0, action="discrete"):
    torch.manual_seed(seed)
    space, std = ACTIONS[action]
    model = build_actor_critic(5, space, (16, 16), shared_torso=shared_torso, gaussian_std=std)
    state = make_shared_optimizer(optimizer, build_actor_critic(5, space, (16, 16), shared_torso,
                                                                gaussian_std=std).parameters(),
                                  lr=1e-2, eps=1e-5).state_dict()
    make = (lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-5)) if optimizer == "adam" else \
        (lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.99, eps=1e-5))
    models = [model, copy.deepcopy(model)]
    optimizers = [make(list(m.parameters())) for m in models]
    for opt in optimizers:
        opt.load_state_dict(copy.deepcopy(state))  # (load_state_dict keeps CPU tensors as they are)
    return (TorchUpdater(models[0], optimizers[0], max_grad_norm),
            NumpyUpdater(models[1], optimizers[1], max_grad_norm), models, optimizers)


@pytest.mark.parametrize("loss", ["actor_critic", "clipped_surrogate"])
@pytest.mark.parametrize("shared_torso", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("max_grad_norm", [0.05, 100.0])  # clipping active / inactive
@pytest.mark.parametrize("action", list(ACTIONS))
def test_numpy_updater_steps_like_torch(loss, shared_torso, optimizer, max_grad_norm, action):
    torch_up, numpy_up, models, optimizers = _pair(shared_torso, optimizer, max_grad_norm, action=action)
    obs = torch.randn(24, 5, generator=torch.Generator().manual_seed(1))
    extra = {"value_clip": 0.3} if loss == "clipped_surrogate" else {}
    for step in range(4):
        inputs = {**_inputs(loss, seed=step, action=action), **extra}
        lr = 1e-2 * (1 - step / 8)
        m_torch = torch_up.step(obs, loss, lr, **inputs)
        m_numpy = numpy_up.step(obs, loss, lr, **inputs)
        assert set(m_torch) == set(m_numpy)
        for name in m_torch:
            assert m_numpy[name] == pytest.approx(m_torch[name], rel=1e-4, abs=1e-6), name
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    params = [list(m.parameters()) for m in models]
    for pa, pb in zip(*params):
        for key, value in optimizers[0].state[pa].items():
            torch.testing.assert_close(optimizers[1].state[pb][key], value, rtol=1e-4, atol=1e-7)
    logits_t, values_t = torch_up.forward(obs)
    logits_n, values_n = numpy_up.forward(obs)
    torch.testing.assert_close(logits_n, logits_t, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values_n, values_t, rtol=1e-4, atol=1e-5)


def test_numpy_updater_keeps_the_torch_tensors_in_step():
    """Parameters and statistics are views: the torch model sees every NumPy step."""
    _, numpy_up, models, optimizers = _pair(False, "adam", 1.0)
    obs = torch.randn(8, 5)
    before = {k: v.clone() for k, v in models[1].state_dict().items()}
    numpy_up.step(obs, "actor_critic", None, **_inputs("actor_critic", N=8))
    after = models[1].state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    first = next(iter(models[1].parameters()))
    assert optimizers[1].state[first]["step"].item() == 1.0
    assert optimizers[1].state[first]["exp_avg"].abs().sum() > 0
    logits, values = models[1](obs)  # the torch module computes with the updated weights
    torch.testing.assert_close(logits, numpy_up.forward(obs)[0], rtol=1e-5, atol=1e-6)


def test_numpy_path_applies_only_where_it_is_exact():
    model = build_actor_critic(4, 2, (8,), False)
    adam = torch.optim.Adam(model.parameters())
    assert numpy_path_applies(model, adam, torch.device("cpu"))
    assert not numpy_path_applies(model, adam, torch.device("meta"))
    assert not numpy_path_applies(model, torch.optim.Adam(model.parameters(), weight_decay=0.1), torch.device("cpu"))
    assert not numpy_path_applies(model, torch.optim.Adam(model.parameters(), amsgrad=True), torch.device("cpu"))
    assert not numpy_path_applies(model, torch.optim.RMSprop(model.parameters(), momentum=0.9), torch.device("cpu"))
    assert not numpy_path_applies(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"))
    assert isinstance(make_updater(model, torch.optim.SGD(model.parameters(), lr=0.1), 1.0, torch.device("cpu")),
                      TorchUpdater)
    with pytest.raises(ValueError, match="state created first"):
        NumpyUpdater(model, adam, 1.0)


@pytest.mark.parametrize("hidden", [(7,), (16, 16)])
def test_numpy_q_gradient_equals_autograd_of_q_loss(hidden):
    torch.manual_seed(0)
    model = build_q_network(4, 3, hidden)
    reference = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    obs, actions, targets = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g), torch.randn(6, generator=g)
    loss, want = q_loss(reference(obs)[None], actions[None], targets[None])
    loss.backward()
    gradient = NumpyQGradient(model)
    for _ in range(2):  # the second call overwrites the first's gradient, never adds to it
        metrics = gradient(obs.numpy(), actions.numpy(), targets.numpy())
    assert metrics == pytest.approx(want, rel=1e-5)
    for (name, p), q in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(TypeError, match="QNetwork"):
        NumpyQGradient(build_actor_critic(4, 2, (8,)))


# -- acting ------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_torso", [True, False])
def test_shapes_and_numpy_policy_matches_torch(shared_torso):
    torch.manual_seed(0)
    model = build_actor_critic(6, 3, (32, 16), shared_torso=shared_torso)
    obs = torch.randn(7, 6)
    logits, values = model(obs)
    assert logits.shape == (7, 3) and values.shape == (7,)
    policy = NumpyMLP(model.torso, model.policy)
    for row in obs:
        np.testing.assert_allclose(policy(row.numpy()), model(row)[0].detach().numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_q_network_and_its_numpy_forward():
    torch.manual_seed(1)
    q = build_q_network(5, 4, (16,))
    obs = torch.randn(3, 5)
    assert q(obs).shape == (3, 4)
    fast = NumpyMLP(q.torso, q.head)
    np.testing.assert_allclose(fast(obs[0].numpy()), q(obs[0]).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_policy_sees_parameter_updates_in_place():
    model = build_actor_critic(4, 2, (8,))
    policy = NumpyMLP(model.torso, model.policy)
    obs = np.ones(4, dtype=np.float32)
    with torch.no_grad():
        model.policy.bias.copy_(torch.tensor([5.0, -5.0]))
    np.testing.assert_allclose(policy(obs), model(torch.from_numpy(obs))[0].detach().numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("hidden", [(7,), (16, 16)])
def test_numpy_q_gradient_of_a_relu_torso_equals_autograd(hidden):
    """One activation rule for every NumPy pass: a ReLU torso's backward pass too."""
    torch.manual_seed(0)
    model = build_q_network(4, 3, hidden, activation="relu")
    reference = copy.deepcopy(model)
    g = torch.Generator().manual_seed(2)
    obs, actions, targets = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g), torch.randn(6, generator=g)
    loss, want = q_loss(reference(obs)[None], actions[None], targets[None])
    loss.backward()
    metrics = NumpyQGradient(model)(obs.numpy(), actions.numpy(), targets.numpy())
    assert metrics == pytest.approx(want, rel=1e-5)
    for (name, p), q in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)
    fast = NumpyMLP(model.torso, model.head)
    np.testing.assert_allclose(fast(obs.numpy()), model(obs).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_the_torso_chooses_the_path_once():
    """An MLP torso has a NumPy form and every user takes the NumPy path; a CNN has none and
    every user takes torch's."""
    mlp = build_q_network(4, 3, (8,))
    cnn = build_q_network(ObsSpec((2, 6, 6), "uint8", 255.0), 3, (8,), network="minatar")
    assert has_numpy_form(mlp.torso) and not has_numpy_form(cnn.torso)
    assert isinstance(fast_forward(mlp.torso, mlp.head), NumpyMLP)
    assert isinstance(fast_forward(cnn.torso, cnn.head), TorchForward)
    assert isinstance(make_q_gradient(mlp), NumpyQGradient) and isinstance(make_q_gradient(cnn), TorchQGradient)
    with pytest.raises(TypeError, match="NumPy form"):
        NumpyMLP(cnn.torso, cnn.head)
