"""Every script under benchmarks/ runs end to end in its smoke mode (tiny budgets, one
repeat), so that a change to the package cannot break one silently. Results go to a
temporary folder, never over benchmarks/results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if p.name != "common.py")
NEEDS = {  # extras a script's smoke run needs beyond the test extra
    "atari_pong.py": ["ale_py"], "atari_throughput.py": ["ale_py", "stable_baselines3"],
    "a3c_vectorised.py": ["ale_py", "stable_baselines3"],
    "batched_learner.py": ["stable_baselines3"], "cartpole_solve.py": ["stable_baselines3"],
    "continuous.py": ["mujoco", "stable_baselines3"], "minatar.py": ["minatar", "stable_baselines3"],
    "offpolicy.py": ["stable_baselines3"], "pong.py": ["ale_py"], "ray_backend.py": ["ray"], "recurrent.py": ["minatar"],
    "sb3_baseline.py": ["stable_baselines3"],
}


def test_every_script_is_listed():
    assert len(SCRIPTS) >= 15 and "learning_spread.py" in SCRIPTS  # every script, common.py aside


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_in_smoke_mode(tmp_path, script):
    for module in NEEDS.get(script, []):
        pytest.importorskip(module, reason=f"{script} needs {module} (its extra)")
    env = {**os.environ, "ASYNCRL_BENCH_RESULTS": str(tmp_path), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke"], capture_output=True,
                          text=True, timeout=540, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if script == "sb3_baseline.py":  # prints one JSON line, writes no file
        assert json.loads(proc.stdout.strip().splitlines()[-1])["global_step"] >= 2_000
        return
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written, f"{script} wrote no results"
    payload = json.loads((tmp_path / written[0]).read_text())
    assert payload["machine"]["cpu_model"]


def test_pong_median_is_a_lower_bound_only_where_it_falls_on_a_run_that_missed():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from pong import median_minutes
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    def run(minutes, reached):
        return {"minutes_to_score": minutes if reached else None, "reached": reached, "minutes": minutes}

    assert median_minutes([run(40, True), run(60, False), run(45, True)]) == ("", 45)
    assert median_minutes([run(40, True), run(60, False), run(50, False)]) == ("> ", 50)
    assert median_minutes([run(45, False), run(60, False)]) == ("> ", 52.5)
    assert median_minutes([run(30, True), run(40, True)]) == ("", 35)
