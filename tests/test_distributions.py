"""Policy distributions against torch.distributions, slow term-by-term references and autograd."""

import math

import numpy as np
import pytest
import torch

from asyncrl.distributions import MIN_VARIANCE, ActionSpec, Categorical, DiagGaussian, make_distribution
from asyncrl.networks import NumpyMLP, PolicyValue, build_actor_critic


def _gaussian_params(dist, N=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(N, dist.param_dim, generator=g, dtype=torch.float64)
    actions = torch.randn(N, dist.dim, generator=g, dtype=torch.float64) * 2
    return params, actions


def _slow_gaussian(dist, params, actions):
    """log N(a; mu, sigma^2) and the entropy, one number at a time from the formulas."""
    log_probs, entropies = [], []
    for row, action in zip(params.tolist(), actions.tolist()):
        log_prob = entropy = 0.0
        for i in range(dist.dim):
            mean, scale = row[i], row[dist.dim + i]
            variance = math.log1p(math.exp(scale)) + MIN_VARIANCE if dist.std == "softplus" else math.exp(2 * scale)
            log_prob += -(action[i] - mean) ** 2 / (2 * variance) - 0.5 * math.log(2 * math.pi * variance)
            entropy += 0.5 * math.log(2 * math.pi * math.e * variance)
        log_probs.append(log_prob)
        entropies.append(entropy)
    return torch.tensor(log_probs, dtype=torch.float64), torch.tensor(entropies, dtype=torch.float64)


@pytest.mark.parametrize("std", ["parameter", "softplus"])
def test_gaussian_matches_torch_normal_and_the_formulas(std):
    dist = DiagGaussian(3, std)
    params, actions = _gaussian_params(dist)
    mean, log_std = dist.mean_log_std(params)
    reference = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    slow_log_prob, slow_entropy = _slow_gaussian(dist, params, actions)
    torch.testing.assert_close(dist.log_prob(params, actions), reference.log_prob(actions))
    torch.testing.assert_close(dist.log_prob(params, actions), slow_log_prob)
    torch.testing.assert_close(dist.entropy(params), reference.entropy())
    torch.testing.assert_close(dist.entropy(params), slow_entropy)
    log_prob, entropy = dist.log_prob_entropy(params, actions)
    torch.testing.assert_close(log_prob, slow_log_prob)
    torch.testing.assert_close(entropy, slow_entropy)
    torch.testing.assert_close(dist.mode(params), params[:, :3])


def test_categorical_matches_torch_categorical():
    dist = Categorical(4)
    g = torch.Generator().manual_seed(0)
    logits, actions = torch.randn(5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    reference = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(dist.log_prob(logits, actions), reference.log_prob(actions))
    torch.testing.assert_close(dist.entropy(logits), reference.entropy())
    assert torch.equal(dist.mode(logits), logits.argmax(-1))


@pytest.mark.parametrize("dist", [Categorical(4), DiagGaussian(3, "parameter"), DiagGaussian(3, "softplus")],
                         ids=["categorical", "gaussian", "gaussian-softplus"])
def test_numpy_log_prob_and_entropy_gradients_equal_autograd(dist):
    g = torch.Generator().manual_seed(1)
    params = (torch.randn(7, dist.param_dim, generator=g, dtype=torch.float64) * 2).requires_grad_()
    if isinstance(dist, Categorical):
        actions = torch.randint(0, 4, (7,), generator=g)
    else:
        actions = torch.randn(7, 3, generator=g, dtype=torch.float64)
    log_prob, d_log_prob = dist.np_log_prob(params.detach().numpy(), actions.numpy())
    entropy, d_entropy = dist.np_entropy(params.detach().numpy())
    want_log_prob = dist.log_prob(params, actions)
    (want_d_log_prob,) = torch.autograd.grad(want_log_prob.sum(), params)  # rows are independent
    want_entropy = dist.entropy(params)
    (want_d_entropy,) = torch.autograd.grad(want_entropy.sum(), params)
    np.testing.assert_allclose(log_prob, want_log_prob.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(d_log_prob, want_d_log_prob.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(entropy, want_entropy.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(d_entropy, want_d_entropy.numpy(), rtol=1e-9, atol=1e-12)


def test_sample_categorical_follows_softmax():
    rng = np.random.default_rng(0)
    dist = Categorical(3)
    logits = np.log(np.array([0.1, 0.6, 0.3]))
    counts = np.bincount([dist.sample(logits, rng) for _ in range(20000)], minlength=3)
    # 20000 draws: the standard error of each frequency is below 0.0035.
    np.testing.assert_allclose(counts / 20000, [0.1, 0.6, 0.3], atol=0.015)
    actions, log_probs = dist.sample_batch(np.tile(logits, (20000, 1)), rng)
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / 20000, [0.1, 0.6, 0.3], atol=0.015)
    np.testing.assert_allclose(log_probs, np.log([0.1, 0.6, 0.3])[actions], rtol=1e-5)


@pytest.mark.parametrize("std", ["parameter", "softplus"])
def test_gaussian_samples_have_the_distributions_moments_and_log_probs(std):
    dist = DiagGaussian(2, std)
    params = np.array([0.5, -1.0, -0.7, 0.4], np.float32)  # mu = (0.5, -1), scales -0.7, 0.4
    mean, log_std = dist.mean_log_std(torch.from_numpy(params))
    sigma = log_std.exp().numpy()
    rng = np.random.default_rng(0)
    one = np.stack([dist.sample(params, rng) for _ in range(20000)])
    batch, log_probs = dist.sample_batch(np.tile(params, (20000, 1)), rng)
    assert one.dtype == batch.dtype == np.float32 and batch.shape == (20000, 2)
    for draws in (one, batch):  # standard errors: sigma / 141 for the mean, sigma / 100 for the std
        np.testing.assert_allclose(draws.mean(0), mean.numpy(), atol=4 * sigma.max() / 141)
        np.testing.assert_allclose(draws.std(0), sigma, rtol=0.03)
    torch.testing.assert_close(torch.from_numpy(log_probs),
                               dist.log_prob(torch.from_numpy(np.tile(params, (20000, 1))), torch.from_numpy(batch)))


def test_softplus_variance_stays_finite_where_softplus_underflows():
    dist = DiagGaussian(1, "softplus")
    params = torch.tensor([[0.0, -200.0]])
    assert dist.entropy(params).item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e * MIN_VARIANCE), rel=1e-4)
    assert torch.isfinite(dist.log_prob(params, torch.tensor([[1e-3]]))).all()
    _, grad = dist.np_log_prob(params.numpy(), np.array([[1e-3]], np.float32))
    assert np.isfinite(grad).all()


def test_make_distribution_and_action_specs():
    assert isinstance(make_distribution(3), Categorical) and make_distribution(3).param_dim == 3
    box = ActionSpec.box(np.array([-2.0], np.float32), np.array([2.0], np.float32))
    assert box == ActionSpec(0, (1,), (-2.0,), (2.0,)) and not box.discrete and box.np_dtype == np.float32
    assert box.describe() == "Box(1,) in [-2, 2]" and ActionSpec.of(4).describe() == "Discrete(4)"
    gaussian = make_distribution(box, "softplus")
    assert isinstance(gaussian, DiagGaussian) and (gaussian.param_dim, gaussian.head_dim) == (2, 2)
    assert make_distribution(box, "parameter").head_dim == 1  # the log sigma is appended
    with pytest.raises(ValueError, match="std must be one of"):
        make_distribution(box, "exp")


@pytest.mark.parametrize("std", ["parameter", "softplus"])
@pytest.mark.parametrize("shared_torso", [True, False])
def test_gaussian_actor_critic_and_its_numpy_acting_path(std, shared_torso):
    torch.manual_seed(0)
    model = build_actor_critic(5, ActionSpec.box([-1, -1, -1], [1, 1, 1]), (16,), shared_torso, gaussian_std=std)
    with torch.no_grad():
        if std == "parameter":
            model.policy.log_std.copy_(torch.tensor([-0.5, 0.0, 0.5]))  # not the initial zeros
    obs = torch.randn(4, 5)
    params, values = model(obs)
    assert params.shape == (4, 6) and values.shape == (4,)
    mean, log_std = model.dist.mean_log_std(params)
    assert mean.abs().max() < 0.1  # gain 0.01: near-zero means
    if std == "parameter":  # state-independent: the same log sigma in every row, and trainable
        torch.testing.assert_close(log_std, torch.tensor([-0.5, 0.0, 0.5]).expand(4, 3))
        assert model.policy.log_std in set(model.parameters())
    else:
        assert model.policy.log_std is None and model.policy.out_features == 6
    fast = NumpyMLP(model.torso, model.policy)
    np.testing.assert_allclose(fast(obs.numpy()), params.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast(obs[0].numpy()), params[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    both = PolicyValue(model)(obs.numpy())
    np.testing.assert_allclose(both[0], params.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[1], values.detach().numpy(), rtol=1e-5, atol=1e-6)


# -- MultiDiscrete and MultiBinary: independent categoricals and Bernoullis -------------

from asyncrl.distributions import Bernoulli, MultiCategorical  # noqa: E402


def _multi_reference(dist, params):
    """The same distribution from torch.distributions: independent parts, summed."""
    if isinstance(dist, MultiCategorical):
        bounds = np.cumsum([0, *dist.nvec])
        parts = [torch.distributions.Categorical(logits=params[..., lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
        return (lambda a: sum(p.log_prob(a[..., k]) for k, p in enumerate(parts)),
                sum(p.entropy() for p in parts))
    ref = torch.distributions.Bernoulli(logits=params)
    return (lambda a: ref.log_prob(a.to(params.dtype)).sum(-1)), ref.entropy().sum(-1)


@pytest.mark.parametrize("dist", [MultiCategorical([3, 2, 5]), Bernoulli(4)])
def test_multi_action_distributions_equal_torch_distributions(dist):
    torch.manual_seed(0)
    params = torch.randn(7, 2, dist.param_dim, dtype=torch.float64) * 2
    rng = np.random.default_rng(0)
    actions = torch.from_numpy(np.stack([dist.sample(p, rng) for p in params.reshape(-1, dist.param_dim).numpy()])
                               ).reshape(7, 2, -1)
    assert actions.dtype == torch.int64 and actions.shape[-1] == dist.action_shape[0]
    log_prob, entropy = _multi_reference(dist, params)
    got_lp, got_h = dist.log_prob_entropy(params, actions)
    torch.testing.assert_close(got_lp, log_prob(actions))
    torch.testing.assert_close(got_h, entropy)
    torch.testing.assert_close(dist.log_prob(params, actions), log_prob(actions))
    torch.testing.assert_close(dist.entropy(params), entropy)
    # NumPy log-probs and entropies with their gradients, against autograd
    flat = params.reshape(-1, dist.param_dim).detach().requires_grad_(True)
    flat_actions = actions.reshape(-1, dist.action_shape[0])
    np_lp, np_glp = dist.np_log_prob(flat.detach().numpy(), flat_actions.numpy())
    np_h, np_gh = dist.np_entropy(flat.detach().numpy())
    lp, h = _multi_reference(dist, flat)
    (glp,) = torch.autograd.grad(lp(flat_actions).sum(), flat, retain_graph=True)
    (gh,) = torch.autograd.grad(h.sum(), flat)
    np.testing.assert_allclose(np_lp, log_prob(actions).reshape(-1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(np_h, entropy.reshape(-1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(np_glp, glp.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np_gh, gh.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dist", [MultiCategorical([3, 2]), Bernoulli(2)])
def test_multi_action_sampling_frequencies_and_mode(dist):
    params = np.array([0.5, -1.0, 2.0, 0.3, -0.3][: dist.param_dim])
    rng = np.random.default_rng(1)
    n = 40_000
    batch, log_probs = dist.sample_batch(np.tile(params, (n, 1)), rng)
    torch_params = torch.from_numpy(params)
    for k in range(dist.action_shape[0]):  # each entry's marginal frequencies
        if isinstance(dist, MultiCategorical):
            lo = sum(dist.nvec[:k])
            want = torch.softmax(torch_params[lo:lo + dist.nvec[k]], -1).numpy()
            got = np.bincount(batch[:, k], minlength=dist.nvec[k]) / n
        else:
            want = np.array([1 - 1 / (1 + np.exp(-params[k])), 1 / (1 + np.exp(-params[k]))])
            got = np.bincount(batch[:, k], minlength=2) / n
        np.testing.assert_allclose(got, want, atol=0.01)
    ref_lp = dist.log_prob(torch_params.expand(n, -1), torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(log_probs, ref_lp, rtol=1e-5)
    mode = dist.mode(torch_params).tolist()
    assert mode == ([2, 0] if isinstance(dist, MultiCategorical) else [1, 0])  # argmax of [0.5, -1, 2], [0.3, -0.3]
