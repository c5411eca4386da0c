"""Every algorithm under every start method: short runs in real processes."""

import math

import pytest

from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.trainer import Trainer

ALGOS = ["a3c", "one-step-q", "one-step-sarsa", "n-step-q", "a2c", "ppo"]


def _run(tmp_path, algo, start_method, workers=1, total_steps=1000):
    small = {"unroll_length": 16, "minibatch_size": 64} if algo == "ppo" else {}
    run = RunConfig(algo=algo, workers=workers, seed=0, total_steps=total_steps, target_return=math.inf,
                    start_method=start_method, run_dir=str(tmp_path / f"{algo}-{start_method}"))
    return Trainer(Config(run=run, algo=algo_config(algo, run.env, **small)), quiet=True).train()


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_runs_under_every_start_method(tmp_path, algo, start_method):
    summary = _run(tmp_path, algo, start_method)
    assert summary["stop_reason"] == "total_steps" and summary["worker_failures"] == []
    assert summary["global_step"] >= 1000 and summary["updates"] > 0 and summary["episodes"] > 0


def test_forked_actors_with_a_spawned_learner(tmp_path, monkeypatch):
    """A CUDA learner is spawned while the actors fork (``learner_start_method``): the same
    process graph, on the CPU."""
    import asyncrl.algos.batched as batched

    monkeypatch.setattr(batched, "learner_start_method", lambda config: "spawn")
    summary = _run(tmp_path, "ppo", "fork", workers=2, total_steps=2000)
    assert summary["stop_reason"] == "total_steps" and summary["worker_failures"] == []
    assert summary["updates"] >= 2000 // (16 * 8)
