"""The Ray backend (``--backend ray``): the parameter server against shared memory, bit for
bit, in one process; then real runs on a local Ray instance and on a two-node cluster on
127.0.0.1 (``ray.cluster_utils.Cluster``): the run folder, resume, evaluate, faults, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
import types

# Ray on 127.0.0.1 only (its single-machine mode), for every Ray process these tests start:
# read when ray is imported, so set before any test imports it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from asyncrl import registry  # noqa: E402
from asyncrl.backends.ray.cluster import spread_over_nodes  # noqa: E402
from asyncrl.backends.ray.servers import ParameterServer, remote_actor_learner, state_payload  # noqa: E402
from asyncrl.config import parse_args  # noqa: E402
from asyncrl.prepare import prepare  # noqa: E402
from asyncrl.shared import GlobalCounters  # noqa: E402

from helpers import CHILD_ENV, REPO, assert_one_line_error  # noqa: E402

# (test_cli's CHILD_ENV may predate the variable above: this file's runs take it explicitly)
RAY_ENV = {**CHILD_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def cli(*args, timeout=120, module="asyncrl.run"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=RAY_ENV, cwd=REPO)


def _cluster():
    """A head and a worker node with 2 CPUs each on 127.0.0.1 (about 5 s to start); Ray's
    SIGTERM handler, which it installs in this process, is taken out again (forked children
    of later tests would inherit it)."""
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = CHILD_ENV["PYTHONPATH"]  # the nodes' workers import this checkout
    handler = signal.getsignal(signal.SIGTERM)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.worker_node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    signal.signal(signal.SIGTERM, handler)
    return cluster


# -- the parameter server in this process: a Ray actor handle's stand-in -----------------


class InProcessHandle:
    """``handle.method.remote(*args)`` calls ``method`` at once; with ``ray.get`` as the identity
    (``fake_ray``), a Ray actor runs in this process, deterministically."""

    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, name):
        return types.SimpleNamespace(remote=getattr(self.obj, name))


@pytest.fixture
def fake_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get=lambda value, timeout=None: value))


def _setup(tmp_path, algo, *flags):
    setup = prepare(parse_args(["--algo", algo, "--env", "CartPole-v1", "--workers", "2", "--seed", "3",
                                "--run-dir", str(tmp_path), *flags]))
    return setup.config, setup.obs, setup.action


def _server(config, obs, action, initial_step=0):
    fresh = registry.get(config.run.algo).make_shared(config, obs, action)  # seeded: the shm run's theta
    return ParameterServer(config, obs, action, state_payload(fresh, 0), initial_step, config.run.workers)


@pytest.mark.parametrize("algo, flags", [
    ("a3c", ()),
    ("a3c", ("--optimizer", "adam", "--lr-anneal")),
    ("n-step-q", ("--target-update", "60")),
    ("one-step-q", ("--target-update", "60")),
    ("one-step-sarsa", ("--target-update", "60")),
])
def test_actor_learner_on_the_parameter_server_matches_shared_memory_bit_for_bit(tmp_path, fake_ray, algo, flags):
    """The same algorithm file, one actor-learner, 40 updates: theta, the optimizer statistics,
    theta^- and T are identical on shared memory and through the parameter server's seam."""
    config, obs, action = _setup(tmp_path, algo, "--total-steps", "5000", *flags)
    module = registry.get(algo)
    shared = module.make_shared(config, obs, action)
    counters = GlobalCounters(2)
    local = module.actor(0, config, shared, counters)
    server = _server(config, obs, action)
    remote, state, remote_counters = remote_actor_learner(0, config, obs, action, InProcessHandle(server))
    for _ in range(40):
        local.update()
        remote.update()
    for mine, theirs in zip(shared.model.state_dict().values(), server.shared.model.state_dict().values()):
        assert torch.equal(mine, theirs)
    shm_opt, ps_opt = shared.optimizer.state_dict()["state"], server.shared.optimizer.state_dict()["state"]
    for index in shm_opt:
        for name in shm_opt[index]:
            assert torch.equal(shm_opt[index][name], ps_opt[index][name]), name
    if shared.target is not None:
        assert shared.target.refreshes == server.target.refreshes == state.target.refreshes >= 1
        for mine, theirs, replica in zip(shared.target.model.parameters(), server.target.model.parameters(),
                                         state.target.model.parameters()):
            assert torch.equal(mine, theirs) and torch.equal(mine, replica)
    assert counters.global_step == remote_counters.global_step == server.counters.global_step > 0
    assert server.counters.policy_version == 40 and server.counters.updates[0] == 40
    assert state.drain_lags() == {0: 40}  # one actor-learner: every gradient is taken at the server's current theta


def test_policy_lag_is_the_server_version_minus_the_gradient_version(tmp_path, fake_ray):
    """Two actor-learners taking turns: each gradient arrives one update after the version it
    was computed from, except the very first."""
    config, obs, action = _setup(tmp_path, "a3c")
    server = _server(config, obs, action, initial_step=1000)
    handle = InProcessHandle(server)
    (a, a_state, _), (b, b_state, b_counters) = (remote_actor_learner(i, config, obs, action, handle)
                                                 for i in (0, 1))
    for _ in range(3):
        a.update()
        b.update()
    assert a_state.drain_lags() == {0: 1, 1: 2} and b_state.drain_lags() == {1: 3}
    assert a_state.drain_lags() == {}  # (each report takes the counts since the last)
    assert server.counters.policy_version == 6 and list(server.counters.updates) == [3, 3]
    # T: the resumed run's initial steps plus both actor-learners', as B knows it after its last push
    assert b_counters.global_step == server.counters.global_step == 1000 + int(server.counters.steps.sum())
    # B's replica is theta as the server had it after B's last update
    for replica, theta in zip(b_state.shared_params, server.params):
        assert torch.equal(replica, theta)


def test_remote_target_is_refreshed_once_per_multiple_of_i_target(tmp_path, fake_ray):
    """The first actor-learner whose T crosses a multiple of I_target has the server copy
    theta^- <- theta; one that crosses it later gets that theta^-, and no second copy is made."""
    config, obs, action = _setup(tmp_path, "one-step-q", "--target-update", "100")
    server = _server(config, obs, action)
    handle = InProcessHandle(server)
    (_, a_state, _), (_, b_state, _) = (remote_actor_learner(i, config, obs, action, handle) for i in (0, 1))

    def move_theta():
        with torch.no_grad():
            for p in server.params:
                p.add_(1.0)
        return [p.clone() for p in server.params]

    first = move_theta()
    assert a_state.target.maybe_refresh(250) and server.target.refreshes == 2  # T // I_target
    move_theta()
    assert b_state.target.maybe_refresh(199)  # B has not seen refresh 1 yet: it asks, the server copies nothing
    assert server.target.refreshes == b_state.target.refreshes == 2
    assert not b_state.target.maybe_refresh(260)
    for theirs, mine_a, mine_b, theta in zip(server.target.model.parameters(), a_state.target.model.parameters(),
                                            b_state.target.model.parameters(), first):
        assert torch.equal(theirs, theta) and torch.equal(mine_a, theta) and torch.equal(mine_b, theta)
    second = [p.clone() for p in server.params]
    assert a_state.target.maybe_refresh(300) and server.target.refreshes == 3
    for theirs, theta in zip(server.target.model.parameters(), second):
        assert torch.equal(theirs, theta)


def test_actor_learners_are_spread_round_robin_over_the_nodes_cpus():
    def node(name, cpus, alive=True):
        return {"NodeID": name, "Alive": alive, "Resources": {"CPU": cpus}}

    assert spread_over_nodes([node("head", 2), node("w", 2)], 2) == ["head", "w"]
    assert spread_over_nodes([node("head", 2), node("w", 2)], 4) == ["head", "w", "head", "w"]
    # full nodes drop out of the rotation; dead and CPU-less nodes get none; past the CPUs: None (Ray places them)
    assert spread_over_nodes([node("a", 4), node("b", 1), node("c", 0), node("d", 2, alive=False)], 7) == [
        "a", "b", "a", "a", "a", None, None]


def test_ray_missing_is_one_line_naming_the_extra(tmp_path):
    """Where Ray is not installed (here: its import made to fail), --backend ray says which extra to install."""
    code = ("import sys; sys.modules['ray'] = None; from asyncrl.run import main; "
            f"sys.exit(main(['--backend', 'ray', '--run-dir', {str(tmp_path / 'run')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=CHILD_ENV, cwd=REPO)
    assert_one_line_error(result, "--backend ray needs Ray: pip install -e '.[ray]'")


# -- real Ray ------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _gone(process):
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes, seconds):
    deadline = time.monotonic() + seconds
    while not all(_gone(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p.pid for p in processes if not _gone(p)]


def _start(run_dir, *args, rows=3):
    proc = subprocess.Popen([sys.executable, "-m", "asyncrl.run", "--backend", "ray", *map(str, args),
                             "--run-dir", str(run_dir), "--progress", "none", "--log-interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=RAY_ENV, cwd=REPO,
                            start_new_session=True)  # its own process group, as a shell's foreground job
    deadline = time.monotonic() + 90
    metrics = run_dir / "metrics.csv"
    while not metrics.exists() or len([r for r in metrics.read_text().splitlines()[1:] if not r.startswith("0,")]) \
            < rows:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.1)
    return proc


def _wait_for_both_workers(run_dir, proc, min_step=0, seconds=120):
    """Until episodes.csv has episodes of actor-learners 0 and 1 (each has run on its node and
    reported) and T >= ``min_step``."""
    deadline = time.monotonic() + seconds
    while True:
        rows = [r.split(",") for r in (run_dir / "episodes.csv").read_text().splitlines()[1:]]
        if {"0", "1"} <= {r[1] for r in rows if len(r) > 1} and rows and int(rows[-1][0]) >= min_step:
            return
        assert time.monotonic() < deadline and proc.poll() is None, "both actor-learners did not report"
        time.sleep(0.2)


def test_ray_run_writes_the_run_folder_resumes_and_evaluates(tmp_path):
    run_dir = tmp_path / "ray-run"
    first = cli("--backend", "ray", "--workers", 2, "--total-steps", 15_000, "--target-return", "inf",
                "--run-dir", run_dir, "--progress", "none", "--log-interval", 0.2)
    assert first.returncode == 0, first.stderr
    assert "(Ray: 1 node, 2 CPUs)" in first.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "ray" and summary["stop_reason"] == "total_steps"
    assert summary["ray"]["nodes_used"] == 1 and summary["ray"]["cluster_cpus"] == 2
    assert 0 < summary["ray"]["mean_policy_lag"] < 3  # two actor-learners: about one update of the other's
    assert summary["global_step"] >= 15_000 and summary["updates"] > 0
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "policy_lag" in header
    from asyncrl.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["global_step"] == summary["global_step"]
    assert checkpoint["policy_version"] == summary["updates"]
    evaluated = cli(run_dir, "--episodes", 2, module="asyncrl.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr
    resumed = cli("--resume", run_dir, "--total-steps", 25_000, "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["resumed_from_step"] == summary["global_step"]
    assert after["global_step"] >= 25_000 and after["updates"] > summary["updates"]


def test_batched_learner_on_ray_with_one_synchronous_actor_equals_the_serial_run(tmp_path):
    """A2C --sync, one actor: the learner (a Ray actor holding the slots) and the actor (another,
    committing its rollouts through it) alternate as on shared memory, so the run equals its
    --serial twin: the same parameters and episodes, bit for bit."""
    runs = {}
    for mode in ("ray", "serial"):
        run_dir = runs[mode] = tmp_path / mode
        flags = ("--backend", "ray") if mode == "ray" else ("--serial",)
        result = cli(*flags, "--algo", "a2c", "--sync", "--workers", 1, "--total-steps", 3000, "--target-return",
                     "inf", "--run-dir", run_dir, "--progress", "none")
        assert result.returncode == 0, result.stderr
    from asyncrl.checkpoint import load_checkpoint

    ray_run, serial = (load_checkpoint(runs[m] / "checkpoint.pt") for m in ("ray", "serial"))
    assert ray_run["global_step"] == serial["global_step"] == 3000
    assert ray_run["policy_version"] == serial["policy_version"] > 0
    for name, tensor in serial["model"].items():
        assert torch.equal(ray_run["model"][name], tensor), name
    assert (runs["ray"] / "episodes.csv").read_text() == (runs["serial"] / "episodes.csv").read_text()


def test_batched_learner_on_ray_replaces_a_killed_actor(tmp_path):
    """PPO, 2 asynchronous actors: an actor's process is killed mid-run; its half-written
    slot is reclaimed, a new actor takes its place, and the run reaches --total-steps."""
    run_dir = tmp_path / "ppo"
    proc = _start(run_dir, "--algo", "ppo", "--async", "--workers", 2, "--total-steps", 60_000, "--target-return",
                  "inf")
    actors = [p for p in _descendants(proc.pid) if "ActorLearnerActor" in p.name() + " ".join(p.cmdline())]
    assert len(actors) == 2
    actors[0].kill()
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["worker_failures"]) == 1 and summary["stop_reason"] == "total_steps"
    assert summary["learner"]["mean_policy_lag"] is not None and summary["updates"] > 0
    assert summary["global_step"] >= 60_000


def test_actors_waiting_on_a_slow_learner_are_not_silent(tmp_path):
    """A batched actor reports only between rollouts; while the learner's update runs (here
    ~6-12 s: 3,000 epochs of PPO on one batch) it waits for a free slot. With the silence
    limit scaled down to 3 s in the driver (an actor's start-up has its own limit,
    PLACEMENT_S), that wait must not count as silence: before, every waiting actor was
    failed at once and, with no restarts allowed, the run aborted blaming placement."""
    run_dir = tmp_path / "slow-learner"
    driver = ("import sys\nimport asyncrl.backends.ray.driver as driver\ndriver.WORKER_SILENT_S = 3.0\n"
              "from asyncrl.run import main\nsys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", driver, "--backend", "ray", "--algo", "ppo", "--sync", "--workers",
                             "2", "--epochs", "3000", "--total-steps", "512", "--target-return", "inf",
                             "--on-worker-failure", "abort", "--run-dir", str(run_dir), "--progress", "none"],
                            capture_output=True, text=True, timeout=300, env=RAY_ENV, cwd=REPO)
    code = result.returncode
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 0 and summary["worker_failures"] == [], (summary["worker_failures"], result.stderr[-2000:])
    assert summary["updates"] == 2 and summary["global_step"] >= 512
    assert summary["wall_time_s"] > 2 * 3.0  # the updates outlasted the silence limit


@pytest.mark.parametrize("args, fragment", [
    (("--backend", "ray", "--algo", "dqn"), "--algo dqn runs on --backend shm"),
    (("--backend", "ray", "--algo", "ppo", "--learner-device", "cuda"), "--learner-device needs --backend shm"),
    (("--address", "auto"), "--address names a Ray cluster: it needs --backend ray"),
    (("--backend", "ray", "--serial"), "--serial runs every actor-learner in this process"),
    (("--backend", "ray", "--address", "127.0.0.1:1"), "--address 127.0.0.1:1: no Ray cluster answers there"),
])
def test_bad_ray_input_is_one_line_and_exit_code_2(tmp_path, args, fragment):
    result = cli(*args, "--run-dir", tmp_path / "bad", "--progress", "none", timeout=60)
    assert_one_line_error(result, fragment)


def test_too_few_cpus_in_the_cluster_is_one_line(tmp_path, two_node_cluster):
    result = cli("--backend", "ray", "--address", two_node_cluster.address, "--workers", 9, "--run-dir",
                 tmp_path / "big", "--progress", "none", timeout=60)
    assert_one_line_error(result, "--workers 9 needs 9 CPUs of the Ray cluster", "it has 4")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_a_checkpoint_and_no_ray_process(tmp_path, signum, code):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM: the final
    checkpoint holds the server's last state, and the local Ray instance is gone."""
    run_dir = tmp_path / f"interrupted-{code}"
    proc = _start(run_dir, "--workers", 2, "--total-steps", 10**9, "--target-return", "inf")
    ray_processes = _descendants(proc.pid)
    assert len(ray_processes) >= 4  # GCS, raylet, the parameter server, 2 actor-learners, ...
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
    else:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    from asyncrl.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "checkpoint.pt")["global_step"] == summary["global_step"] > 0
    assert _wait_gone(ray_processes, 10) == []


def test_killed_driver_leaves_no_ray_process(tmp_path):
    """SIGKILL the driver: Ray ends its actors, asyncrl.reaper the rest of the local instance."""
    proc = _start(tmp_path / "killed", "--workers", 2, "--total-steps", 10**9, "--target-return", "inf")
    processes = _descendants(proc.pid)
    assert any("reaper" in " ".join(p.cmdline()) for p in processes)
    proc.kill()
    proc.wait(timeout=10)
    assert _wait_gone(processes, 30) == []


def test_reaper_kills_what_it_saw_and_what_that_started():
    """The driver dies and its pipe closes a while later (a look in between lists no Ray
    process: they were reparented): the reaper still kills the Ray process it saw earlier,
    and the process that one started, whose name has no "ray" in it."""
    import threading

    from asyncrl import reaper

    raylet = "import subprocess, time  # a fake raylet\nsubprocess.Popen(['sleep', '600'])\ntime.sleep(600)\n"
    driver = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time\n"
                               f"subprocess.Popen([sys.executable, '-c', {raylet!r}])\ntime.sleep(600)\n"])
    deadline = time.monotonic() + 30
    while len(_descendants(driver.pid)) < 2:  # the raylet and its sleep
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    started = _descendants(driver.pid)
    read_end, write_end = os.pipe()
    killed = []
    with os.fdopen(read_end, "rb") as stream:
        watcher = threading.Thread(target=lambda: killed.append(reaper.watch(driver.pid, stream)))
        watcher.start()
        time.sleep(3 * reaper.SNAPSHOT_S)
        driver.kill()  # a zombie until waited for: its children are reparented, it lists none
        time.sleep(3 * reaper.SNAPSHOT_S)
        os.close(write_end)
        watcher.join(timeout=10)
    driver.wait(timeout=10)
    left = _wait_gone(started, 10)
    for pid in left:
        psutil.Process(pid).kill()
    assert killed == [2] and left == []


# -- a two-node cluster on 127.0.0.1 -------------------------------------------------------


@pytest.fixture(scope="module")
def two_node_cluster():
    cluster = _cluster()
    yield cluster
    cluster.shutdown()


def test_run_spans_both_nodes_and_survives_the_loss_of_one(tmp_path, two_node_cluster):
    """Two actor-learners, one per node (SPREAD); the worker node is removed mid-run: the
    actor-learner on it is replaced on the head, listed in the summary, and the run ends at
    --total-steps."""
    run_dir = tmp_path / "cluster"
    proc = _start(run_dir, "--address", two_node_cluster.address, "--workers", 2, "--total-steps", 60_000,
                  "--target-return", "inf")
    _wait_for_both_workers(run_dir, proc)
    two_node_cluster.remove_node(two_node_cluster.worker_node)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ray"]["nodes_in_cluster"] == 2 and summary["ray"]["nodes_used"] == 2
    failures = summary["worker_failures"]
    assert len(failures) == 1 and "died (its process or its node was lost)" in failures[0]["message"]
    assert "restarting it with a fresh environment (restart 1 of at most 3)" in stderr
    assert summary["stop_reason"] == "total_steps" and summary["global_step"] >= 60_000
    assert not summary["oversubscribed"]
    # the new actor-learner ran: the updates after the loss come from both slots
    steps = np.array([int(r.split(",")[0]) for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]])
    assert steps[-1] - failures[0]["global_step"] > 20_000


@pytest.mark.slow
def test_a3c_on_ray_with_two_workers_solves_cartpole_seeds_0_1_2(tmp_path):
    """A3C's CartPole preset, --backend ray, 2 actor-learners: the mean return of the last 100
    episodes reaches 475 within 1M env steps for each seed (benchmarks/ray_backend.py measured
    113,795, 114,363 and 181,126)."""
    for seed in (0, 1, 2):
        run_dir = tmp_path / f"solve-{seed}"
        result = cli("--backend", "ray", "--workers", 2, "--seed", seed, "--total-steps", 1_000_000,
                     "--run-dir", run_dir, "--progress", "none", timeout=600)
        assert result.returncode == 0, result.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["reached_target"], (seed, summary["mean_return"], summary["global_step"])


@pytest.mark.slow
def test_run_reaches_its_target_after_losing_a_node(tmp_path):
    """The two-node cluster loses its worker node at T >= 20k; the replaced actor-learner and
    the other one still bring A3C to 475 on CartPole-v1 (seed 0, within 1M env steps)."""
    cluster = _cluster()
    try:
        worker_node = cluster.worker_node
        run_dir = tmp_path / "lost-node"
        proc = _start(run_dir, "--address", cluster.address, "--workers", 2, "--total-steps", 1_000_000)
        _wait_for_both_workers(run_dir, proc, min_step=20_000)
        cluster.remove_node(worker_node)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["ray"]["nodes_used"] == 2 and len(summary["worker_failures"]) == 1
        assert summary["worker_failures"][0]["global_step"] >= 20_000
        assert summary["reached_target"] and summary["steps_to_target"] > summary["worker_failures"][0]["global_step"]
    finally:
        cluster.shutdown()


def test_capacity_measures_both_servers_on_a_local_instance(tmp_path):
    """``asyncrl.backends.ray.capacity`` on CartPole-v1: the parameter server's service time
    per push of A3C's gradient and the learner server's rollouts per second for A2C (in a
    child process: it starts and ends its own Ray instance)."""
    code = (
        "import json; from asyncrl.backends.ray import capacity as c\n"
        f"p = c.parameter_server_capacity(['--algo', 'a3c', '--env', 'CartPole-v1', '--run-dir', r'{tmp_path / 'p'}'],"
        " pushes=40, round_trips=5)\n"
        f"l = c.learner_server_capacity(['--algo', 'a2c', '--env', 'CartPole-v1', '--run-dir', r'{tmp_path / 'l'}'],"
        " seconds=2.0)\n"
        "print(json.dumps({'p': p, 'l': l}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=RAY_ENV,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    p, learner = out["p"], out["l"]
    config, obs, action = _setup(tmp_path / "spaces", "a3c")
    model = registry.get("a3c").build_model(config, obs, action)
    assert p["params"] == sum(t.numel() for t in model.parameters())
    assert (p["server"], p["unit"], p["steps_per_rollout"]) == ("parameter server", "update", None)
    assert p["payload_mb"] == pytest.approx(p["params"] * 4 / 1e6)
    assert 0 < p["service_s"] < 1.0 and p["server_per_s"] == pytest.approx(1.0 / p["service_s"])
    assert 0 < p["round_trip_s"] < 1.0
    assert (learner["server"], learner["unit"], learner["round_trip_s"]) == ("learner server", "rollout", None)
    assert learner["rollouts"] > 0 and learner["server_per_s"] == pytest.approx(1.0 / learner["service_s"])
    # A2C's CartPole slot: its preset's unroll x environments, 4-float observations (T + 1 rows, and the final ones)
    a2c, _, _ = _setup(tmp_path / "a2c", "a2c")
    assert learner["steps_per_rollout"] == a2c.algo.unroll_length * a2c.algo.envs_per_actor

