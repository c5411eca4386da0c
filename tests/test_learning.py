"""Learning: each algorithm solves CartPole-v1 within a stated env-step budget, fixed seeds;
A3C, A2C and PPO solve Acrobot-v1 with their general defaults."""

import pytest

from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.trainer import Trainer


def _solve(tmp_path, **run_kwargs):
    run = RunConfig(env="CartPole-v1", run_dir=str(tmp_path / "run"), **run_kwargs)
    return Trainer(Config(run=run, algo=algo_config("a3c", run.env)), quiet=True).train()


def test_a3c_serial_seed0_solves_cartpole_within_150k_steps(tmp_path):
    """Serial mode is deterministic: this run reaches 475 at the same step every time
    (90,413 env steps with torch 2.13.0), well inside the 150k budget."""
    summary = _solve(tmp_path, workers=1, serial=True, seed=0, total_steps=150_000)
    assert summary["reached_target"], summary
    assert summary["mean_return"] >= 475.0
    assert summary["steps_to_target"] <= 150_000


# Two Hogwild processes are not deterministic: the same seed reaches 475 at a different step
# each run. Seed 2, 28 runs: 66,600-414,358 env steps, median ~140k, 3 of them past 290k
# (a 300k budget failed about one run in ten); 600k
# covers the observed tail with room.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a3c_two_hogwild_workers_solve_cartpole_within_600k_steps(tmp_path, seed):
    summary = _solve(tmp_path, workers=2, seed=seed, total_steps=600_000)
    assert summary["reached_target"], summary
    assert summary["steps_to_target"] <= 600_000


# Two actor-learners round-robin in one process (--serial): deterministic, so each run
# reaches 475 at the same env step every time (one-step Q seed 0: 115,482; n-step Q
# seed 1: 450,830; one-step Sarsa seed 0: 146,837, with torch 2.13.0). The presets anneal
# the learning rate to 0 at --total-steps, so the budget is part of the recipe.
# About 10-50 s each.
@pytest.mark.slow
@pytest.mark.parametrize("algo, seed, budget", [("one-step-q", 0, 600_000), ("n-step-q", 1, 600_000),
                                                ("one-step-sarsa", 0, 600_000)])
def test_value_based_serial_two_workers_solve_cartpole(tmp_path, algo, seed, budget):
    run = RunConfig(algo=algo, env="CartPole-v1", run_dir=str(tmp_path / "run"), workers=2, serial=True,
                    seed=seed, total_steps=budget)
    summary = Trainer(Config(run=run, algo=algo_config(algo, run.env)), quiet=True).train()
    assert summary["reached_target"], summary
    assert summary["steps_to_target"] <= budget


# The batched learner, 2 actors x 4 envs with the CartPole-v1 presets (the zoo's values),
# serial and synchronous: deterministic, so each run reaches 475 at the same env step
# every time (PPO 64,512, A2C 167,920 with torch 2.13.0). About 7 s and 17 s.
@pytest.mark.parametrize("algo, budget", [("ppo", 100_000), ("a2c", 300_000)])
def test_batched_learner_sync_serial_seed0_solves_cartpole(tmp_path, algo, budget):
    run = RunConfig(algo=algo, env="CartPole-v1", run_dir=str(tmp_path / "run"), workers=2, serial=True,
                    seed=0, total_steps=budget)
    summary = Trainer(Config(run=run, algo=algo_config(algo, run.env)), quiet=True).train()
    assert summary["reached_target"], summary
    assert summary["steps_to_target"] <= budget


# General defaults beyond the presets: Acrobot-v1 has none. Serial runs are deterministic:
# A3C (one worker) reaches -100 at 25,001 env steps, A2C (2 actors x 4 envs) at 76,960, PPO
# (2 actors x 4 envs) at 150,528, with torch 2.13.0. About 3, 5 and 8 s.
@pytest.mark.parametrize("algo, workers, budget", [("a3c", 1, 100_000), ("a2c", 2, 200_000), ("ppo", 2, 300_000)])
def test_general_defaults_solve_acrobot_serial_seed0(tmp_path, algo, workers, budget):
    run = RunConfig(algo=algo, env="Acrobot-v1", run_dir=str(tmp_path / "run"), workers=workers, serial=True,
                    seed=0, total_steps=budget)
    config = Config(run=run, algo=algo_config(algo, run.env))
    assert config.algo == type(config.algo)()  # no preset: the general defaults
    summary = Trainer(config, quiet=True).train()
    assert summary["reached_target"] and summary["target_return"] == -100.0, summary
    assert summary["steps_to_target"] <= budget


# MinAtar Breakout from pixels (the minatar extra): A3C with its MinAtar settings (the
# general defaults: t_max 20, one CNN torso for both heads), two actor-learners round-robin
# in one process, so the run is deterministic: a mean return of 4 (a random policy scores
# about 0.5) at 72,384 env steps with torch 2.13.0. About 45 s.
MINATAR_SCORE, MINATAR_BUDGET = 4.0, 150_000

@pytest.mark.slow
def test_a3c_serial_seed0_learns_minatar_breakout(tmp_path):
    pytest.importorskip("minatar", reason="needs the minatar extra")
    run = RunConfig(algo="a3c", env="MinAtar/Breakout-v1", run_dir=str(tmp_path / "run"), workers=2, serial=True,
                    seed=0, total_steps=MINATAR_BUDGET, target_return=MINATAR_SCORE)
    summary = Trainer(Config(run=run, algo=algo_config("a3c", run.env)), quiet=True).train()
    assert summary["reached_target"], summary
    assert summary["steps_to_target"] <= MINATAR_BUDGET


@pytest.mark.slow
@pytest.mark.parametrize("algo, workers, budget, target", [
    # the Pendulum presets; deterministic (--serial): A3C reaches -300 at 328,600 env steps,
    # PPO -250 at 65,536
    ("a3c", 1, 400_000, -300.0),
    ("ppo", 2, 300_000, -250.0),
])
def test_gaussian_policy_serial_seed0_learns_pendulum(tmp_path, algo, workers, budget, target):
    run = RunConfig(algo=algo, env="Pendulum-v1", run_dir=str(tmp_path / "run"), workers=workers, serial=True,
                    seed=0, total_steps=budget, target_return=target)
    summary = Trainer(Config(run=run, algo=algo_config(algo, run.env)), quiet=True).train()
    assert summary["reached_target"] and summary["steps_to_target"] <= budget, summary
    assert summary["mean_return_at_target"] >= target


@pytest.mark.slow
@pytest.mark.parametrize("algo, budget", [
    # the no-velocity presets with --lstm; deterministic (--serial, seed 0): A3C reaches 475
    # at 664,105 env steps, PPO at 431,360
    ("a3c", 1_000_000),
    ("ppo", 500_000),
])
def test_lstm_serial_seed0_solves_cartpole_without_velocities(tmp_path, algo, budget):
    env = "asyncrl/CartPoleNoVelocity-v1"
    run = RunConfig(algo=algo, env=env, run_dir=str(tmp_path / "run"), workers=2, serial=True, seed=0,
                    total_steps=budget)
    summary = Trainer(Config(run=run, algo=algo_config(algo, env, lstm=True)), quiet=True).train()
    assert summary["target_return"] == 475.0
    assert summary["reached_target"] and summary["steps_to_target"] <= budget, summary


@pytest.mark.slow
@pytest.mark.parametrize("algo, env, budget, target, window", [
    # the presets, two actors and the learner round-robin in one process (--serial, seed 0):
    # deterministic, so each reaches its target at the same env step every time (torch
    # 2.13.0): SAC at 4,809 env steps, TD3 16,307, DDPG 13,706, DQN 70,952, REINFORCE
    # 260,305; 1-3 minutes each
    ("sac", "Pendulum-v1", 20_000, -200.0, 10),
    ("td3", "Pendulum-v1", 30_000, -200.0, 10),
    ("ddpg", "Pendulum-v1", 50_000, -250.0, 10),
    ("dqn", "CartPole-v1", 150_000, 475.0, 100),
    ("reinforce", "CartPole-v1", 500_000, 475.0, 100),
])
def test_off_policy_learners_and_reinforce_serial_seed0(tmp_path, algo, env, budget, target, window):
    run = RunConfig(algo=algo, env=env, run_dir=str(tmp_path / "run"), workers=2, serial=True, seed=0,
                    total_steps=budget, target_return=target, return_window=window)
    summary = Trainer(Config(run=run, algo=algo_config(algo, env)), quiet=True).train()
    assert summary["reached_target"] and summary["steps_to_target"] <= budget, summary
    assert summary["mean_return_at_target"] >= target
