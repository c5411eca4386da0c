"""Configuration: flags, presets, validation, round trip."""

import pytest

from asyncrl.algos.a3c import A3CConfig
from asyncrl.algos.ppo import PPOConfig
from asyncrl.config import CliError, Config, RunConfig, algo_config, parse_args


def test_flags_map_to_fields():
    config = parse_args(["--workers", "3", "--t-max", "7", "--lr", "0.01", "--hidden-sizes", "32", "16",
                         "--target-return", "inf", "--serial"])
    assert config.run.workers == 3 and config.run.serial is True
    assert config.run.target_return == float("inf")
    assert config.algo.t_max == 7 and config.algo.lr == 0.01 and config.algo.hidden_sizes == (32, 16)


def test_preset_applies_only_where_no_flag_is_given():
    cartpole = parse_args(["--algo", "ppo", "--env", "CartPole-v1"])
    assert cartpole.algo.unroll_length == 32 and cartpole.algo.gamma == 0.98  # rl-baselines3-zoo's
    overridden = parse_args(["--algo", "ppo", "--env", "CartPole-v1", "--unroll-length", "64"])
    assert overridden.algo.unroll_length == 64 and overridden.algo.gamma == 0.98
    other = parse_args(["--algo", "ppo", "--env", "Acrobot-v1"])
    assert other.algo == PPOConfig()  # no preset: the general defaults
    a3c = parse_args(["--env", "CartPole-v1"])
    assert a3c.algo.shared_torso is None and a3c.algo.entropy_coef == 0.0  # None: one torso per head for an MLP
    assert parse_args(["--env", "CartPole-v1", "--entropy-coef", "0.01"]).algo.entropy_coef == 0.01
    general = parse_args(["--env", "Acrobot-v1"])
    assert general.algo == A3CConfig() and general.algo.shared_torso is None and general.algo.entropy_coef == 0.01
    pixels = parse_args(["--env", "ALE/Pong-v5"])  # the Atari preset: the paper's t_max
    assert pixels.algo.t_max == 5 and pixels.algo.network == "auto"
    assert parse_args(["--algo", "ppo", "--env", "MinAtar/Breakout-v1"]).algo.lr_anneal is True
    paper = parse_args(["--env", "Acrobot-v1", "--shared-torso"])
    assert paper.algo.shared_torso is True


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be >= 1"),
    (["--total-steps", "0"], "--total-steps must be > 0"),
    (["--max-seconds", "-1"], "--max-seconds must be > 0"),
    (["--entropy-coef", "-1"], "--entropy-coef must be >= 0"),
    (["--optimizer", "sgd"], "--optimizer must be rmsprop or adam"),
    (["--hidden-sizes", "0"], "--hidden-sizes must be positive"),
    (["--start-method", "thread"], "--start-method must be"),
    (["--target-return", "nan"], "--target-return must be a number"),
])
def test_out_of_range_values_raise_cli_error(argv, message):
    with pytest.raises(CliError, match=message.replace("[", r"\[")):
        parse_args(argv)


def test_round_trip_through_dict():
    config = Config(run=RunConfig(workers=4, seed=9), algo=algo_config("a3c", "CartPole-v1", t_max=5))
    assert Config.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="malformed config"):
        Config.from_dict({"run": {}})
