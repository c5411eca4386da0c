"""Vectorised Hogwild actor-learners (``--envs-per-actor k``, ``asyncrl.algos.segments``):
A3C's update against a slow per-environment reference, determinism, resume and faults."""

import copy
import math

import numpy as np
import pytest
import torch

from asyncrl import registry
from asyncrl.algos import a3c
from asyncrl.algos.base import set_rng_state
from asyncrl.checkpoint import load_checkpoint, restore_shared
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.config.cli import CliError, parse_args
from asyncrl.networks import ObsSpec
from asyncrl.shared import GlobalCounters
from asyncrl.trainer import Trainer
from tests.helpers import assert_one_line_error, cli
from tests.test_value_based import GAMMA, Recorder

HOGWILD = ("a3c", "n-step-q", "one-step-q", "one-step-sarsa")


def test_a3c_update_is_each_environments_n_step_segment_stacked(monkeypatch):
    """With k environments, A3C's loss sees t_max steps of each, time-major, with each
    environment's own n-step returns: R = 0 after a terminal state, V(s; theta') of the
    cut episode's last observation after a time limit, V(s_{t+n}; theta') at the segment's
    end (a slow per-environment transcription of Algorithm S3's return loop)."""
    k, t_max = 3, 3
    config = Config(run=RunConfig(algo="a3c", env="Chain-v0", workers=1, serial=True, seed=0),
                    algo=algo_config("a3c", "Chain-v0", gamma=GAMMA, envs_per_actor=k, t_max=t_max))
    shared = a3c.make_shared(config, ObsSpec((2,)), 2)
    learner = a3c.ActorLearner(0, config, shared, GlobalCounters(1))
    envs = learner.envs.envs
    for e, env in enumerate(envs):
        envs[e] = Recorder(env)
        envs[e].obs = learner.envs.obs[e].copy()
    seen = []
    real_loss = a3c.actor_critic_loss

    def recording_loss(params, values, actions, returns, *args, **kwargs):
        seen.append((actions.clone(), returns.clone()))
        return real_loss(params, values, actions, returns, *args, **kwargs)

    monkeypatch.setattr(a3c, "actor_critic_loss", recording_loss)
    kinds = set()
    for _ in range(30):
        theta = copy.deepcopy(shared.model)  # theta' of this update
        starts = [len(env.transitions) for env in envs]
        assert learner.update() == k * t_max
        actions, returns = seen[-1]
        assert actions.shape == returns.shape == (t_max, k)

        def value(obs, theta=theta):
            with torch.no_grad():
                return float(theta(torch.as_tensor(obs)[None])[1][0])

        for e, env in enumerate(envs):
            segment = env.transitions[starts[e] :]
            assert len(segment) == t_max
            np.testing.assert_array_equal(actions[:, e].numpy(), [t[1] for t in segment])
            want, R = [], None
            for i in reversed(range(t_max)):
                _, _, reward, terminated, truncated, next_obs = segment[i]
                if terminated:
                    R = 0.0
                elif truncated or i == t_max - 1:
                    R = value(next_obs)
                kinds.add("terminated" if terminated else "truncated" if truncated else "bootstrapped")
                R = reward + GAMMA * R
                want.append(R)
            np.testing.assert_allclose(returns[:, e].numpy(), want[::-1], rtol=1e-5, atol=1e-5)
    assert kinds == {"terminated", "truncated", "bootstrapped"}
    learner.close()


def test_a3c_normalises_its_batch_advantages_when_asked(monkeypatch):
    """``--normalize-advantages``: the policy term's advantages are the segment's R - V(s; theta')
    over all t_max x k steps, shifted to mean 0 and divided by their (unbiased) std + 1e-8;
    the value term still regresses V on R."""
    k, t_max = 4, 5
    config = Config(run=RunConfig(algo="a3c", env="Chain-v0", workers=1, serial=True, seed=0),
                    algo=algo_config("a3c", "Chain-v0", gamma=GAMMA, envs_per_actor=k, t_max=t_max,
                                     normalize_advantages=True))
    learner = a3c.ActorLearner(0, config, a3c.make_shared(config, ObsSpec((2,)), 2), GlobalCounters(1))
    seen = []
    real_loss = a3c.actor_critic_loss

    def recording_loss(params, values, actions, returns, *args, **kwargs):
        seen.append((values.detach().numpy().astype(np.float64), returns.numpy().astype(np.float64),
                     kwargs["advantages"].numpy()))
        return real_loss(params, values, actions, returns, *args, **kwargs)

    monkeypatch.setattr(a3c, "actor_critic_loss", recording_loss)
    for _ in range(5):
        learner.update()
        values, returns, advantages = seen[-1]
        errors = returns - values  # [t_max, k]
        want = (errors - errors.mean()) / (errors.std(ddof=1) + 1e-8)
        np.testing.assert_allclose(advantages, want, rtol=1e-4, atol=1e-5)
        assert abs(advantages.mean()) < 1e-5 and advantages.std(ddof=1) == pytest.approx(1.0, abs=1e-4)
    learner.close()


@pytest.mark.parametrize("algo", HOGWILD)
def test_k_environments_are_seeded_apart_and_counted_in_T(algo):
    config = Config(run=RunConfig(algo=algo, env="CartPole-v1", workers=2, serial=True, seed=5),
                    algo=algo_config(algo, "CartPole-v1", envs_per_actor=3))
    module = registry.get(algo)
    shared = module.make_shared(config, ObsSpec((4,)), 2)
    counters = GlobalCounters(2)
    learner = module.actor(1, config, shared, counters)
    assert len(learner.envs) == 3 and learner.stats.episode_returns == [0.0] * 3
    first = learner.envs.obs.copy()
    assert len({tuple(row) for row in first}) == 3  # seeds 5 + 1 * 3 + e, e = 0, 1, 2
    steps = learner.update()
    assert steps % 3 == 0 and counters.global_step == steps
    learner.close()


def _serial(tmp_path, name, algo, total_steps, **run):
    run_config = RunConfig(algo=algo, workers=2, serial=True, seed=3, total_steps=total_steps,
                           target_return=math.inf, run_dir=str(tmp_path / name), **run)
    trainer = Trainer(Config(run=run_config, algo=algo_config(algo, run_config.env, envs_per_actor=2)), quiet=True)
    return trainer.train(), load_checkpoint(tmp_path / name / "checkpoint.pt")


@pytest.mark.parametrize("algo", HOGWILD)
def test_serial_runs_with_k_environments_are_bit_deterministic(tmp_path, algo):
    (s1, c1), (s2, c2) = (_serial(tmp_path, name, algo, 2000) for name in "ab")
    assert s1["global_step"] == s2["global_step"] >= 2000
    assert all(torch.equal(c1["model"][k], c2["model"][k]) for k in c1["model"])
    assert c1["worker_rng"] == c2["worker_rng"]


def test_resume_with_k_environments_continues_the_saved_state(tmp_path):
    """As ``test_trainer``'s one-worker resume test, with 3 environments per actor-learner:
    the checkpoint holds each environment's random state, and rebuilding the worker from it
    reproduces the resumed run bit for bit."""
    run = dict(workers=1, serial=True, seed=1, target_return=math.inf, run_dir=str(tmp_path / "r"))
    algo = algo_config("a3c", "CartPole-v1", envs_per_actor=3)
    Trainer(Config(run=RunConfig(total_steps=3000, **run), algo=algo), quiet=True).train()
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert len(ckpt["worker_rng"]["0"]["envs"]) == 3
    summary = Trainer(Config(run=RunConfig(total_steps=6000, resume=str(tmp_path / "r"), **run), algo=algo),
                      quiet=True).train()
    resumed = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    config = Config(run=RunConfig(workers=1, seed=1 + int(ckpt["generation"]), total_steps=6000), algo=algo)
    shared = a3c.make_shared(config, ObsSpec((4,)), 2)
    restore_shared(shared, ckpt, "checkpoint")
    counters = GlobalCounters(1, initial_step=ckpt["global_step"], initial_updates=ckpt["policy_version"])
    learner = a3c.ActorLearner(0, config, shared, counters)
    set_rng_state(learner, ckpt["worker_rng"]["0"])
    while counters.global_step < 6000:
        learner.update()
    assert counters.global_step == summary["global_step"]
    params = shared.model.state_dict()
    assert all(torch.equal(params[k], resumed["model"][k]) for k in params)


def test_envs_per_actor_below_one_is_a_cli_error():
    with pytest.raises(CliError, match="--envs-per-actor must be > 0, got 0"):
        parse_args(["--algo", "n-step-q", "--envs-per-actor", "0"])
    assert_one_line_error(cli("--algo", "a3c", "--envs-per-actor", "-1", timeout=60), "--envs-per-actor must be > 0")


def test_a_failing_environment_among_k_stops_the_run_with_a_one_line_error(tmp_path):
    run_dir = tmp_path / "faulty-k"
    result = cli("--env", "toy_envs:FaultyCartPole-v0", "--workers", 2, "--envs-per-actor", 3,
                 "--total-steps", 10**7, "--run-dir", run_dir, "--progress", "none",
                 "--on-worker-failure", "abort", timeout=120)
    assert result.returncode == 1, result.stderr
    assert "RuntimeError: simulated environment failure" in result.stderr
    assert "asyncrl.run: error: worker" in result.stderr.strip().splitlines()[-1]
    assert (run_dir / "checkpoint.pt").is_file()


# A3C with 4 environments per actor-learner, 2 serial actor-learners, CartPole's preset:
# over seeds 0-4 x three processor-math profiles (native Intel AVX-512, AMD Zen 2/3's AVX2,
# Zen 4's; benchmarks/results/learning_spread_a3c_k4.md) all 15 runs passed a mean return of
# 475 at 80,960-272,240 env steps (seed 0: 80,960 on all three). 400k covers the whole
# spread with room; about 10 s.
def test_a3c_with_four_environments_per_actor_learns_cartpole(tmp_path):
    run = RunConfig(algo="a3c", workers=2, serial=True, seed=0, total_steps=400_000, target_return=475.0,
                    run_dir=str(tmp_path / "k4"))
    summary = Trainer(Config(run=run, algo=algo_config("a3c", run.env, envs_per_actor=4)), quiet=True).train()
    assert summary["reached_target"], summary
    assert summary["steps_to_target"] <= 400_000
