"""``--serial --policy-lag K``: every pull reads theta as it was K updates ago."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from asyncrl.algos.base import SharedState
from asyncrl.metrics import lag_quantile, lag_summary, merge_lags
from asyncrl.policy_lag import LaggedModel, MeasuredLag
from asyncrl.shared import GlobalCounters

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


def test_a_lagged_model_counts_each_push_lag_as_its_pull_saw_it():
    model = nn.Linear(1, 1, bias=False)
    lagged = LaggedModel(SharedState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)), 3)
    local = list(nn.Linear(1, 1, bias=False).parameters())
    for _ in range(6):
        lagged.pull(local)
        local[0].grad = torch.ones_like(local[0])
        lagged.push(local, max_grad_norm=1e9)
    # update u (0-based) pulls theta_{max(0, u - 3)}: lags 0, 1, 2, 3, 3, 3
    assert lagged.drain_lags() == {0: 1, 1: 1, 2: 1, 3: 3}
    assert lagged.drain_lags() == {}


class _Plain:
    """A shared state that only counts its pulls and pushes."""

    target = None

    def __init__(self):
        self.pulls = self.pushes = 0

    def pull(self, local_params):
        self.pulls += 1

    def push(self, params, max_grad_norm, lr=None):
        self.pushes += 1


def test_measured_lag_counts_the_other_actor_learners_updates_since_the_pull():
    """Two actor-learners A and B on one theta, worked by hand: a push's lag is the updates
    applied since its pull (or, with no pull between, since its own previous push)."""
    counters, shared = GlobalCounters(2), _Plain()
    a, b = MeasuredLag(shared, counters), MeasuredLag(shared, counters)

    def push(member, worker_id):
        member.push([], max_grad_norm=40.0)
        counters.add(worker_id, 5, updates=1)  # (what an actor-learner does after its push)

    a.pull([])  # version 0
    b.pull([])  # version 0
    push(b, 1)  # lag 0 -> version 1
    push(a, 0)  # lag 1 (B's update) -> version 2
    push(a, 0)  # no pull since its own update: lag 0 -> version 3
    push(b, 1)  # A's two updates since B's own: lag 2 -> version 4
    b.pull([])  # version 4
    push(a, 0)  # B's update since A's last: lag 1 -> version 5
    push(b, 1)  # A's update since B's pull: lag 1
    assert a.drain_lags() == {1: 2, 0: 1} and b.drain_lags() == {0: 1, 2: 1, 1: 1}
    assert a.drain_lags() == {} and (shared.pulls, shared.pushes) == (3, 6)
    assert a.target is None  # everything else passes through


def test_lag_quantiles_match_numpy_inverted_cdf_on_random_histograms():
    rng = np.random.default_rng(0)
    for _ in range(50):
        samples = rng.geometric(rng.uniform(0.1, 0.9), size=rng.integers(1, 200)) - 1
        counts = merge_lags({}, samples.tolist())
        for q in (0.1, 0.5, 0.9, 1.0):
            assert lag_quantile(counts, q) == int(np.percentile(samples, 100 * q, method="inverted_cdf"))
        summary = lag_summary(counts)
        assert summary["updates"] == len(samples) and summary["mean"] == pytest.approx(samples.mean())
        assert (summary["median"], summary["p90"], summary["max"]) == (
            lag_quantile(counts, 0.5), lag_quantile(counts, 0.9), samples.max())
    assert lag_summary({}) is None
    assert merge_lags({1: 2}, {1: 1, 4: 1}) == {1: 3, 4: 1}
    with pytest.raises(ValueError, match="no lags counted"):
        lag_quantile({}, 0.5)
    with pytest.raises(ValueError, match="quantile must be in"):
        lag_quantile({0: 1}, 0.0)


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


def _summary(tmp_path, name):
    return json.loads((tmp_path / name / "summary.json").read_text())


def test_a_lagged_serial_run_is_deterministic_and_differs_from_an_unlagged_one(tmp_path):
    first, config = _run(tmp_path, "lag-a", "--policy-lag", 5)
    again, _ = _run(tmp_path, "lag-b", "--policy-lag", 5)
    unlagged, _ = _run(tmp_path, "lag-0")
    assert config["run"]["policy_lag"] == 5
    assert first == again
    assert first != unlagged
    # the summary's measured lag: 5 once five updates are made, 0 in a serial run without one
    lagged, plain = _summary(tmp_path, "lag-a"), _summary(tmp_path, "lag-0")
    assert lagged["policy_lag"]["updates"] == lagged["updates"] > 5
    assert (lagged["policy_lag"]["median"], lagged["policy_lag"]["max"]) == (5, 5)
    assert lagged["policy_lag"]["mean"] == pytest.approx(5 - 15 / lagged["updates"])  # lags 0..4 first
    assert plain["policy_lag"] == {"updates": plain["updates"], "mean": 0.0, "median": 0, "p90": 0, "max": 0}


@pytest.mark.parametrize("args", [[], ["--sync"]], ids=["async", "sync"])
def test_worker_processes_report_every_update_lag(tmp_path, args):
    """Real actor-learner processes: every update's lag reaches the summary; a --sync run's
    are all 0 (each round's gradients come from the theta its update is applied to)."""
    run_dir = tmp_path / "run"
    result = cli("--algo", "n-step-q", "--env", "CartPole-v1", "--workers", 2, "--total-steps", 4000,
                 "--target-return", "inf", "--progress", "none", "--run-dir", run_dir, *args)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    lag = summary["policy_lag"]
    assert lag["updates"] == summary["updates"] > 0
    if args:
        assert lag["max"] == 0
    else:
        assert 0 <= lag["median"] <= lag["p90"] <= lag["max"]


@pytest.mark.parametrize("args, fragment", [
    (["--policy-lag", 2], "--policy-lag sets the staleness of --serial runs"),
    (["--serial", "--policy-lag", -1], "--policy-lag must be >= 0"),
    (["--serial", "--policy-lag", 2, "--algo", "one-step-q"], "--algo one-step-q does not pull a copy"),
])
def test_policy_lag_bad_combinations_are_one_line_errors(args, fragment, tmp_path):
    result = cli(*args, "--total-steps", 100, "--run-dir", tmp_path / "x", "--progress", "none")
    assert_one_line_error(result, fragment)
