"""The environment factory: Atari and MinAtar pipelines, reward clipping with the game's
own score, and one-line errors for a missing extra or a network that cannot read the
observations. Tests that need ROMs or MinAtar skip only where the extra is absent."""

import sys

import gymnasium as gym
import numpy as np
import pytest

from asyncrl.distributions import ActionSpec
from asyncrl.envs import ClipRewardKeepScore, EnvError, EnvOptions, check_spaces, game_score, make_env, obs_spec
from asyncrl.networks import ObsSpec


def test_obs_spec_reads_vectors_and_images_and_rejects_the_rest():
    assert obs_spec(gym.spaces.Box(-1, 1, (4,), np.float64)) == ObsSpec((4,), "float32", 1.0)
    assert obs_spec(gym.spaces.Box(0, 255, (2, 6, 6), np.uint8)) == ObsSpec((2, 6, 6), "uint8", 255.0)
    assert obs_spec(gym.spaces.Box(0, 1, (6, 6), np.uint8)) is None
    assert obs_spec(gym.spaces.Discrete(3)) is None
    env = make_env("PixelChain-v0", seed=0)
    assert check_spaces(env, "a3c") == (ObsSpec((2, 6, 6), "uint8", 255.0), ActionSpec(n=2))


def test_clip_reward_keeps_the_game_score():
    class Jackpot(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
        action_space = gym.spaces.Discrete(1)

        def reset(self, *, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, action):
            return np.zeros(1, np.float32), -7.5, False, False, {}

    _, reward, _, _, info = ClipRewardKeepScore(Jackpot()).step(0)
    assert reward == -1.0 and info["score"] == -7.5 and game_score(reward, info) == -7.5
    assert game_score(0.25, {}) == 0.25  # no clipping: the reward is the score


@pytest.mark.parametrize("family, env_id, module", [("atari", "ALE/Pong-v5", "ale_py"),
                                                    ("minatar", "MinAtar/Breakout-v1", "minatar")])
def test_missing_extra_is_one_line_naming_the_pip_install(family, env_id, module, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    with pytest.raises(EnvError, match=rf'pip install -e "\.\[{family}\]"'):
        make_env(env_id)
    from asyncrl.run import main

    assert main(["--env", env_id, "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'pip install -e ".[{family}]"' in err[0]


def test_minatar_frames_are_channels_first_uint8():
    pytest.importorskip("minatar", reason="needs the minatar extra")
    env = make_env("MinAtar/Breakout-v1", seed=0)
    spec, actions = check_spaces(env, "a3c")
    assert spec == ObsSpec((4, 10, 10), "uint8", 1.0) and actions == ActionSpec(n=3)
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()  # [10, 10, 4] bool
    assert obs.dtype == np.uint8 and obs.shape == (4, 10, 10)
    np.testing.assert_array_equal(obs, raw.transpose(2, 0, 1).astype(np.uint8))
    assert obs.sum() > 0


def test_atari_pipeline_is_the_papers():
    pytest.importorskip("ale_py", reason="needs the atari extra")
    env = make_env("ALE/Pong-v5", seed=0, options=EnvOptions(repeat_action_probability=0.0))
    spec, actions = check_spaces(env, "a3c")
    assert spec == ObsSpec((4, 84, 84), "uint8", 255.0) and actions == ActionSpec(n=6)
    base = env.unwrapped
    assert base._frameskip == 1 and base.ale.getFloat("repeat_action_probability") == 0.0
    preprocessing = env.env.env  # ClipRewardKeepScore(FrameStackObservation(AtariPreprocessing))
    assert type(preprocessing).__name__ == "AtariPreprocessing"
    assert preprocessing.frame_skip == 4 and preprocessing.noop_max == 30
    assert not preprocessing.terminal_on_life_loss
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    sticky = make_env("ALE/Pong-v5", options=EnvOptions(repeat_action_probability=0.25, terminal_on_life_loss=True))
    assert sticky.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
    assert type(sticky.env.env).__name__ == "EpisodicLife"  # (the game goes on after a lost life)
    assert not sticky.env.env.env.terminal_on_life_loss


def test_atari_training_clips_rewards_and_reports_the_game_score():
    """Space Invaders pays 5-30 points an invader: training sees +1, the episode's reported
    return (the actor-learner's statistics) is the game score; evaluation envs are unclipped."""
    pytest.importorskip("ale_py", reason="needs the atari extra")
    from asyncrl import registry
    from asyncrl.config import Config, RunConfig, algo_config
    from asyncrl.shared import GlobalCounters

    env_id = "ALE/SpaceInvaders-v5"
    config = Config(run=RunConfig(algo="a3c", env=env_id, workers=1, serial=True, seed=0),
                    algo=algo_config("a3c", env_id, envs_per_actor=1))  # (the preset's 16: one env here)
    module = registry.get("a3c")
    spec, actions = check_spaces(make_env(env_id), "a3c")
    learner = module.actor(0, config, module.make_shared(config, spec, actions), GlobalCounters(1))
    seen = {"clipped": 0.0, "score": 0.0}
    step = learner.env.step

    def recording_step(action):
        out = step(action)
        seen["clipped"] += out[1]
        seen["score"] += out[4]["score"]
        assert -1.0 <= out[1] <= 1.0
        return out

    learner.env.step = recording_step
    while not learner.stats.episodes:
        learner.update()
    (episode_return, _, _), = learner.stats.episodes
    assert episode_return == seen["score"] > seen["clipped"] > 0
    raw = make_env(env_id, seed=0, train=False)
    raw.reset(seed=0)
    rewards = [raw.step(raw.action_space.sample())[1] for _ in range(400)]
    assert max(rewards) >= 5  # unclipped


# -- every observation space users bring ------------------------------------------------


def test_channels_last_images_are_transposed_once_and_odd_layouts_refused():
    from asyncrl.envs import image_layout

    assert [image_layout(s) for s in ((4, 84, 84), (96, 96, 3), (84, 84, 1), (3, 8, 3), (8, 3, 8))] == \
        ["chw", "hwc", "hwc", "unknown", "unknown"]
    with pytest.raises(EnvError, match=r"OddImages-v0: cannot tell the channel axis of images \(3, 8, 3\)"):
        make_env("OddImages-v0", seed=0)


def test_car_racing_torso_sees_three_channel_images(tmp_path):
    pytest.importorskip("Box2D", reason="needs the box2d extra")
    from asyncrl.checkpoint import load_checkpoint
    from asyncrl.config import Config, RunConfig, algo_config
    from asyncrl.trainer import Trainer

    env = make_env("CarRacing-v3", seed=0)
    raw = env.unwrapped.observation_space
    obs, _ = env.reset(seed=0)
    spec, _ = check_spaces(env, "ppo")
    assert raw.shape == (96, 96, 3) and spec == ObsSpec((3, 96, 96), "uint8", 255.0) and obs.shape == (3, 96, 96)
    # the same frame, channels first: channel c of ours is the env's [..., c]
    inner = make_env("CarRacing-v3", seed=0)
    frame, _ = inner.unwrapped.reset(seed=0)
    np.testing.assert_array_equal(obs, np.transpose(frame, (2, 0, 1)))
    run = RunConfig(algo="ppo", env="CarRacing-v3", workers=1, serial=True, seed=0, total_steps=256,
                    target_return=float("inf"), run_dir=str(tmp_path / "run"))
    summary = Trainer(Config(run=run, algo=algo_config("ppo", run.env, unroll_length=64, minibatch_size=64)),
                      quiet=True).train()
    assert summary["global_step"] == 256 and summary["updates"] >= 1
    first_conv = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]["torso.convs.0.weight"]
    assert first_conv.shape == (16, 3, 8, 8)  # the nature torso, reading (3, 96, 96) images


@pytest.mark.parametrize("env_id, dim, algo", [("FrozenLake-v1", 16, "a3c"), ("Blackjack-v1", 32 + 11 + 2, "ppo"),
                                              ("DictChain-v0", 1 + 4, "n-step-q")])
def test_discrete_tuple_and_dict_observations_are_flattened(env_id, dim, algo):
    env = make_env(env_id, seed=0)
    obs, _ = env.reset(seed=0)
    spec, _ = check_spaces(env, algo)
    assert spec == ObsSpec((dim,), "float32", 1.0) and obs.dtype == np.float32 and obs.shape == (dim,)
    if env_id == "FrozenLake-v1":  # one-hot of the start cell
        assert obs.tolist() == [1.0] + [0.0] * 15
    if env_id == "DictChain-v0":  # Dict keys sorted: bias, then position one-hot
        assert obs.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_a_dict_holding_an_image_is_one_line():
    with pytest.raises(EnvError, match="ImageDictChain-v0 has a Dict observation space holding an image"):
        make_env("ImageDictChain-v0", seed=0)


def test_episodic_life_ends_the_learners_episode_and_keeps_the_game():
    """Space Invaders, 3 lives, random play: each lost life is a terminal step for the
    learner, the next reset continues the same game (lives 2, then 1, frames go on), and
    only the lost game resets it; game_over counts one episode per game."""
    pytest.importorskip("ale_py", reason="needs the atari extra")
    from asyncrl.envs import game_over

    env = make_env("ALE/SpaceInvaders-v5", seed=0, options=EnvOptions(terminal_on_life_loss=True))
    env.reset(seed=0)
    ale = env.unwrapped.ale
    assert ale.lives() == 3
    lives_at_ends, games, frames = [], 0, ale.getEpisodeFrameNumber()
    while games < 2:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            lives_at_ends.append(ale.lives())
            games += game_over(terminated, truncated, info)
            assert info.get("life_lost", False) == (not game_over(terminated, truncated, info))
            env.reset()
            if not game_over(terminated, truncated, info):  # the same game: frames go on
                assert ale.getEpisodeFrameNumber() > frames and ale.lives() == lives_at_ends[-1]
            else:
                assert ale.lives() == 3
            frames = ale.getEpisodeFrameNumber()
    assert lives_at_ends == [2, 1, 0, 2, 1, 0]


def test_life_loss_runs_report_whole_games_and_evaluate_plays_whole_games(tmp_path):
    """A3C with --terminal-on-life-loss: episodes.csv holds one row per game (the learner
    saw three terminal steps per game); evaluate plays whole games with the run's policy
    whatever the training option (before: one life each, about half the score)."""
    pytest.importorskip("ale_py", reason="needs the atari extra")
    import csv

    import torch

    from asyncrl import registry
    from asyncrl.checkpoint import load_checkpoint
    from asyncrl.config import Config, RunConfig, algo_config
    from asyncrl.evaluate import evaluate
    from asyncrl.trainer import Trainer

    run = RunConfig(algo="a3c", env="ALE/SpaceInvaders-v5", workers=1, serial=True, seed=0, total_steps=3_000,
                    terminal_on_life_loss=True, target_return=float("inf"), run_dir=str(tmp_path / "run"))
    Trainer(Config(run=run, algo=algo_config("a3c", run.env, envs_per_actor=1)), quiet=True).train()
    with open(tmp_path / "run" / "episodes.csv") as f:
        episodes = list(csv.DictReader(f))
    lengths = [int(e["length"]) for e in episodes]
    # whole games of 3 lives: random play's games last 284-740 agent steps (6 seeds), a single
    # life 91-269 (mean 166)
    assert len(lengths) >= 2 and sum(lengths) / len(lengths) > 250, lengths
    returns = evaluate(tmp_path / "run", episodes=2, seed=7)
    # the reference: the checkpoint's greedy policy on the whole-game env
    data = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    config = Config.from_dict(data["config"])
    env = make_env("ALE/SpaceInvaders-v5", 7, train=False)
    spec, action = check_spaces(env, "a3c")
    algo = registry.get("a3c")
    model = algo.build_model(config, spec, action)
    model.load_state_dict(data["model"])
    want = []
    with torch.no_grad():
        for i in range(2):
            obs, _ = env.reset(seed=7 + i)
            total, done = 0.0, False
            while not done:
                a, _ = algo.greedy_action(model, torch.from_numpy(np.asarray(obs)))
                obs, reward, terminated, truncated, _ = env.step(a)
                total, done = total + reward, terminated or truncated
            want.append(total)
    assert returns.tolist() == want
