"""The Ray backend against shared memory, and on a two-node cluster.

Three studies, each run as child processes of this one (``python -m asyncrl.run``):

1. ``overhead``: A3C (``--algo``) with 2 workers, ``--backend shm`` and ``--backend ray`` side by side
   (alternating which goes first), ``--seconds`` of training each, ``--repeats`` times, on
   CartPole-v1 (an MLP: microseconds of compute per env step) and MinAtar/Breakout-v1 (the
   MinAtar CNN). Throughput is the steady rate: env steps between the first ``metrics.csv``
   row after ``WARMUP_S`` and the last row before the stop, over the time between them (so
   neither Ray's start-up nor the stop is counted). Reported: each backend's env steps/s
   and the ratio ray / shm, median (range) over the repeats.
2. ``solve``: A3C ``--backend ray`` with 2 workers on CartPole-v1 until the mean return of
   the last 100 episodes reaches 475 (the env's threshold), seeds ``--seeds``, within
   ``--solve-steps`` env steps.
4. ``capacity``: how many workers one server can serve (``asyncrl.backends.ray.capacity``).
   For A3C's parameter server with the MLP (CartPole-v1), MinAtar's CNN and the paper's
   Atari CNN (ALE/Pong-v5), and A2C's learner server (CartPole-v1, ALE/Pong-v5): the
   server's seconds per update (rollout) with calls pipelined from one process, one push's
   round trip, and one worker's updates (rollouts) per second in a ``--backend ray`` run of
   ``--seconds`` with 1 worker; saturation = server rate / one worker's rate.
3. ``cluster``: a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``:
   head and one worker node with 2 CPUs each, on 127.0.0.1); A3C ``--address`` with 2
   workers spread over both nodes; once ``T`` passes ``--remove-at`` env steps the worker
   node is removed (its actor-learners die with it); the run must replace them on the
   head and still reach 475. Seeds ``--seeds``.

    python benchmarks/ray_backend.py                       # all three, seeds 0 1 2
    python benchmarks/ray_backend.py --studies overhead --repeats 5

Writes ``benchmarks/results/ray_backend.{json,md}``; needs ``pip install -e ".[ray,minatar]"``.
Figures are for this machine (the header gives its cores): with 2 cores, 2 workers and
Ray's own processes (GCS, raylet, the parameter server) share them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Ray on 127.0.0.1 only (its single-machine mode): set before Ray is imported, inherited by the runs.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, asyncrl_run, child_env, fmt, parse_args, spread, write_results  # noqa: E402

# (the capacity study makes MinAtar environments in this process: benchmarks/minatar.py must not hide the package)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

WARMUP_S = 5.0
"""Seconds of training left out of the steady rate (workers starting, first episodes)."""

OVERHEAD_ENVS = ("CartPole-v1", "MinAtar/Breakout-v1")


def steady_rate(run_dir: Path) -> float:
    """Env steps/s between the first metrics row after ``WARMUP_S`` and the last row but one."""
    from asyncrl.metrics import read_metrics

    m = read_metrics(run_dir / "metrics.csv")
    rows = [(t, s) for t, s in zip(m["wall_time_s"], m["global_step"]) if t >= WARMUP_S][:-1]
    if len(rows) < 2:
        raise RuntimeError(f"{run_dir}: too few metrics rows after {WARMUP_S} s for a steady rate")
    (t0, s0), (t1, s1) = rows[0], rows[-1]
    return (s1 - s0) / (t1 - t0)


def overhead(args, tmp: Path) -> dict:
    out = {}
    for env in args.envs:
        rates = {"shm": [], "ray": []}
        for repeat in range(args.repeats):
            order = ("shm", "ray") if repeat % 2 == 0 else ("ray", "shm")
            for backend in order:
                run_dir = tmp / f"overhead-{env.replace('/', '_')}-{backend}-{repeat}"
                asyncrl_run(["--algo", args.algo, "--env", env, "--workers", "2", "--backend", backend,
                             "--max-seconds", str(args.seconds), "--total-steps", "100000000",
                             "--target-return", "inf", "--log-interval", "0.5", "--seed", str(repeat)], run_dir)
                rates[backend].append(steady_rate(run_dir))
                print(f"overhead {env} {backend} repeat {repeat}: {rates[backend][-1]:,.0f} env steps/s", flush=True)
        ratios = [r / s for r, s in zip(rates["ray"], rates["shm"])]
        out[env] = {"shm": rates["shm"], "ray": rates["ray"], "ratio": ratios,
                    "shm_spread": spread(rates["shm"]), "ray_spread": spread(rates["ray"]),
                    "ratio_spread": spread(ratios)}
    return out


def solve(args, tmp: Path) -> dict:
    out = {}
    for seed in args.seeds:
        summary = asyncrl_run(["--algo", "a3c", "--env", "CartPole-v1", "--workers", "2", "--backend", "ray",
                               "--seed", str(seed), "--total-steps", str(args.solve_steps)], tmp / f"solve-{seed}")
        out[seed] = {k: summary[k] for k in ("reached_target", "steps_to_target", "time_to_target_s", "global_step",
                                             "steps_per_s", "worker_failures")}
        out[seed]["mean_policy_lag"] = summary["ray"]["mean_policy_lag"]
        print(f"solve seed {seed}: {out[seed]}", flush=True)
    return out


def cluster_run(seed: int, run_dir: Path, remove_at: int, total_steps: int) -> dict:
    """One A3C run on a fresh two-node loopback cluster whose worker node is removed at ``T >= remove_at``."""
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]  # the cluster's workers import this checkout
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        proc = subprocess.Popen([sys.executable, "-m", "asyncrl.run", "--algo", "a3c", "--env", "CartPole-v1",
                                 "--workers", "2", "--backend", "ray", "--address", cluster.address,
                                 "--seed", str(seed), "--total-steps", str(total_steps), "--run-dir", str(run_dir),
                                 "--progress", "none", "--log-interval", "0.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
        removed_at = None
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            metrics = run_dir / "metrics.csv"
            rows = metrics.read_text().splitlines() if metrics.exists() else []
            if removed_at is None and len(rows) > 1 and int(rows[-1].split(",")[0]) >= remove_at:
                removed_at = int(rows[-1].split(",")[0])
                cluster.remove_node(worker_node)
        stdout, stderr = proc.communicate(timeout=60)
        summary = json.loads((run_dir / "summary.json").read_text())
        return {"returncode": proc.returncode, "removed_node_at_T": removed_at,
                **{k: summary[k] for k in ("reached_target", "steps_to_target", "time_to_target_s", "global_step",
                                           "worker_failures")},
                "nodes_used": summary["ray"]["nodes_used"], "stderr_tail": stderr[-600:]}
    finally:
        cluster.shutdown()


def cluster(args, tmp: Path) -> dict:
    out = {}
    for seed in args.seeds:
        out[seed] = cluster_run(seed, tmp / f"cluster-{seed}", args.remove_at, args.solve_steps)
        print(f"cluster seed {seed}: { {k: v for k, v in out[seed].items() if k != 'stderr_tail'} }", flush=True)
    return out


CAPACITY_CASES = (
    ("a3c", "CartPole-v1", "MLP", ()),
    ("a3c", "MinAtar/Breakout-v1", "MinAtar CNN", ()),
    ("a3c", "ALE/Pong-v5", "the paper's Atari CNN", ()),
    ("a3c", "ALE/Pong-v5", "the paper's Atari CNN, --envs-per-actor 16", ("--envs-per-actor", "16")),
    ("a2c", "CartPole-v1", "MLP", ()),
    ("a2c", "ALE/Pong-v5", "the paper's Atari CNN", ()),
)
"""(algorithm, environment, network, more flags) of the capacity study."""


def capacity(args, tmp: Path) -> dict:
    from asyncrl.backends.ray import capacity as cap

    out = {}
    for algo, env, network, more in args.capacity_cases:
        flags = ["--algo", algo, "--env", env, *more]
        summary = asyncrl_run([*flags, "--workers", "1", "--backend", "ray", "--max-seconds", str(args.seconds),
                               "--total-steps", "100000000", "--target-return", "inf"],
                              tmp / f"capacity-{algo}-{env.replace('/', '_')}-{len(out)}")
        server = cap.server_capacity([*flags, "--run-dir", str(tmp / "probe")], learner=algo != "a3c")
        worker_per_s = cap.worker_rate(summary, server)
        row = {"algo": algo, "env": env, "network": network, **server, "worker_per_s": worker_per_s,
               "worker_steps_per_s": summary["steps_per_s"],
               "saturation_workers": cap.saturation_workers(1.0 / worker_per_s, server["service_s"])}
        out[f"{algo} {env} {' '.join(more)}".strip()] = row
        print(f"capacity {algo} {env}: {row}", flush=True)
    return out


def markdown(results: dict, args) -> str:
    lines = []
    if "overhead" in results:
        lines += [f"## Ray against shared memory: {args.algo}, 2 workers, {args.seconds:g} s each, "
                  f"{args.repeats} repeats", "",
                  f"`python benchmarks/ray_backend.py --studies overhead --algo {args.algo} --envs {' '.join(args.envs)} "
                  f"--repeats {args.repeats} --seconds {args.seconds:g}`. Steady env steps/s (rows after {WARMUP_S:g} s, "
                  "last row left out); median (range).", "",
                  "| env | shm env steps/s | ray env steps/s | ray / shm |", "|---|---|---|---|"]
        for env, r in results["overhead"].items():
            lines.append(f"| {env} | {fmt(r['shm_spread'], 0)} | {fmt(r['ray_spread'], 0)} | "
                         f"**{fmt(r['ratio_spread'], 2)}** |")
        lines.append("")
    if "solve" in results:
        lines += [f"## A3C `--backend ray`, 2 workers, CartPole-v1 to 475 (within {args.solve_steps:,} env steps)", "",
                  "| seed | reached | env steps to target | s to target | mean policy lag |", "|---|---|---|---|---|"]
        for seed, r in results["solve"].items():
            lines.append(f"| {seed} | {r['reached_target']} | {r['steps_to_target'] or '-'} | "
                         f"{r['time_to_target_s'] or float('nan'):.1f} | {r['mean_policy_lag']:.2f} |")
        lines.append("")
    if "capacity" in results:
        lines += ["## One server's capacity: the worker count that saturates it", "",
                  f"`python benchmarks/ray_backend.py --studies capacity --name {args.name}`. Service time: the "
                  "server's seconds per update (A3C: push the clipped gradient, apply it, answer with theta) or "
                  "per rollout (A2C: acquire + commit, trained on by the learner's thread), from calls pipelined "
                  "from one process. One worker: its updates (rollouts) per second in a `--backend ray` run with "
                  f"1 worker, {args.seconds:g} s. Saturates at: server rate ÷ one worker's rate.", "",
                  "| algorithm | env (network) | payload (MB) | service time (ms) | server max per s | round trip (ms) "
                  "| one worker per s (env steps/s) | saturates at (workers) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["capacity"].values():
            trip = f"{1000 * r['round_trip_s']:.2f}" if r["round_trip_s"] is not None else "—"
            lines.append(f"| {r['algo']} (per {r['unit']}) | {r['env']} ({r['network']}) | {r['payload_mb']:.3f} | "
                         f"{1000 * r['service_s']:.2f} | {r['server_per_s']:,.0f} | {trip} | "
                         f"{r['worker_per_s']:,.1f} ({r['worker_steps_per_s']:,.0f}) | "
                         f"**{r['saturation_workers']:.1f}** |")
        lines.append("")
    if "cluster" in results:
        lines += ["## Two-node loopback cluster, worker node removed mid-run", "",
                  f"Head and worker node with 2 CPUs each; node removed once T ≥ {args.remove_at:,}.", "",
                  "| seed | node removed at T | failures (replaced) | nodes used | reached | env steps to target | exit |",
                  "|---|---|---|---|---|---|---|"]
        for seed, r in results["cluster"].items():
            lines.append(f"| {seed} | {r['removed_node_at_T']} | {len(r['worker_failures'])} | {r['nodes_used']} | "
                         f"{r['reached_target']} | {r['steps_to_target'] or '-'} | {r['returncode']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", default=["overhead", "solve", "cluster"],
                        choices=["overhead", "solve", "cluster", "capacity"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--algo", default="a3c", help="the overhead study's algorithm (default: %(default)s)")
    parser.add_argument("--envs", nargs="+", default=list(OVERHEAD_ENVS), help="the overhead study's environments")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--solve-steps", type=int, default=2_000_000)
    parser.add_argument("--remove-at", type=int, default=20_000)
    parser.add_argument("--name", default="ray_backend")
    args = parse_args(parser, studies=["overhead", "solve", "capacity"], repeats=1, envs=["CartPole-v1"], seconds=9.0,
                      seeds=[0], solve_steps=2_000, capacity_cases=CAPACITY_CASES[:1] + CAPACITY_CASES[4:5])
    if not args.smoke:
        args.capacity_cases = CAPACITY_CASES
    results: dict = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for study in args.studies:
            run_study = {"overhead": overhead, "solve": solve, "cluster": cluster, "capacity": capacity}[study]
            results[study] = run_study(args, Path(tmp))
    path = write_results(args.name, results, markdown(results, args))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
