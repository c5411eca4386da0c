"""The speedup study: its computations on synthetic timings, and its outputs."""

import csv
import json
from pathlib import Path

import pytest

from asyncrl import bench
from asyncrl.bench import StudyConfig, ratios_to_baseline, speedup_study, study_tables


def _run(method, workers, seed, time=None, steps=None, steps_per_s=1000.0):
    return {"method": method, "workers": workers, "seed": seed, "reached_target": time is not None,
            "time_to_target_s": time, "steps_to_target": steps, "steps_per_s": steps_per_s, "target_return": 475.0,
            "cpu_percent_per_core": [50.0, 50.0]}


def test_speedup_and_data_efficiency_pair_seeds_and_skip_runs_that_never_reach_the_score():
    runs = [
        _run("a3c", 1, 0, 10.0, 1000, 100), _run("a3c", 2, 0, 5.0, 1100, 190), _run("a3c", 4, 0, 4.0, 2000, 300),
        _run("a3c", 1, 1, 20.0, 2000, 110), _run("a3c", 2, 1, 8.0, 1600, 200), _run("a3c", 4, 1, None, None, 320),
        _run("a3c", 1, 2, None, None, 90), _run("a3c", 2, 2, 6.0, 900, 180), _run("a3c", 4, 2, 3.0, 800, 280),
    ]
    tables = study_tables(runs)
    s2 = tables["speedup"][("a3c", 2)]
    # seed 0: 10 / 5 = 2.0; seed 1: 20 / 8 = 2.5; seed 2: the 1-worker run never reached -> no ratio
    assert (s2["median"], s2["min"], s2["max"], s2["n"], s2["seeds"]) == (2.25, 2.0, 2.5, 2, 3)
    s4 = tables["speedup"][("a3c", 4)]
    assert (s4["median"], s4["n"]) == (2.5, 1)  # seed 0 only: 10 / 4; seed 1 never reached at 4 workers
    d2 = tables["data_efficiency"][("a3c", 2)]
    assert d2["median"] == pytest.approx((1000 / 1100 + 2000 / 1600) / 2)
    assert tables["speedup"][("a3c", 1)]["median"] == 1.0
    # throughput needs no score: every seed counts
    t2 = tables["throughput"][("a3c", 2)]
    assert t2["n"] == 3 and t2["median"] == pytest.approx(190 / 100)
    assert tables["reached"][("a3c", 4)] == {"reached": 2, "seeds": 3}


def test_no_seed_reaching_the_score_gives_no_speedup_and_methods_stay_apart():
    runs = [_run("n-step-q", 1, 0), _run("n-step-q", 2, 0), _run("a3c", 1, 0, 4.0, 10), _run("a3c", 2, 0, 1.0, 10)]
    speedup = ratios_to_baseline(runs, "time_to_target_s")
    assert speedup[("n-step-q", 2)]["median"] is None and speedup[("n-step-q", 2)]["n"] == 0
    assert speedup[("a3c", 2)]["median"] == 4.0
    table = bench.markdown(runs, _machine(), StudyConfig(algos=["a3c", "n-step-q"], workers=[1, 2], seeds=[0]))
    assert "| n-step-q | — | — |" in table


def _machine():
    return {"cpu_model": "Test CPU", "physical_cores": 2, "logical_cores": 4, "usable_cores": 4, "memory_gib": 8.0,
            "os": "TestOS", "python": "3.x", "torch": "t", "gymnasium": "g", "numpy": "n"}


def test_every_output_carries_the_machine_description_and_marks_oversubscription(tmp_path, monkeypatch):
    monkeypatch.setattr("asyncrl.metrics.machine_info", _machine)
    timings = {1: 10.0, 2: 5.5, 4: 5.0}

    def fake_runner(method, workers, seed, config, run_dir, backend):
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.csv").write_text("wall_time_s,mean_return\n1.0,20\n2.0,200\n")
        return {"reached_target": True, "time_to_target_s": timings[workers] + seed,
                "steps_to_target": 1000 * workers, "global_step": 1000 * workers, "wall_time_s": timings[workers],
                "steps_per_s": 100.0 * workers, "target_return": 200.0, "stop_reason": "target_reached",
                "cpu_percent_per_core": [90.0, 80.0]}

    config = StudyConfig(algos=["a3c", "ppo-sync"], workers=[1, 2, 4], seeds=[0, 1], out=str(tmp_path / "out"),
                         max_seconds=30)
    result = speedup_study(config, runner=fake_runner, log=lambda line: None)
    out = tmp_path / "out"
    assert len(result["runs"]) == 12
    data = json.loads((out / "runs.json").read_text())
    assert data["machine"]["cpu_model"] == "Test CPU" and data["config"]["pin_workers"] is False
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(r["machine_cpu_model"] == "Test CPU" for r in rows)
    assert all(r["machine_physical_cores"] == "2" for r in rows)
    table = (out / "table.md").read_text()
    assert table.startswith("Machine: Test CPU, 2 physical / 4 logical cores")
    assert "workers not pinned" in table
    # a3c: 2 workers fit the 2 physical cores, 4 do not; ppo-sync's learner makes 2 actors 3 processes
    # speedups: seed 0 10/5.5 = 1.82 and 10/5 = 2.00; seed 1 11/6.5 = 1.69 and 11/6 = 1.83
    assert "| a3c | 1.00 (1.00–1.00) | 1.76 (1.69–1.82) | 1.92 (1.83–2.00) *oversubscribed* |" in table
    assert "| ppo-sync | 1.00 (1.00–1.00) | 1.76 (1.69–1.82) *oversubscribed* |" in table
    assert "| a3c | shm | 1 | 2 | 2/2 | 6.0 |" in table
    for name in ("speedup.png", "return_vs_time.png"):
        assert (out / name).stat().st_size > 5000


def test_backends_side_by_side_label_rows_and_count_nodes(tmp_path, monkeypatch):
    """``--backend shm ray``: every method on each, one row per (method, backend) in every
    table, with the backend and the nodes its runs used."""
    monkeypatch.setattr("asyncrl.metrics.machine_info", _machine)
    monkeypatch.setattr(bench, "ray_capacity", lambda config, runs: [])  # (measured on a real cluster only)
    seen = []

    def fake_runner(method, workers, seed, config, run_dir, backend):
        seen.append((method, backend, workers))
        run_dir.mkdir(parents=True)
        slow = 2.0 if backend == "ray" else 1.0
        return {"reached_target": True, "time_to_target_s": slow * 10.0 / workers, "steps_to_target": 1000,
                "global_step": 1000, "wall_time_s": 10.0, "steps_per_s": 100.0 * workers / slow,
                "target_return": 200.0, "stop_reason": "target_reached", "cpu_percent_per_core": [50.0, 50.0],
                "ray": {"nodes_used": 2} if backend == "ray" else None, "oversubscribed": False}

    config = StudyConfig(algos=["a3c"], workers=[1, 2], seeds=[0], backends=["shm", "ray"], address="auto",
                         out=str(tmp_path / "out"))
    result = speedup_study(config, runner=fake_runner, log=lambda line: None)
    assert seen == [("a3c", "shm", 1), ("a3c", "shm", 2), ("a3c", "ray", 1), ("a3c", "ray", 2)]
    assert [(r["method"], r["backend"], r["nodes"]) for r in result["runs"]][1:3] == [
        ("a3c (shm)", "shm", 1), ("a3c (ray)", "ray", 2)]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| a3c (shm) | 1.00 | 2.00 |" in table and "| a3c (ray) | 1.00 | 2.00 |" in table
    assert "| a3c (ray) | ray | 2 | 2 | 1/1 | 10.0 |" in table
    with pytest.raises(ValueError, match="--backend ray runs a2c, a3c"):
        StudyConfig(algos=["dqn"], backends=["ray"])
    with pytest.raises(ValueError, match="needs --backend ray"):
        StudyConfig(algos=["a3c"], address="auto")


def test_bad_study_input_is_one_line_and_exit_code_2(capsys):
    assert bench.main(["speedup", "--workers", "0", "--out", "unused"]) == 2
    assert "--workers must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["speedup", "--algos", "no-such-method"])
    assert exc.value.code == 2
    # an environment without a reward threshold needs the score given (here, an unregistered one)
    assert bench.main(["speedup", "--env", "NoSuchEnv-v0", "--out", "unused"]) == 2
    assert "cannot make environment 'NoSuchEnv-v0'" in capsys.readouterr().err


def test_the_study_accepts_pixel_envs_but_needs_a_score_where_they_have_no_threshold(capsys):
    pytest.importorskip("minatar", reason="needs the minatar extra")
    assert bench.main(["speedup", "--env", "MinAtar/Breakout-v1", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MinAtar/Breakout-v1 has no reward threshold" in err[0] and "--target-return" in err[0]


def test_the_study_runs_off_policy_learners_with_their_learner_counted(tmp_path):
    """A real (tiny) study of DQN at 1 and 2 actors: each run has one more process, the
    learner, and the score is the mean of the last --return-window episodes."""
    out = tmp_path / "out"
    assert bench.main(["speedup", "--algos", "dqn", "--workers", "1", "2", "--seeds", "0", "--target-return", "15",
                       "--return-window", "5", "--max-seconds", "30", "--out", str(out)]) == 0
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert [(r["method"], r["workers"], r["reached_target"]) for r in runs] == [("dqn", 1, True), ("dqn", 2, True)]
    assert bench.processes("dqn", 2) == 3 and bench.processes("a3c", 2) == 2
    for r in runs:
        config = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert config["run"]["return_window"] == 5 and config["run"]["algo"] == "dqn"
    assert "mean return of the last 5 episodes" in (out / "table.md").read_text()


def test_steady_steps_per_s_leaves_out_start_up_and_shutdown(tmp_path):
    from asyncrl.metrics import steady_steps_per_s

    path = tmp_path / "metrics.csv"
    # start-up: 100 steps in the first 0.5 s; then 1000 steps/s; the shutdown row is late
    path.write_text("global_step,wall_time_s\n100,0.5\n600,1.0\n1100,1.5\n1600,2.0\n1700,3.0\n")
    assert steady_steps_per_s(path, skip_s=0.5) == pytest.approx(1000.0)
    assert steady_steps_per_s(path, skip_s=1.9) is None  # too short: one row left


def _lag_runner(calls):
    """A fake ``run_once``: env steps to the score grow with the workers and with K; a run's
    measured lag is its workers - 1 (or K)."""

    def runner(method, workers, seed, config, run_dir, backend, policy_lag=None):
        calls.append((method, workers, seed, policy_lag))
        run_dir.mkdir(parents=True)
        lag = workers - 1 if policy_lag is None else policy_lag
        steps = 1000 * (1 + lag) if policy_lag is not None else 1000 + 100 * workers + seed
        return {"reached_target": True, "time_to_target_s": steps / (500.0 * workers), "steps_to_target": steps,
                "global_step": steps, "wall_time_s": 2.0, "steps_per_s": 500.0 * workers, "target_return": 4.0,
                "stop_reason": "target_reached", "cpu_percent_per_core": [50.0, 50.0], "updates": 10,
                "policy_lag": {"updates": 10, "mean": float(lag), "median": lag, "p90": lag + 1, "max": lag + 2}}

    return runner


def test_staleness_runs_sit_beside_the_real_runs_lag_and_finished_runs_are_reused(tmp_path, monkeypatch):
    monkeypatch.setattr("asyncrl.metrics.machine_info", _machine)
    calls = []
    config = StudyConfig(algos=["a3c", "a3c-sync"], workers=[1, 2, 4], seeds=[0, 1], policy_lags=[0, 1, 3],
                         out=str(tmp_path / "out"), target_return=4.0)
    result = speedup_study(config, runner=_lag_runner(calls), log=lambda line: None)
    # per seed: 2 methods x 3 worker counts, then a3c's staleness runs (a3c-sync takes no --policy-lag)
    assert calls[:9] == [*[("a3c", w, 0, None) for w in (1, 2, 4)], *[("a3c-sync", w, 0, None) for w in (1, 2, 4)],
                         *[("a3c", 1, 0, k) for k in (0, 1, 3)]]
    assert len(calls) == 18 and len(result["runs"]) == 12 and len(result["lag_runs"]) == 6
    table = (tmp_path / "out" / "table.md").read_text()
    # the lag column: median / p90 of the measured lag, medians over seeds
    assert "| a3c | shm | 1 | 4 *oversubscribed* | 2/2 | 0.7 | 1,400 | 2,000 | 3 / 4 |" in table
    # staleness: steps at K=0 / at K: 1000 / 2000 = 0.5, 1000 / 4000 = 0.25; real runs at K + 1 workers
    # (seed 0: 1101 / 1200, seed 1: 1102 / 1201; the 4-worker ones 1101 / 1400 and 1102 / 1401)
    assert "| a3c | 1.00 (1.00–1.00) | 0.50 (0.50–0.50) | 0.25 (0.25–0.25) |" in table
    assert "| a3c, real runs at K + 1 workers | 1.00 (1.00–1.00); lag 0 / 1 | 0.92 (0.92–0.92); lag 1 / 2 | " \
           "0.79 (0.79–0.79); lag 3 / 4 |" in table
    assert (tmp_path / "out" / "policy_lag.png").stat().st_size > 5000
    assert (tmp_path / "out" / "table2.png").stat().st_size > 5000
    # the same study again: every run is taken from its folder; another score reruns them all
    again = speedup_study(config, runner=_lag_runner(calls), log=lambda line: None)
    assert len(calls) == 18 and again["runs"] == result["runs"] and again["lag_runs"] == result["lag_runs"]
    config.target_return = 5.0
    speedup_study(config, runner=_lag_runner(calls), log=lambda line: None)
    assert len(calls) == 36


def test_staleness_needs_a_method_that_pulls_a_copy():
    with pytest.raises(ValueError, match="--policy-lags needs a method that takes --policy-lag"):
        StudyConfig(algos=["one-step-q", "a3c-sync"], policy_lags=[0, 1])
    with pytest.raises(ValueError, match="--policy-lags must be >= 0"):
        StudyConfig(algos=["a3c"], policy_lags=[-1])
    assert bench.lag_capable_methods() == ["a3c", "n-step-q"]  # (the one-step methods differentiate theta)


def test_a_ray_study_ends_with_each_servers_capacity(tmp_path, monkeypatch):
    monkeypatch.setattr("asyncrl.metrics.machine_info", _machine)
    measured = []

    def fake_capacity(config, runs):
        measured.append([r["workers"] for r in runs])
        return [{"method": "a3c", "server": "parameter server", "unit": "update", "service_s": 0.004,
                 "server_per_s": 250.0, "round_trip_s": 0.006, "payload_mb": 2.7, "steps_per_rollout": None,
                 "worker_per_s": 50.0, "saturation_workers": 5.0}]

    monkeypatch.setattr(bench, "ray_capacity", fake_capacity)
    config = StudyConfig(algos=["a3c"], workers=[1, 2], seeds=[0], backends=["ray"], out=str(tmp_path / "out"),
                         target_return=4.0)
    result = speedup_study(config, runner=_lag_runner([]), log=lambda line: None)
    assert measured == [[1, 2]] and result["capacity"][0]["saturation_workers"] == 5.0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| a3c | parameter server | update | 2.700 | 4.00 | 250 | 6.00 | 50.0 | 5.0 |" in table
    assert json.loads((tmp_path / "out" / "runs.json").read_text())["capacity"][0]["service_s"] == 0.004


def test_saturation_is_one_workers_period_over_the_service_time():
    from asyncrl.backends.ray.capacity import saturation_workers, worker_rate

    assert saturation_workers(0.02, 0.004) == pytest.approx(5.0)
    # a Hogwild run: updates per second per worker; a batched one: rollouts per second per actor
    hogwild, learner = {"steps_per_rollout": None}, {"steps_per_rollout": 80}
    assert worker_rate({"updates": 600, "wall_time_s": 10.0, "workers": 2}, hogwild) == 30.0
    assert worker_rate({"steps_per_s": 1600.0, "workers": 2}, learner) == 10.0
    assert worker_rate({"updates": 0, "wall_time_s": 10.0}, hogwild) is None
    with pytest.raises(ValueError, match="times must be positive"):
        saturation_workers(0.0, 0.004)
