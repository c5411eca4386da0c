"""``python -m asyncrl.run`` and ``python -m asyncrl.evaluate`` as a user runs them."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from helpers import CHILD_ENV, REPO, assert_one_line_error, cli


def test_a3c_run_writes_every_output_and_evaluate_reads_it(tmp_path):
    run_dir = tmp_path / "run"
    result = cli("--workers", 2, "--total-steps", 5000, "--target-return", "inf", "--seed", 1,
                 "--run-dir", run_dir, "--progress", "plain", "--log-interval", 0.3)
    assert result.returncode == 0, result.stderr
    assert "total_steps: T=" in result.stdout and "2 workers on" in result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["workers"] == 2 and config["algo"]["t_max"] == 20
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] >= 5000 and summary["stop_reason"] == "total_steps"
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 2
    for name in ("checkpoint.pt", "learning_curve.png"):
        assert (run_dir / name).is_file()
    evaluation = cli(run_dir, "--episodes", 3, module="asyncrl.evaluate")
    assert evaluation.returncode == 0, evaluation.stderr
    # the greedy policy of the saved model, played here by hand with evaluate's seeds
    import gymnasium as gym
    import numpy as np

    from asyncrl.checkpoint import load_checkpoint
    from asyncrl.networks import build_actor_critic

    model = build_actor_critic(4, 2, tuple(config["algo"]["hidden_sizes"]), config["algo"]["shared_torso"])
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    returns = []
    env = gym.make("CartPole-v1")
    for episode in range(3):
        obs, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(model(torch.as_tensor(obs, dtype=torch.float32))[0].argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    want = f"{np.mean(returns):.2f} ± {np.std(returns):.2f} over 3 episodes (min {min(returns):.1f}, max {max(returns):.1f})"
    assert evaluation.stdout.strip() == want


def test_help_documents_every_flag_with_default():
    result = cli("--help")
    assert result.returncode == 0
    for flag in ("--algo", "--env", "--workers", "--seed", "--total-steps", "--target-return", "--lr",
                 "--t-max", "--gamma", "--entropy-coef", "--run-dir"):
        assert flag in result.stdout
    assert result.stdout.count("(default:") >= 20
    # each flag states its default once
    entries = re.split(r"\n(?=  -)", result.stdout.split("options:", 1)[1])  # one per flag, with its help
    twice = [e.split()[0] for e in entries if e.count("default:") > 1]
    assert twice == [], twice
    assert "--address ADDRESS" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--env", "NoSuchEnv-v0"], "cannot make environment 'NoSuchEnv-v0'"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "-3"], "--workers must be >= 1"),
        (["--t-max", "0"], "--t-max must be >= 1, got 0"),
        (["--lr", "-0.001"], "--lr must be >= 0"),
        (["--env", "Pendulum-v1", "--algo", "one-step-q"], "needs a discrete action space"),
        (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
        (["--workers", "two"], "invalid int value: 'two'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--algo", "no-such-algo"], "--algo must be one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, fragment):
    result = cli(*args, "--run-dir", tmp_path / "never")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "never").exists()


def test_evaluate_missing_and_corrupt_checkpoints(tmp_path):
    assert_one_line_error(cli(tmp_path / "nope", module="asyncrl.evaluate"), "no checkpoint at")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint")
    assert_one_line_error(cli(tmp_path / "bad", module="asyncrl.evaluate"), "truncated, corrupt")
    assert_one_line_error(cli(tmp_path / "bad", "--episodes", 0, module="asyncrl.evaluate"),
                          "--episodes must be >= 1")


def _processes_with(marker):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_worker_whose_env_raises_stops_the_run_once_without_orphans(tmp_path):
    run_dir = tmp_path / "faulty-run-marker"
    start = time.monotonic()
    result = cli("--env", "toy_envs:FaultyCartPole-v0", "--workers", 3, "--total-steps", 10**7,
                 "--run-dir", run_dir, "--progress", "none", "--on-worker-failure", "abort", timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    # one traceback (the first failing worker's), then the one-line summary naming the error
    assert result.stderr.count("RuntimeError: simulated environment failure") == 2
    assert result.stderr.count("Traceback") == 1
    assert "asyncrl.run: error: worker" in result.stderr.strip().splitlines()[-1]
    assert elapsed < 30
    assert (run_dir / "checkpoint.pt").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "worker_failed"
    time.sleep(0.5)
    assert _processes_with(str(run_dir)) == []


@pytest.mark.parametrize("signum, code, args", [
    (signal.SIGINT, 130, ()),
    (signal.SIGTERM, 143, ()),
    (signal.SIGINT, 130, ("--algo", "sac", "--env", "Pendulum-v1", "--hidden-sizes", "32", "32")),  # + replay
])
def test_interrupt_leaves_a_checkpoint_and_no_processes(tmp_path, signum, code, args):
    run_dir = tmp_path / f"interrupted-{code}"
    shm_before = set(os.listdir("/dev/shm"))
    proc = _start_run(run_dir, *args, "--workers", 3, "--total-steps", 10**8, "--target-return", "inf")
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 3
    sent = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert time.monotonic() - sent < 10
    assert "Traceback" not in stderr and "interrupted" in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    from asyncrl.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "checkpoint.pt")["global_step"] == summary["global_step"] > 0
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert set(os.listdir("/dev/shm")) - shm_before == set()  # no segment or semaphore left behind


def _start_run(run_dir, *args):
    """Start ``asyncrl.run`` in the background; return once it has written 2 metrics rows."""
    proc = subprocess.Popen([sys.executable, "-m", "asyncrl.run", *map(str, args), "--run-dir", str(run_dir),
                             "--progress", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV, cwd=REPO)
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.csv").exists() or len((run_dir / "metrics.csv").read_text().splitlines()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "run did not start"
        time.sleep(0.1)
    return proc


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # exited; its new parent has yet to reap it
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("args, also_kill_learner", [
    (("--algo", "a3c"), False),  # actor-learners
    (("--algo", "a2c", "--sync"), False),  # actors waiting for free slots, and the learner
    (("--algo", "a2c", "--sync"), True),  # the trainer and the learner both die: actors wait on nobody
    (("--algo", "ppo", "--async", "--start-method", "forkserver"), False),  # children of the fork server
    (("--algo", "dqn", "--learning-starts", "200", "--hidden-sizes", "32"), True),  # actors held by the rate limiter
])
def test_children_exit_when_the_trainer_is_killed(tmp_path, args, also_kill_learner):
    """SIGKILL the trainer (and the learner): every process of the run notices the dead
    parent within 2 s and exits; within 5 s none is left."""
    run_dir = tmp_path / "orphans"
    proc = _start_run(run_dir, *args, "--workers", 2, "--total-steps", 10**9, "--target-return", "inf")
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2
    if also_kill_learner:
        learner = max(psutil.Process(proc.pid).children(), key=lambda c: (c.create_time(), c.pid))  # forked last
        learner.kill()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5.0
    while not all(_gone(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [c.pid for c in children if not _gone(c)] == []


@pytest.mark.parametrize("policy", ["restart", "abort"])
def test_killed_worker_is_noticed_and_replaced_or_the_run_aborts(tmp_path, policy):
    run_dir = tmp_path / f"killed-{policy}"
    proc = _start_run(run_dir, "--workers", 2, "--total-steps", 120_000, "--target-return", "inf",
                      "--on-worker-failure", policy)
    victim = psutil.Process(proc.pid).children()[0]
    killed_at = time.time()
    victim.kill()
    _, stderr = proc.communicate(timeout=120)
    summary = json.loads((run_dir / "summary.json").read_text())
    failures = summary["worker_failures"]
    assert len(failures) == 1 and "died from signal SIGKILL" in failures[0]["message"]
    assert failures[0]["time"] - killed_at < 5.0  # noticed within 5 s
    assert "Traceback" not in stderr
    if policy == "restart":
        assert proc.returncode == 0, stderr
        assert "restarting it with a fresh environment (restart 1 of at most 3)" in stderr
        assert summary["stop_reason"] == "total_steps" and summary["global_step"] >= 120_000
    else:
        assert proc.returncode == 1, stderr
        assert summary["stop_reason"] == "worker_failed"
        assert stderr.strip().splitlines()[-1].startswith("asyncrl.run: error: worker")
    from asyncrl.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "checkpoint.pt")["global_step"] == summary["global_step"]


def test_env_that_keeps_raising_exhausts_the_restarts_with_one_traceback(tmp_path):
    run_dir = tmp_path / "raising"
    result = cli("--env", "toy_envs:FaultyCartPole-v0", "--workers", 2, "--total-steps", 10**7,
                 "--run-dir", run_dir, "--progress", "none", "--max-restarts", 2, timeout=90)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("Traceback") == 1
    assert result.stderr.count("restarting it with a fresh environment") == 2
    assert "(restart limit reached)" in result.stderr.strip().splitlines()[-1]
    assert len(json.loads((run_dir / "summary.json").read_text())["worker_failures"]) == 3


def _rows(run_dir):
    return (run_dir / "metrics.csv").read_text().splitlines()


def test_resume_continues_model_optimizer_counters_and_metrics(tmp_path):
    run_dir = tmp_path / "resumed"
    first = cli("--workers", 2, "--total-steps", 15_000, "--target-return", "inf", "--run-dir", run_dir,
                "--progress", "none", "--log-interval", 0.2)
    assert first.returncode == 0, first.stderr
    from asyncrl.checkpoint import load_checkpoint

    before = load_checkpoint(run_dir / "checkpoint.pt")
    rows_before = _rows(run_dir)
    second = cli("--resume", run_dir, "--total-steps", 30_000, "--progress", "none")
    assert second.returncode == 0, second.stderr
    after = load_checkpoint(run_dir / "checkpoint.pt")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == before["global_step"] and summary["global_step"] >= 30_000
    assert after["policy_version"] > before["policy_version"]
    assert after["optimizer"]["state"][0]["step"] > before["optimizer"]["state"][0]["step"]
    assert after["episodes"] > before["episodes"]
    assert set(before["worker_rng"]) == set(after["worker_rng"]) == {"0", "1"}
    rows = _rows(run_dir)
    assert rows[: len(rows_before)] == rows_before  # the first run's rows, untouched
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    times = [float(r.split(",")[1]) for r in rows[1:]]
    # No row repeated or reordered: wall time strictly increases, T never goes back.
    assert all(b > a for a, b in zip(times, times[1:])) and steps == sorted(steps)
    assert len(rows) > len(rows_before)
    episode_rows = (run_dir / "episodes.csv").read_text().splitlines()[1:]
    assert len(episode_rows) == after["episodes"]


def test_resume_rejects_changed_flags_and_missing_runs(tmp_path):
    assert_one_line_error(cli("--resume", tmp_path / "nothing"), "cannot read")
    run_dir = tmp_path / "r"
    assert cli("--workers", 1, "--total-steps", 2000, "--target-return", "inf", "--run-dir", run_dir,
               "--progress", "none").returncode == 0
    assert_one_line_error(cli("--resume", run_dir, "--lr", "0.1"), "--lr cannot change")
    (run_dir / "checkpoint.pt").write_bytes(b"damaged")
    assert_one_line_error(cli("--resume", run_dir, "--total-steps", 4000), "and the previous one")


def test_one_worker_runs_with_one_seed_are_identical(tmp_path):
    """With one worker nothing races: the same seed gives the same episodes, in the same
    order, at the same env steps, and the same parameters."""
    from asyncrl.checkpoint import load_checkpoint

    outputs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        result = cli("--workers", 1, "--seed", 5, "--total-steps", 6000, "--target-return", "inf",
                     "--run-dir", run_dir, "--progress", "none")
        assert result.returncode == 0, result.stderr
        outputs.append(((run_dir / "episodes.csv").read_text(), load_checkpoint(run_dir / "checkpoint.pt")))
    (episodes_a, ckpt_a), (episodes_b, ckpt_b) = outputs
    assert episodes_a == episodes_b and len(episodes_a.splitlines()) > 50
    assert all(torch.equal(ckpt_a["model"][k], ckpt_b["model"][k]) for k in ckpt_a["model"])
    assert ckpt_a["global_step"] == ckpt_b["global_step"]


INVALID_FLAGS = [
    (["--algo", "bogus"], "--algo must be one of"),
    (["--env", ""], "cannot make environment"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--seed", "x"], "invalid int value"),
    (["--total-steps", "0"], "--total-steps must be > 0"),
    (["--target-return", "high"], "invalid _optional_float value"),
    (["--max-seconds", "0"], "--max-seconds must be > 0"),
    (["--run-dir", "/dev/null/run"], "is not a writable folder"),
    (["--resume", "/nonexistent/run"], "cannot read"),
    (["--log-interval", "0"], "--log-interval must be > 0"),
    (["--checkpoint-interval", "-5"], "--checkpoint-interval must be > 0"),
    (["--serial", "yes"], "unrecognized arguments: yes"),
    (["--on-worker-failure", "ignore"], "--on-worker-failure must be restart or abort"),
    (["--max-restarts", "-1"], "--max-restarts must be >= 0"),
    (["--start-method", "thread"], "--start-method must be"),
    (["--progress", "loud"], "--progress must be"),
    (["--lr", "-1"], "--lr must be >= 0"),
    (["--gamma", "1.01"], "--gamma must be in [0, 1]"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be > 0"),
    (["--optimizer", "sgd"], "--optimizer must be rmsprop or adam"),
    (["--rms-alpha", "-0.1"], "--rms-alpha must be in [0, 1]"),
    (["--optim-eps", "0"], "--optim-eps must be > 0"),
    (["--rms-init", "-1"], "--rms-init must be >= 0"),
    (["--hidden-sizes", "64", "0"], "--hidden-sizes must be positive"),
    (["--t-max", "0"], "--t-max must be >= 1"),
    (["--entropy-coef", "-0.1"], "--entropy-coef must be >= 0"),
    (["--value-coef", "-1"], "--value-coef must be >= 0"),
    (["--shared-torso", "1"], "unrecognized arguments: 1"),
    (["--algo", "n-step-q", "--target-update", "0"], "--target-update must be >= 1"),
    (["--algo", "n-step-q", "--epsilon-steps", "-1"], "--epsilon-steps must be >= 0"),
    (["--algo", "one-step-q", "--final-epsilons", "1.5"], "--final-epsilons must be in [0, 1]"),
    (["--algo", "one-step-q", "--final-epsilon-probs", "0.5", "0.5"], "--final-epsilon-probs must be 3"),
    (["--algo", "one-step-sarsa", "--async-update", "0"], "--async-update must be >= 1"),
    (["--algo", "one-step-q", "--entropy-coef", "0.1"], "unrecognized arguments: --entropy-coef"),
    (["--algo", "n-step-q", "--env", "MountainCarContinuous-v0"], "needs a discrete action space"),
]


@pytest.mark.parametrize("argv, fragment", INVALID_FLAGS, ids=[" ".join(a) for a, _ in INVALID_FLAGS])
def test_every_flag_rejects_invalid_values_before_any_process_starts(argv, fragment, capsys, tmp_path):
    from asyncrl.run import main

    before = psutil.Process().children(recursive=True)
    run_dir = [] if any(a in ("--run-dir", "--resume") for a in argv) else ["--run-dir", str(tmp_path / "x")]
    assert main([*argv, *run_dir]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert psutil.Process().children(recursive=True) == before
