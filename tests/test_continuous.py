"""Continuous actions: Gaussian policies in A3C, A2C and PPO, action clipping, and the
normalisation statistics that the learner keeps and publishes with the weights."""

import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers.utils import RunningMeanStd

from asyncrl.checkpoint import load_checkpoint
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.distributions import ActionSpec, DiagGaussian
from asyncrl.envs import EnvError, check_spaces, make_env
from asyncrl.losses import actor_critic_loss
from asyncrl.networks import ObsSpec
from asyncrl.shared import GlobalCounters
from asyncrl.trainer import Trainer

PENDULUM_ACTIONS = ActionSpec.box([-2.0], [2.0])


def _config(algo, env="Pendulum-v1", run=None, **overrides):
    run = RunConfig(**{"algo": algo, "env": env, "workers": 2, "seed": 0, "serial": True, **(run or {})})
    return Config(run=run, algo=algo_config(algo, env, **overrides))


def test_box_actions_are_clipped_by_the_env_and_keep_their_bounds():
    env = make_env("Pendulum-v1", seed=0)
    assert isinstance(env, gym.wrappers.ClipAction) and np.isinf(env.action_space.high).all()
    assert check_spaces(env, "ppo") == (ObsSpec((3,)), PENDULUM_ACTIONS)
    env.reset(seed=0)
    seen = []
    inner_step = env.env.step
    env.env.step = lambda action: (seen.append(np.array(action)), inner_step(action))[1]
    env.step(np.array([7.5], np.float32))
    env.step(np.array([-0.5], np.float32))
    assert [a.tolist() for a in seen] == [[2.0], [-0.5]]
    with pytest.raises(EnvError, match="needs a discrete action space.*continuous actions"):
        check_spaces(env, "n-step-q")


def test_missing_mujoco_names_its_extra(monkeypatch):
    def missing(*args, **kwargs):
        raise gym.error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`')

    monkeypatch.setattr(gym, "make", missing)
    with pytest.raises(EnvError, match=r'HalfCheetah-v5 needs the mujoco extra .*pip install -e "\.\[mujoco\]"'):
        make_env("HalfCheetah-v5")


def test_a3c_gaussian_loss_scores_the_unclipped_sample():
    """A3C's update on a Gaussian segment: the loss of ``actor_critic_loss`` equals a slow
    reference built from ``torch.distributions.Normal`` of the sample itself, beyond the
    action bounds."""
    from asyncrl.algos import a3c

    config = _config("a3c", run={"workers": 1})
    shared = a3c.make_shared(config, ObsSpec((3,)), PENDULUM_ACTIONS)
    learner = a3c.ActorLearner(0, config, shared, GlobalCounters(1))
    with torch.no_grad():  # a mean far outside [-2, 2]: every action the env gets is clipped
        learner.local.policy.bias.copy_(torch.tensor([6.0, 0.0]))
        shared.model.policy.bias.copy_(torch.tensor([6.0, 0.0]))
    seen = []
    inner = learner.env.env.step
    learner.env.env.step = lambda action: (seen.append(np.array(action)), inner(action))[1]
    n = learner.update()
    actions = learner.envs._actions[:n, 0]  # [n, 1] of the one environment
    assert n == 10 and (actions > 2.0).all()  # sampled unclipped (t_max 10 in the Pendulum preset)
    assert np.allclose([a[0] for a in seen], 2.0)  # clipped when stepping the env
    obs = torch.from_numpy(learner.envs._obs[:n, 0])
    model = learner.local
    params, values = model(obs)
    mean, log_std = model.dist.mean_log_std(params)
    normal = torch.distributions.Normal(mean[:, 0], log_std[:, 0].exp())
    returns, advantages = torch.randn(n), torch.randn(n)
    loss, metrics = actor_critic_loss(params.unsqueeze(1), values.unsqueeze(1), torch.from_numpy(actions)[:, None, None],
                                      returns[:, None], 0.5, 1e-4, advantages[:, None], dist=model.dist)
    want = (-(normal.log_prob(torch.from_numpy(actions)) * advantages).sum() + 0.5 * ((returns - values) ** 2).sum()
            - 1e-4 * normal.entropy().sum())
    torch.testing.assert_close(loss, want)
    learner.close()


@pytest.mark.parametrize("algo", ["a3c", "a2c", "ppo"])
def test_every_actor_critic_trains_and_evaluates_on_box_actions(tmp_path, algo):
    from asyncrl.evaluate import evaluate

    small = {"unroll_length": 64, "minibatch_size": 64, "epochs": 2} if algo == "ppo" else {}
    run = RunConfig(algo=algo, env="Pendulum-v1", workers=2, seed=0, serial=True, total_steps=2_000,
                    target_return=math.inf, run_dir=str(tmp_path / algo))
    trainer = Trainer(Config(run=run, algo=algo_config(algo, run.env, **small)), quiet=True)
    torch.manual_seed(0)  # as make_shared
    initial = trainer.algo.build_model(trainer.config, trainer.obs, trainer.action).state_dict()
    summary = trainer.train()
    assert summary["stop_reason"] == "total_steps" and summary["global_step"] >= 2_000
    assert summary["episodes"] >= 8  # 200-step episodes
    assert isinstance(trainer.shared.model.dist, DiagGaussian)
    state = load_checkpoint(tmp_path / algo / "checkpoint.pt")["model"]
    assert any(not torch.equal(state[k], initial[k]) for k in initial if "normalizer" not in k)
    returns = evaluate(tmp_path / algo, episodes=2)
    assert returns.shape == (2,) and (-16.3 * 200 <= returns).all() and (returns <= 0).all()


def test_learner_keeps_one_set_of_statistics_and_publishes_it_with_the_weights(monkeypatch):
    """PPO with --normalize-obs --normalize-reward, 2 actors: the published statistics are
    exactly those of every raw observation and discounted return the actors saw (merged
    by the learner), and the observations of each batch were normalised with the
    statistics published with the policy that acted."""
    import asyncrl.algos.batched as batched
    from asyncrl.algos import ppo

    sent = []
    real = batched.rollout_moments
    monkeypatch.setattr(batched, "rollout_moments",
                        lambda raw, ret: (sent.append((raw.copy(), ret.copy())), real(raw, ret))[1])
    config = _config("ppo", unroll_length=16, envs_per_actor=2, minibatch_size=32, epochs=1, normalize_obs=True,
                     normalize_reward=True, gamma=0.95)
    shared = ppo.make_shared(config, ObsSpec((3,)), PENDULUM_ACTIONS)
    counters = GlobalCounters(3)
    actors = [ppo.Actor(i, config, shared, counters) for i in range(2)]
    learner = ppo.Learner(2, config, shared, counters)
    trained = []

    def learn(cfg, updater, batch, progress, rng):
        norm = learner.model.normalizer  # the statistics published with the acting policy
        trained.append((batch["obs"][:16].clone(), norm.obs_mean.clone(), norm.obs_var.clone()))
        return ppo.learn(cfg, updater, batch, progress, rng)

    learner.learn = learn
    for _ in range(4):
        for actor in actors:
            assert actor.update() == 32
        learner.update()
    norm = shared.model.normalizer
    raw = np.concatenate([r for r, _ in sent])  # [4 batches x 2 actors x 32, 3]
    obs_rms, ret_rms = RunningMeanStd(shape=(3,)), RunningMeanStd(shape=())
    obs_rms.update(raw)
    ret_rms.update(np.concatenate([g for _, g in sent]))
    assert norm.obs_count.item() == pytest.approx(256 + 1e-4) and norm.return_count.item() == pytest.approx(256 + 1e-4)
    np.testing.assert_allclose(norm.obs_mean.numpy(), obs_rms.mean, rtol=1e-9)
    np.testing.assert_allclose(norm.obs_var.numpy(), obs_rms.var, rtol=1e-9)
    assert norm.return_var.item() == pytest.approx(ret_rms.var, rel=1e-9)
    assert abs(norm.obs_mean[2].item()) < 8 and 0 < norm.obs_var[2].item()  # angular velocity: a real spread
    for k, (obs, mean, var) in enumerate(trained):
        for j in range(2):  # the rollouts of actor j: its 2 environments
            raw_rollout = sent[2 * k + j][0].reshape(16, 2, 3)
            want = np.clip((raw_rollout - mean.numpy()) / np.sqrt(var.numpy() + 1e-8), -10, 10)
            np.testing.assert_allclose(obs[:, 2 * j:2 * j + 2].numpy(), want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(trained[0][1], trained[-1][1])  # the statistics moved with the publications
    for actor in actors:
        actor.close()


def test_statistics_survive_checkpoint_and_resume_and_reach_evaluate(tmp_path, monkeypatch):
    """Every trained env step is counted once in the statistics, across a resume, and
    ``evaluate`` normalises with the checkpoint's."""
    import asyncrl.evaluate as evaluate_module

    overrides = {"unroll_length": 32, "envs_per_actor": 2, "minibatch_size": 64, "epochs": 1, "normalize_obs": True,
                 "normalize_reward": True}
    run = RunConfig(algo="ppo", env="Pendulum-v1", workers=2, seed=0, serial=True, total_steps=1_024,
                    target_return=math.inf, run_dir=str(tmp_path / "run"))
    Trainer(Config(run=run, algo=algo_config("ppo", run.env, **overrides)), quiet=True).train()
    first = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert first["normalizer.obs_count"].item() == pytest.approx(1_024 + 1e-4)
    resumed = Trainer(Config(run=RunConfig(**{**run.__dict__, "total_steps": 2_048, "resume": str(tmp_path / "run")}),
                             algo=algo_config("ppo", run.env, **overrides)), quiet=True)
    resumed.train()
    second = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert second["normalizer.obs_count"].item() == pytest.approx(2_048 + 1e-4)
    assert not torch.equal(first["normalizer.obs_mean"], second["normalizer.obs_mean"])
    loaded = []
    real_load = evaluate_module.NormalizedEnv.load
    monkeypatch.setattr(evaluate_module.NormalizedEnv, "load",
                        lambda self, normalizer: (loaded.append(normalizer.obs_mean.clone()), real_load(self, normalizer)))
    evaluate_module.evaluate(tmp_path / "run", episodes=1)
    assert len(loaded) == 1 and torch.equal(loaded[0], second["normalizer.obs_mean"])


def test_normalisation_needs_flat_observations(tmp_path):
    run = RunConfig(algo="ppo", env="tests.toy_envs:PixelChain-v0", workers=1, run_dir=str(tmp_path / "x"))
    with pytest.raises(EnvError, match="need flat observations"):
        Trainer(Config(run=run, algo=algo_config("ppo", run.env, normalize_obs=True)), quiet=True)


def test_mujoco_run_and_video(tmp_path):
    """A3C on InvertedPendulum-v5 (MuJoCo), then evaluate with a video."""
    pytest.importorskip("mujoco", reason="needs the mujoco extra")
    pytest.importorskip("moviepy", reason="needs the video extra")
    from asyncrl.evaluate import main

    run = RunConfig(algo="a3c", env="InvertedPendulum-v5", workers=1, seed=0, serial=True, total_steps=500,
                    target_return=math.inf, run_dir=str(tmp_path / "run"))
    Trainer(Config(run=run, algo=algo_config("a3c", run.env)), quiet=True).train()
    video = tmp_path / "clip.mp4"
    assert main([str(tmp_path / "run"), "--episodes", "1", "--video", str(video)]) == 0
    assert video.stat().st_size > 1000


def test_box2d_continuous_lunar_lander_runs_with_its_preset(tmp_path):
    pytest.importorskip("Box2D", reason="needs the box2d extra")
    run = RunConfig(algo="ppo", env="LunarLanderContinuous-v3", workers=1, seed=0, serial=True, total_steps=1_024,
                    target_return=math.inf, run_dir=str(tmp_path / "run"))
    config = Config(run=run, algo=algo_config("ppo", run.env))
    assert config.algo.normalize_obs and config.algo.normalize_reward and config.algo.unroll_length == 1024
    summary = Trainer(config, quiet=True).train()
    assert summary["global_step"] == 1_024 and summary["updates"] == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]["normalizer.obs_count"].item() == \
        pytest.approx(1_024 + 1e-4)


def test_mujoco_writes_no_log_file_into_the_working_directory(tmp_path):
    """Gymnasium's HalfCheetah model makes MuJoCo warn (a deprecated attribute); MuJoCo
    would log it to MUJOCO_LOG.TXT in the working directory."""
    pytest.importorskip("mujoco", reason="needs the mujoco extra")
    code = ("from asyncrl.envs import make_env\n"
            "env = make_env('HalfCheetah-v5', 0)\nenv.reset(seed=0)\nenv.step(env.action_space.sample())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert "deprecated" in proc.stderr  # the warning still reaches the console
    assert list(tmp_path.iterdir()) == []
