"""Networks (their NumPy acting path: tests/test_numpy_path.py)."""

import numpy as np
import pytest
import torch

from asyncrl.networks import build_actor_critic


def test_policy_head_starts_near_uniform():
    model = build_actor_critic(4, 2, (64, 64))
    probs = torch.softmax(model(torch.randn(100, 4))[0], -1)
    assert (probs - 0.5).abs().max() < 0.05


# --- torsos chosen by the observation's shape -------------------------------------------


from asyncrl.networks import (  # noqa: E402
    ConvTorso,
    MLPTorso,
    NetworkError,
    ObsSpec,
    PolicyValue,
    TorchForward,
    build_torso,
    resolve_network,
)

ATARI = ObsSpec((4, 84, 84), "uint8", 255.0)
MINATAR = ObsSpec((4, 10, 10), "uint8", 1.0)


def test_auto_picks_the_torso_by_shape_and_bad_choices_name_the_fix():
    assert resolve_network("auto", ObsSpec((6,))) == "mlp"
    assert resolve_network("auto", ATARI) == "nature"
    assert resolve_network("auto", MINATAR) == "minatar"
    assert resolve_network("minatar", ATARI) == "minatar"  # any image size from 3x3 up
    for network, obs, fragment in [("mlp", ATARI, "--network mlp needs flat observations"),
                                   ("nature", ObsSpec((6,)), "--network nature needs image observations"),
                                   ("nature", MINATAR, "at least 36x36"),
                                   ("resnet", MINATAR, "--network must be one of")]:
        with pytest.raises(NetworkError, match=fragment):
            resolve_network(network, obs)


def test_nature_torso_is_the_papers_network():
    """Mnih et al. 2016, Section 8: conv 16 8x8/4 -> 20x20, conv 32 4x4/2 -> 9x9, fc 256."""
    torso = build_torso(ATARI, "auto", (64,))
    convs = [m for m in torso.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 16, (8, 8), (4, 4)), (16, 32, (4, 4), (2, 2))]
    assert (torso.fc.in_features, torso.fc.out_features) == (32 * 9 * 9, 256)
    model = build_actor_critic(ATARI, 6, (64,), shared_torso=None)
    assert model.value_torso is None  # one torso for both heads with a CNN
    assert sum(p.numel() for p in model.parameters()) == (
        4 * 16 * 64 + 16 + 16 * 32 * 16 + 32 + 2592 * 256 + 256 + 256 * 6 + 6 + 256 + 1)


def test_minatar_torso_is_young_and_tian():
    torso = build_torso(MINATAR, "minatar", (64,))
    (conv,) = [m for m in torso.convs if isinstance(m, torch.nn.Conv2d)]
    assert (conv.out_channels, conv.kernel_size, conv.stride) == (16, (3, 3), (1, 1))
    assert (torso.fc.in_features, torso.fc.out_features) == (16 * 8 * 8, 128)
    mlp = build_actor_critic(6, 3, (8,), shared_torso=None)
    assert isinstance(mlp.torso, MLPTorso) and mlp.value_torso is not None  # one MLP torso per head


def test_uint8_images_are_scaled_inside_the_network():
    """The torso divides by the spec's ``high``: uint8 in, the same features as the float
    image in [0, 1] through the same convolutions."""
    torch.manual_seed(0)
    torso = build_torso(ATARI, "nature", (64,))
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    reference = torch.relu(torso.fc(torso.convs(frames.float() / 255.0).flatten(1)))
    torch.testing.assert_close(torso(frames), reference)
    minatar = ConvTorso(MINATAR, [(16, 3, 1)], 128)
    bits = torch.randint(0, 2, (2, 4, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(minatar(bits), torch.relu(minatar.fc(minatar.convs(bits.float()).flatten(1))))


@pytest.mark.parametrize("obs", [MINATAR, ObsSpec((5,))], ids=["cnn", "mlp"])
def test_acting_paths_match_the_model(obs):
    torch.manual_seed(2)
    model = build_actor_critic(obs, 3, (16,), shared_torso=None)
    batch = (np.random.default_rng(0).integers(0, 2, (4, *obs.shape)).astype(obs.np_dtype))
    logits, values = model(torch.from_numpy(batch))
    fast_logits, fast_values = PolicyValue(model)(batch)
    np.testing.assert_allclose(fast_logits, logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_values, values.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(PolicyValue(model).values(batch), values.detach().numpy(), rtol=1e-5, atol=1e-6)
    if obs.is_image:
        one = TorchForward(model.torso, model.policy)(batch[1])  # a single observation, no batch axis
        np.testing.assert_allclose(one, logits[1].detach().numpy(), rtol=1e-5, atol=1e-6)
