"""The environment factory: Atari and MinAtar pipelines, reward clipping with the game's
own score, and one-line errors for a missing extra or a network that cannot read the
observations. Tests that need ROMs or MinAtar skip only where the extra is absent."""

import sys

import gymnasium as gym
import numpy as np
import pytest

import toy_envs  # noqa: F401  (registers PixelChain-v0)
from asyncrl.envs import ClipRewardKeepScore, EnvError, EnvOptions, check_spaces, game_score, make_env, obs_spec
from asyncrl.networks import ObsSpec
from asyncrl.distributions import ActionSpec


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
    assert sticky.env.env.terminal_on_life_loss


def test_atari_training_clips_rewards_and_reports_the_game_score():
    """Space Invaders pays 5-30 points an invader: training sees +1, the episode's reported
    return (the actor-learner's statistics) is the game score; evaluation envs are unclipped."""
    pytest.importorskip("ale_py", reason="needs the atari extra")
    from asyncrl.algos import algo_module
    from asyncrl.config import Config, RunConfig, algo_config
    from asyncrl.shared import GlobalCounters

    env_id = "ALE/SpaceInvaders-v5"
    config = Config(run=RunConfig(algo="a3c", env=env_id, workers=1, serial=True, seed=0),
                    algo=algo_config("a3c", env_id))
    module = algo_module("a3c")
    spec, actions = check_spaces(make_env(env_id), "a3c")
    learner = module.ActorLearner(0, config, module.make_shared(config, spec, actions), GlobalCounters(1))
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
