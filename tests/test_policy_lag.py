"""``--serial --policy-lag K``: every pull reads theta as it was K updates ago."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from asyncrl.algos.base import SharedState
from asyncrl.policy_lag import LaggedModel

from helpers import assert_one_line_error, cli


def _three_updates(lag: int) -> list[float]:
    """Two actor-learners alternating on one shared scalar theta = 1, loss theta'^2 / 2 (so
    d theta = theta'), plain SGD with learning rate 0.5: theta after each of three updates."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    shared = LaggedModel(SharedState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5)), lag)
    locals_ = [nn.Linear(1, 1, bias=False) for _ in range(2)]
    thetas = []
    for update in range(3):
        local = locals_[update % 2]
        params = list(local.parameters())
        shared.pull(params)  # theta' <- theta_{u - K}
        params[0].grad = params[0].detach().clone()  # d (theta'^2 / 2) / d theta'
        shared.push(params, max_grad_norm=1e9)
        thetas.append(model.weight.item())
    return thetas


def test_three_updates_worked_by_hand():
    # K = 0: theta_u = theta_{u-1} - 0.5 theta_{u-1}: 0.5, 0.25, 0.125.
    assert _three_updates(0) == pytest.approx([0.5, 0.25, 0.125])
    # K = 1: update 1 pulls theta_0 = 1 -> 0.5; update 2 pulls theta_{max(0, 1-1)} = theta_0 = 1
    # -> 0.5 - 0.5 = 0; update 3 pulls theta_1 = 0.5 -> 0 - 0.25 = -0.25.
    assert _three_updates(1) == pytest.approx([0.5, 0.0, -0.25])
    # K = 2: pulls theta_0, theta_0, theta_0 (theta_{max(0, 2-2)}): 0.5, 0, -0.5.
    assert _three_updates(2) == pytest.approx([0.5, 0.0, -0.5])


def test_lagged_model_passes_everything_else_through():
    model = nn.Linear(2, 1)
    shared = SharedState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    lagged = LaggedModel(shared, 3)
    assert lagged.model is model and lagged.target is None and lagged.current_lag == 0
    with pytest.raises(ValueError, match="--policy-lag must be >= 0"):
        LaggedModel(shared, -1)


def _run(tmp_path, name, *args):
    run_dir = tmp_path / name
    result = cli("--algo", "a3c", "--env", "CartPole-v1", "--serial", "--workers", 3, "--seed", 4,
                 "--total-steps", 3000, "--target-return", "inf", "--progress", "none", "--run-dir", run_dir, *args)
    assert result.returncode == 0, result.stderr
    return (run_dir / "episodes.csv").read_text(), json.loads((run_dir / "config.json").read_text())


def test_a_lagged_serial_run_is_deterministic_and_differs_from_an_unlagged_one(tmp_path):
    first, config = _run(tmp_path, "lag-a", "--policy-lag", 5)
    again, _ = _run(tmp_path, "lag-b", "--policy-lag", 5)
    unlagged, _ = _run(tmp_path, "lag-0")
    assert config["run"]["policy_lag"] == 5
    assert first == again
    assert first != unlagged


@pytest.mark.parametrize("args, fragment", [
    (["--policy-lag", 2], "--policy-lag sets the staleness of --serial runs"),
    (["--serial", "--policy-lag", -1], "--policy-lag must be >= 0"),
    (["--serial", "--policy-lag", 2, "--algo", "one-step-q"], "--algo one-step-q does not pull a copy"),
])
def test_policy_lag_bad_combinations_are_one_line_errors(args, fragment, tmp_path):
    result = cli(*args, "--total-steps", 100, "--run-dir", tmp_path / "x", "--progress", "none")
    assert_one_line_error(result, fragment)
