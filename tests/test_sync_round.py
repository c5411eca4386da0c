"""Synchronous twins of the Hogwild methods (``--sync``, ``asyncrl.sync_round``): the mean
of a round's gradients applied once, determinism, and serial == processes bit for bit."""

import math

import pytest
import torch

from asyncrl.algos.base import SharedState
from asyncrl.checkpoint import load_checkpoint
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.shared import GlobalCounters
from asyncrl.sync_round import SyncRound
from asyncrl.trainer import Trainer
from tests.helpers import assert_one_line_error, cli

HOGWILD = ("a3c", "n-step-q", "one-step-q", "one-step-sarsa")


def test_a_round_applies_the_mean_of_its_gradients_once_after_the_last_push():
    """Hand-worked: theta = [1, 2], SGD with lr 0.5; gradients [2, 0] and [0, 4] give the
    mean [1, 2] and theta = [0.5, 1.0], applied when the second actor-learner pushes."""
    model = torch.nn.Linear(1, 1, bias=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(2.0)
    shared = SharedState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    shared.round = SyncRound(list(model.parameters()), workers=2, serial=True, lock=torch.multiprocessing.Lock())
    counters = GlobalCounters(2)
    members = [shared.for_worker(i, counters) for i in range(2)]
    locals_ = [[torch.zeros(1, 1), torch.zeros(1)] for _ in range(2)]
    for (member, _), params, grads in zip(members, locals_, ([[2.0], [0.0]], [[0.0], [4.0]])):
        member.pull(params)
        params[0].grad, params[1].grad = torch.tensor([grads[0]]), torch.tensor(grads[1])
        counters.add(0, 5, updates=0)
    members[0][0].push(locals_[0], max_grad_norm=1e9)
    assert model.weight.item() == 1.0 and model.bias.item() == 2.0 and shared.round.rounds == 0
    assert members[1][1].global_step == 0  # T as of the last round's end: none yet
    members[1][0].push(locals_[1], max_grad_norm=1e9)
    assert model.weight.item() == 0.5 and model.bias.item() == 1.0
    assert shared.round.rounds == 1 and members[0][1].global_step == counters.global_step == 10


def test_the_round_clips_the_mean_gradient_as_one_update():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    shared = SharedState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    shared.round = SyncRound(list(model.parameters()), workers=2, serial=True, lock=torch.multiprocessing.Lock())
    counters = GlobalCounters(2)
    for i, g in enumerate((6.0, 2.0)):  # mean 4, clipped to norm 1
        member, _ = shared.for_worker(i, counters)
        params = [torch.zeros(1, 1)]
        params[0].grad = torch.tensor([[g]])
        member.push(params, max_grad_norm=1.0)
    assert model.weight.item() == pytest.approx(-1.0)


def _run(tmp_path, name, algo, serial, **algo_kwargs):
    run = RunConfig(algo=algo, workers=2, serial=serial, seed=7, total_steps=1500, target_return=math.inf,
                    run_dir=str(tmp_path / name), on_worker_failure="abort")
    config = Config(run=run, algo=algo_config(algo, run.env, sync=True, **algo_kwargs))
    summary = Trainer(config, quiet=True).train()
    return summary, load_checkpoint(tmp_path / name / "checkpoint.pt")


@pytest.mark.parametrize("algo", HOGWILD)
def test_serial_sync_is_deterministic_and_processes_equal_it_bit_for_bit(tmp_path, algo):
    """Two actor-learner processes that meet at every round's barrier give the parameters
    (and theta^-) of the serial round-robin run bit for bit, whatever their timing."""
    serial, ckpt = _run(tmp_path, "serial", algo, serial=True)
    again, ckpt_again = _run(tmp_path, "again", algo, serial=True)
    procs, ckpt_procs = _run(tmp_path, "procs", algo, serial=False)
    assert serial["global_step"] == again["global_step"] == procs["global_step"] >= 1500
    for other in (ckpt_again, ckpt_procs):
        for key in ckpt["model"]:
            assert torch.equal(ckpt["model"][key], other["model"][key]), key
        for key in ckpt.get("target_model") or {}:  # theta^-, refreshed between rounds
            assert torch.equal(ckpt["target_model"][key], other["target_model"][key]), key


def test_sync_with_k_environments_per_actor_learner_matches_serial(tmp_path):
    serial, ckpt = _run(tmp_path, "serial", "a3c", serial=True, envs_per_actor=3)
    procs, ckpt_procs = _run(tmp_path, "procs", "a3c", serial=False, envs_per_actor=3)
    assert serial["global_step"] == procs["global_step"]
    assert all(torch.equal(ckpt["model"][k], ckpt_procs["model"][k]) for k in ckpt["model"])


def test_sync_differs_from_the_asynchronous_method(tmp_path):
    _, synced = _run(tmp_path, "sync", "a3c", serial=True)
    run = RunConfig(algo="a3c", workers=2, serial=True, seed=7, total_steps=1500, target_return=math.inf,
                    run_dir=str(tmp_path / "async"))
    Trainer(Config(run=run, algo=algo_config("a3c", run.env)), quiet=True).train()
    hogwild = load_checkpoint(tmp_path / "async" / "checkpoint.pt")
    assert not all(torch.equal(synced["model"][k], hogwild["model"][k]) for k in synced["model"])


@pytest.mark.parametrize("flags, message", [
    (("--policy-lag", "2", "--serial"), "--sync applies each round's mean gradient to theta; it cannot be combined with --policy-lag"),
    (("--backend", "ray"), "--sync runs on --backend shm"),
])
def test_bad_sync_combinations_are_one_line_errors(flags, message):
    assert_one_line_error(cli("--algo", "n-step-q", "--sync", *flags, "--total-steps", 100, timeout=120), message)
