"""Torso health: the measure itself, and the pixel presets keep their CNN torsos alive."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.diagnostics import checkpoint_health, torso_health
from asyncrl.trainer import Trainer


def test_torso_health_counts_active_and_dead_units():
    torso = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    with torch.no_grad():
        torso[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, -1.0]]))
        torso[0].bias.copy_(torch.tensor([0.0, 0.0, 0.5, -0.1]))
    obs = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 0.0]])
    health = torso_health(torso, obs)
    # unit 0: 0, 1, 2 (active); unit 1: 1, 3, 0 (active); unit 2: 0.5 always (alive, constant);
    # unit 3: never above 0 (dead)
    assert (health.units, health.active_units, health.dead_units) == (4, 2, 1)
    assert health.feature_std == pytest.approx((1.0 + torch.tensor([1.0, 3.0, 0.0]).std().item()) / 4)
    assert health.active_fraction == 0.5
    with pytest.raises(ValueError, match="at least 2"):
        torso_health(torso, obs[:1])


# Pong, two actor-learners round-robin (--serial), 6,000 agent steps (24k frames), each
# algorithm's Atari preset. With torch's RMSProp (sqrt(g) + 1e-5) every algorithm here
# had collapsed by then: active units 0/256 (a3c, one-step-q), 12/256 (a2c), and 0/256 for
# n-step-q at 20k steps; with the presets' sqrt(g + 0.1), 127-143 of 256 stayed active at
# 20k (at initialisation: 146, mean feature std 0.011). Floors: 35% of the units active and
# a mean feature std of 1e-3, far from both. About 15-30 s each.
ACTIVE_FLOOR, STD_FLOOR, STEPS = 0.35, 1e-3, 6_000


@pytest.mark.parametrize("algo", ["a3c", "n-step-q", "one-step-q", "a2c"])
def test_pixel_presets_keep_the_cnn_torso_alive_on_pong(tmp_path, algo):
    pytest.importorskip("ale_py", reason="needs the atari extra")
    run = RunConfig(algo=algo, env="ALE/Pong-v5", workers=2, serial=True, seed=0, total_steps=STEPS,
                    run_dir=str(tmp_path / "run"))
    Trainer(Config(run=run, algo=algo_config(algo, run.env)), quiet=True).train()
    health = checkpoint_health(tmp_path / "run")
    assert health.units == 256
    assert health.active_fraction >= ACTIVE_FLOOR and health.feature_std >= STD_FLOOR, health


def test_diagnostics_cli_is_one_line_for_a_missing_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "asyncrl.diagnostics", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("asyncrl.diagnostics: error:")
