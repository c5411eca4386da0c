"""Networks and the NumPy acting path."""

import numpy as np
import pytest
import torch

from asyncrl.networks import NumpyMLP, build_actor_critic, build_q_network, sample_categorical


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


def test_policy_head_starts_near_uniform():
    model = build_actor_critic(4, 2, (64, 64))
    probs = torch.softmax(model(torch.randn(100, 4))[0], -1)
    assert (probs - 0.5).abs().max() < 0.05


def test_sample_categorical_follows_softmax():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.1, 0.6, 0.3]))
    counts = np.bincount([sample_categorical(logits, rng) for _ in range(20000)], minlength=3)
    # 20000 draws: the standard error of each frequency is below 0.0035.
    np.testing.assert_allclose(counts / 20000, [0.1, 0.6, 0.3], atol=0.015)
