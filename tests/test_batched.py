"""The batched learner (A2C, PPO): determinism, slot cycling in real runs, sync vs async,
the learner device, and learning."""

import json
import math
import subprocess
import sys
import time

import pytest
import torch

from asyncrl.algos.batched import DeviceError, check_device
from asyncrl.checkpoint import load_checkpoint
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.networks import ObsSpec
from asyncrl.trainer import Trainer


def _train(tmp_path, name, algo="a2c", algo_overrides=None, **run_kwargs):
    run = RunConfig(**{"algo": algo, "target_return": math.inf, "run_dir": str(tmp_path / name), **run_kwargs})
    trainer = Trainer(Config(run=run, algo=algo_config(algo, run.env, **(algo_overrides or {}))), quiet=True)
    summary = trainer.train()
    return trainer, summary, load_checkpoint(tmp_path / name / "checkpoint.pt")


def _same_params(a, b):
    return all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_sync_one_actor_is_deterministic_and_equals_serial(tmp_path, algo):
    small = {"unroll_length": 8, "minibatch_size": 16, "epochs": 2} if algo == "ppo" else {}
    _, s1, c1 = _train(tmp_path, "p1", algo, small, workers=1, seed=5, total_steps=1600)
    _, s2, c2 = _train(tmp_path, "p2", algo, small, workers=1, seed=5, total_steps=1600)
    _, s3, c3 = _train(tmp_path, "serial", algo, small, workers=1, seed=5, total_steps=1600, serial=True)
    _, _, c4 = _train(tmp_path, "other", algo, small, workers=1, seed=6, total_steps=1600)
    steps_per_batch = (8 if algo == "ppo" else 5) * 4  # T x B (4 envs per actor)
    assert s1["updates"] == s2["updates"] == s3["updates"] == math.ceil(1600 / steps_per_batch)
    assert _same_params(c1, c2) and _same_params(c1, c3)
    assert not _same_params(c1, c4)
    assert c1["policy_version"] == s1["updates"]
    assert s1["learner"]["mean_policy_lag"] == 0.0  # sync: always the newest policy


@pytest.mark.parametrize("sync", [True, False])
def test_every_slot_cycles_free_full_free_in_a_run(tmp_path, sync):
    trainer, summary, _ = _train(tmp_path, "run", "a2c", {"sync": sync}, workers=2, seed=0, total_steps=6000)
    slots = trainer.shared.slots
    assert slots.num_slots == (2 if sync else 4)  # one slot per actor; two when async
    cycles = slots.cycles.tolist()
    assert sum(cycles) == summary["updates"] * 2  # each batch took, and freed, one slot per actor
    assert min(cycles) >= 1
    lag = summary["learner"]["mean_policy_lag"]
    assert lag == 0.0 if sync else 0.0 <= lag <= 3.0  # async: at most the slots in flight
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "policy_lag" in header


def test_async_vtrace_and_ppo_options_run(tmp_path):
    _, summary, ckpt = _train(tmp_path, "run", "ppo",
                              {"sync": False, "correction": "vtrace", "unroll_length": 16, "value_clip": 0.2,
                               "target_kl": 0.01, "clip_anneal": True, "lr_anneal": True},
                              workers=2, seed=0, total_steps=5000)
    assert summary["stop_reason"] == "total_steps" and summary["updates"] >= 5000 // (16 * 8)
    lag = summary["learner"].pop("mean_policy_lag")
    assert summary["learner"] == {"sync": False, "correction": "vtrace", "device": "cpu"}
    # async, 2 slots an actor: a batch can be a few versions old, and some are (the learner
    # trains while the actors fill their other slot with the policy it is replacing)
    assert 0.0 < lag <= 3.0
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    for column in ("approx_kl", "clip_fraction", "epochs", "policy_lag"):
        assert column in rows[0]
    row_lags = [float(r["policy_lag"]) for r in rows if r["policy_lag"]]
    assert row_lags and min(row_lags) >= 0.0 and max(row_lags) <= 3.0
    assert ckpt["optimizer"]["state"][0]["step"].item() > 0  # the learner's statistics were published


def test_learner_device_cuda_fails_cleanly_before_any_process_starts(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        check_device("cuda")
    assert check_device("cpu") == torch.device("cpu")
    result = subprocess.run([sys.executable, "-m", "asyncrl.run", "--algo", "ppo", "--learner-device", "cuda",
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "CUDA is not available" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_sync_refuses_a_partial_batch():
    with pytest.raises(ValueError, match="--sync trains on one rollout from every environment"):
        Config(run=RunConfig(algo="a2c", workers=2), algo=algo_config("a2c", "CartPole-v1", batch_rollouts=4))
    with pytest.raises(ValueError, match="multiple of --envs-per-actor"):
        Config(run=RunConfig(algo="a2c", workers=2),
               algo=algo_config("a2c", "CartPole-v1", sync=False, batch_rollouts=6))
    Config(run=RunConfig(algo="a2c", workers=2), algo=algo_config("a2c", "CartPole-v1", sync=False,
                                                                   batch_rollouts=4))


def test_resume_restores_the_learner_and_its_policy_version(tmp_path):
    trainer, first, ckpt = _train(tmp_path, "run", "ppo", {"unroll_length": 8}, workers=1, seed=0, total_steps=1024)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    resumed = Trainer(Config.from_dict({**config, "run": {**config["run"], "total_steps": 2048,
                                                          "resume": str(tmp_path / "run")}}), quiet=True)
    summary = resumed.train()
    assert summary["resumed_from_step"] == first["global_step"]
    assert summary["updates"] == 2048 // 32
    assert resumed.shared.policy.version == summary["updates"]


@pytest.mark.parametrize("sync_flag", ["--sync", "--async"])
def test_killed_actor_is_replaced_its_slot_reclaimed_and_the_run_finishes(tmp_path, sync_flag):
    """SIGKILL can hit an actor anywhere: mid-rollout (its slot half-written) or waiting for
    a free slot. The run must neither hang (the learner waiting for the dead actor's slot)
    nor lose the learner; evaluate then reads the checkpoint."""
    import psutil

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "asyncrl.run", "--algo", "a2c", "--workers", "2", sync_flag,
                             "--total-steps", "100000000", "--max-seconds", "8", "--target-return", "inf",
                             "--run-dir", str(run_dir),
                             "--progress", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.csv").exists() or len((run_dir / "metrics.csv").read_text().splitlines()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "run did not start"
        time.sleep(0.1)
    psutil.Process(proc.pid).children()[0].kill()  # actor 0: forked first
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [f["worker"] for f in summary["worker_failures"]] == [0]
    assert summary["stop_reason"] == "max_seconds"  # it trained on after the restart, to its time cap
    assert summary["global_step"] > 20_000 and summary["updates"] > 100
    result = subprocess.run([sys.executable, "-m", "asyncrl.evaluate", str(run_dir), "--episodes", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "over 2 episodes" in result.stdout


@pytest.mark.timeout(60)
def test_learner_dead_in_the_middle_of_a_publication_does_not_hang_the_trainer(tmp_path, monkeypatch, capsys):
    """A learner SIGKILLed inside ``publish`` leaves the sequence odd for ever: the trainer's
    final checkpoint must not wait on it, nor save the half-written weights."""
    import os

    from asyncrl.storage import PolicyStore
    from asyncrl.trainer import WorkerFailure

    real_publish = PolicyStore.publish

    def dying_publish(self, tensors, extra=None):
        if self.version >= 3:  # the fourth publication: the learner dies half-way through it
            self._seq[0] += 1
            os._exit(9)
        return real_publish(self, tensors, extra)

    monkeypatch.setattr(PolicyStore, "publish", dying_publish)  # the forked learner inherits it
    run = RunConfig(algo="a2c", workers=2, seed=0, total_steps=10**7, target_return=math.inf,
                    run_dir=str(tmp_path / "run"))
    trainer = Trainer(Config(run=run, algo=algo_config("a2c", run.env)), quiet=True)
    start = time.monotonic()
    with pytest.raises(WorkerFailure, match="the learner exited with code 9"):
        trainer.train()
    assert time.monotonic() - start < 30
    assert int(trainer.shared.policy.sequence.item()) % 2 == 1
    assert "no checkpoint at T=" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # never the half-written weights
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop_reason"] == "worker_failed"


@pytest.mark.timeout(60)
def test_serial_async_with_fewer_rollouts_per_batch_than_actors_fill(tmp_path):
    """--serial --async --batch-rollouts 4 --workers 2: the actors fill two slots a round
    and the learner drains one; an actor whose slots are all full skips its turn."""
    trainer, summary, ckpt = _train(tmp_path, "run", "a2c", {"sync": False, "batch_rollouts": 4},
                                    workers=2, seed=0, total_steps=4000, serial=True)
    assert summary["stop_reason"] == "total_steps"
    assert summary["updates"] == math.ceil(4000 / (5 * 4))  # learner batches of T x B = 5 x 4 env steps
    assert summary["global_step"] >= 4000
    cycles = trainer.shared.slots.cycles.tolist()
    assert sum(cycles) == summary["updates"] and min(cycles) >= 1  # every slot of both actors was used


def test_cuda_check_does_not_initialise_cuda_and_a_cuda_learner_is_spawned(monkeypatch):
    """The trainer checks --learner-device before it forks: it must ask NVML
    (``torch.cuda.device_count``), never ``cuInit`` (``torch.cuda.is_available`` or
    ``_cuda_getDeviceCount``), which would poison CUDA in every forked child; and the CUDA
    learner itself starts with spawn."""
    from asyncrl.algos.batched import learner_start_method

    def initialises_cuda(*args):
        raise AssertionError("this call initialises CUDA in the trainer")

    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", initialises_cuda)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", initialises_cuda, raising=False)
    monkeypatch.setattr(torch.cuda, "init", initialises_cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="this machine has 2 CUDA device"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        check_device("cuda")

    def config(device, start_method="fork"):
        return Config(run=RunConfig(algo="ppo", start_method=start_method),
                      algo=algo_config("ppo", "CartPole-v1", learner_device=device))

    assert learner_start_method(config("cuda")) == learner_start_method(config("cuda:1", "forkserver")) == "spawn"
    assert learner_start_method(config("cpu")) == "fork"
    assert learner_start_method(config("cpu", "forkserver")) == "forkserver"


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_learner_optimizer_keeps_the_kernels_chosen_for_its_device(optimizer, device):
    """``load_state_dict`` of the shared optimizer's state must not replace the learner's
    kernel choice (fused Adam on CPU; foreach elsewhere) with the shared one's."""
    from asyncrl.algos.batched import make_learner_optimizer
    from asyncrl.networks import build_actor_critic
    from asyncrl.shared import make_shared_optimizer

    a = algo_config("ppo", "CartPole-v1", optimizer=optimizer, lr=3e-4)
    shared_model = build_actor_critic(4, 2, (8,)).share_memory()
    shared = make_shared_optimizer(optimizer, shared_model.parameters(), lr=a.lr, eps=a.optim_eps)
    with torch.no_grad():
        for p in shared_model.parameters():
            shared.state[p]["step"].fill_(7.0)
    model = build_actor_critic(4, 2, (8,))  # CPU tensors: only the kernel choice is checked, no step is taken
    own = make_learner_optimizer(a, model.parameters(), torch.device(device), shared)
    group = own.param_groups[0]
    if optimizer == "adam" and device == "cpu":
        assert group["fused"] is True and not group["foreach"]
    else:
        assert group["foreach"] is True and not group.get("fused")
    assert group["lr"] == 3e-4
    assert all(own.state[p]["step"].item() == 7.0 for p in model.parameters())  # the statistics did load


def test_actor_waiting_on_a_frozen_learner_gives_up_after_the_stall_deadline(monkeypatch):
    """The free-slot wait ends on the stop flag, on the trainer's death (``stop_requested``)
    and, when the learner is alive but publishes nothing, on a deadline."""
    import asyncrl.algos.batched as batched
    from asyncrl.algos import a2c
    from asyncrl.shared import GlobalCounters

    monkeypatch.setattr(batched, "LEARNER_STALL_S", 0.3)
    config = Config(run=RunConfig(algo="a2c", workers=1, seed=0), algo=algo_config("a2c", "CartPole-v1"))
    shared = a2c.make_shared(config, ObsSpec((4,)), 2)
    counters = GlobalCounters(2)
    actor = a2c.Actor(0, config, shared, counters)
    assert actor.update() == 5 * 4  # fills its one slot (--sync); the learner never takes it
    start = time.monotonic()
    with pytest.raises(batched.LearnerStalled, match="published nothing"):
        actor.update()
    assert 0.3 <= time.monotonic() - start < 2.0
    counters.request_stop()
    start = time.monotonic()
    assert actor.update() == 0  # a stop ends the wait at once
    assert time.monotonic() - start < 0.5
    actor.close()
