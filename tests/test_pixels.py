"""Every algorithm on image observations: uint8 end to end, a CNN torso, the torch acting
and gradient paths; the MinAtar command line with evaluation and video."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.networks import ConvTorso
from asyncrl.trainer import Trainer

from helpers import CHILD_ENV, REPO, assert_one_line_error, cli

ALGOS = ["a3c", "one-step-q", "one-step-sarsa", "n-step-q", "a2c", "ppo"]


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_on_uint8_images_with_a_cnn(tmp_path, algo):
    """PixelChain-v0: [2, 6, 6] uint8 frames; a serial run of 2 workers. The shared model is
    the MinAtar CNN, its weights move, and the batched learner's slots hold uint8."""
    extra = {"a2c": {"unroll_length": 8, "envs_per_actor": 2},
             "ppo": {"unroll_length": 8, "envs_per_actor": 2, "minibatch_size": 16}}.get(algo, {})
    run = RunConfig(algo=algo, env="PixelChain-v0", workers=2, serial=True, seed=0, total_steps=400,
                    run_dir=str(tmp_path / "run"))
    trainer = Trainer(Config(run=run, algo=algo_config(algo, run.env, **extra)), quiet=True)
    assert trainer.obs.shape == (2, 6, 6) and trainer.obs.dtype == "uint8"
    summary = trainer.train()
    assert summary["global_step"] >= 400 and summary["episodes"] > 0
    model = trainer.shared.model
    assert isinstance(model.torso, ConvTorso)
    assert getattr(model, "value_torso", None) is None  # actor-critics: one CNN torso for both heads
    torch.manual_seed(0)  # as make_shared seeds it: the initial weights
    initial = trainer.algo.build_model(trainer.config, trainer.obs, trainer.action).state_dict()
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert initial.keys() == final.keys()
    assert sum(float((final[k] - initial[k]).abs().sum()) for k in initial) > 0  # it trained
    if trainer.shared.slots is not None:
        assert trainer.shared.slots.obs.dtype == torch.uint8


@pytest.mark.parametrize("args, fragment", [
    (["--env", "toy_envs:PixelChain-v0", "--network", "mlp"], "--network mlp needs flat observations"),
    (["--env", "CartPole-v1", "--network", "nature"], "--network nature needs image observations"),
    (["--env", "toy_envs:PixelChain-v0", "--network", "nature"], "needs images of at least 36x36"),
    (["--network", "resnet"], "--network must be auto, mlp, nature, nature2015 or minatar"),
    (["--repeat-action-probability", "1.5"], "--repeat-action-probability must be in [0, 1]"),
])
def test_network_that_cannot_read_the_observations_is_one_line(tmp_path, args, fragment):
    result = cli(*args, "--run-dir", tmp_path / "never")
    assert_one_line_error(result, fragment)


def test_minatar_run_evaluate_and_video(tmp_path):
    pytest.importorskip("minatar", reason="needs the minatar extra")
    run_dir = tmp_path / "run"
    result = cli("--algo", "a3c", "--env", "MinAtar/Breakout-v1", "--workers", "2", "--total-steps", "3000",
                 "--run-dir", run_dir, "--progress", "none")
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] >= 3000 and summary["episodes"] > 10
    pytest.importorskip("moviepy", reason="needs the video extra")
    video = tmp_path / "clips" / "breakout.mp4"
    out = subprocess.run([sys.executable, "-m", "asyncrl.evaluate", str(run_dir), "--episodes", "2",
                          "--video", str(video)], capture_output=True, text=True, timeout=120, env=CHILD_ENV,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "over 2 episodes" in out.stdout and f"recorded to {video}" in out.stdout
    assert video.stat().st_size > 1000
    wrong = subprocess.run([sys.executable, "-m", "asyncrl.evaluate", str(run_dir), "--video", "x.gif"],
                           capture_output=True, text=True, timeout=120, env=CHILD_ENV, cwd=REPO)
    assert_one_line_error(wrong, "--video must name an .mp4 file")


def test_evaluate_reports_the_unclipped_game_score(tmp_path):
    """An Atari run's evaluation plays whole games without reward clipping: a greedy
    untrained policy in Space Invaders scores multiples of 5 points, not clipped +1s."""
    pytest.importorskip("ale_py", reason="needs the atari extra")
    from asyncrl.evaluate import evaluate

    run_dir = tmp_path / "run"
    result = cli("--algo", "a3c", "--env", "ALE/SpaceInvaders-v5", "--workers", "1", "--total-steps", "200",
                 "--run-dir", run_dir, "--progress", "none", timeout=180)
    assert result.returncode == 0, result.stderr
    scores = evaluate(run_dir, episodes=1)
    assert scores[0] > 0 and scores[0] % 5 == 0 and np.all(np.isfinite(scores))
