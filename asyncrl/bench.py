"""``python -m asyncrl.bench speedup``: the paper's Table 2 on this machine.

For each method in ``--algos`` and each worker count in ``--workers``, over ``--seeds``,
trains with ``python -m asyncrl.run`` (a child process per run, one at a time) until the
mean return of the last ``--return-window`` episodes (default 100) reaches a reference score (default: the
environment's threshold) or a time cap, and records wall time, env steps, env steps/s,
per-core CPU utilisation (psutil) and whether the score was reached. From these:

- **speedup** at n workers: time to the score with 1 worker ÷ time with n
  (Mnih et al. 2016, Table 2), per seed, then median and range over seeds;
- **data efficiency** at n workers: env steps to the score with 1 worker ÷ env steps with
  n (above 1: n workers need fewer env steps);
- **throughput ratio**: env steps/s with n workers ÷ with 1 (over each run's steady part,
  start-up excluded).

Methods: ``a3c``, ``one-step-q``, ``one-step-sarsa``, ``n-step-q`` (asynchronous
actor-learners), ``a2c-sync``, ``a2c-async``, ``ppo-sync``, ``ppo-async``, ``reinforce`` (the
batched learner with n actors) and ``dqn``, ``ddpg``, ``td3``, ``sac`` (n actors filling the
shared replay of one learner; continuous-action ones need ``--env Pendulum-v1`` or another
``Box`` task, with ``--target-return``). A row whose processes outnumber the physical cores is marked
*oversubscribed*: it measures time sharing, not scaling.

Every run records its measured policy lag (updates of theta between the theta a gradient
came from and its update; ``summary.json``'s ``policy_lag``), and the tables give its median
and 90th percentile per row. ``--policy-lags 0 1 3 7 15`` adds staleness under control:
each method that takes ``--policy-lag`` runs ``--serial --workers 1 --policy-lag K`` per K and
seed (``asyncrl.policy_lag``), and its data efficiency against K sits beside the real runs'
at ``K + 1`` workers (with N equally fast actor-learners an update sees about N - 1 others).

With ``--backend ray`` the study ends by measuring each method's Ray server (the parameter
server, or the learner server) on the study's environment: its service time per update or
rollout and the worker count that saturates it (``asyncrl.backends.ray.capacity``).

Writes ``runs.csv`` and ``runs.json`` (every run, with the machine description), ``table.md``
(laid out like the paper's Table 2), ``speedup.png`` (speedup against workers, with the
ideal line), ``table2.png`` (data efficiency and speedup beside the paper's Table 2),
``return_vs_time.png`` (mean return against wall time per worker count) and, with
``--policy-lags``, ``policy_lag.png``. Each finished run's record is kept in its folder
(``bench_run.json``): a study run again with the same settings takes finished runs from
there instead of repeating them, so an interrupted study resumes where it stopped.

    python -m asyncrl.bench speedup --quick
    python -m asyncrl.bench speedup --algos a3c n-step-q --workers 1 2 4 8 16 --seeds 0 1 2
    python -m asyncrl.bench speedup --algos a3c n-step-q --policy-lags 0 1 3 7 15 ...
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asyncrl import registry


def methods() -> dict[str, list[str]]:
    """Method name to its ``asyncrl.run`` flags: every registered algorithm's
    ``AlgoSpec.methods`` (``a3c``; ``a2c-sync`` and ``a2c-async``; ...)."""
    return {method: list(flags) for method, (_, flags) in registry.methods().items()}


def ray_methods() -> list[str]:
    """Methods whose algorithm runs on ``--backend ray``."""
    return [m for m, (spec, _) in registry.methods().items() if "ray" in spec.backends]


def has_learner(method: str) -> bool:
    """Whether the method's n actors feed one more process, the learner."""
    return registry.methods()[method][0].learner is not None


def lag_capable_methods() -> list[str]:
    """Methods that take ``--serial --policy-lag K``: an algorithm with a local copy theta'
    (``AlgoSpec.local_copy``) run asynchronously (not a ``--sync`` twin)."""
    return [m for m, (spec, flags) in registry.methods().items() if spec.local_copy and "--sync" not in flags]


def study_methods(quick: bool) -> list[str]:
    """The study's default methods: those whose algorithm says ``study="quick"`` (and, for the
    full study, ``"full"``)."""
    levels = ("quick",) if quick else ("quick", "full")
    return [m for m, (spec, _) in registry.methods().items() if spec.study in levels]


PAPER_TABLE_2 = {
    "1-step Q": (1.0, 3.0, 6.3, 13.3, 24.1),
    "1-step SARSA": (1.0, 2.8, 5.9, 13.1, 22.1),
    "n-step Q": (1.0, 2.7, 5.9, 10.7, 17.2),
    "A3C": (1.0, 2.1, 3.7, 6.9, 12.5),
}
"""Mnih et al. 2016, Table 2: training speedup with 1, 2, 4, 8, 16 threads (Atari, averaged over
seven games), for reference beside this machine's figures."""

PAPER_ROWS = {"one-step-q": "1-step Q", "one-step-sarsa": "1-step SARSA", "n-step-q": "n-step Q", "a3c": "A3C"}
"""The algorithm (``registry`` name) behind each row of ``PAPER_TABLE_2``."""

PAPER_WORKERS = (1, 2, 4, 8, 16)
"""The thread counts of ``PAPER_TABLE_2``'s columns."""

QUICK = {"workers": [1, 2, 4], "seeds": [0], "target_return": 200.0, "max_seconds": 30.0}
"""``--quick``: what fits in under 5 minutes on 2 cores (a reference score of 200 instead of
CartPole-v1's 475, one seed, a 30 s cap per run)."""

FULL = {"workers": [1, 2, 4, 8, 16], "seeds": [0, 1, 2], "target_return": None, "max_seconds": 300.0}
"""The full study's defaults."""


@dataclass
class StudyConfig:
    """What ``speedup`` measures.

    Attributes:
        algos: method names (keys of ``methods()``).
        workers: worker (or actor) counts; the first is the baseline of every ratio.
        seeds: seeds, run for every (method, workers).
        env: Gymnasium environment id.
        target_return: the reference score; None: the environment's threshold.
        max_seconds: wall-time cap of one run, in seconds.
        total_steps: env-step cap of one run.
        return_window: episodes behind the mean return compared with the score.
        pin_workers: pin each worker process to a core.
        backends: ``shm`` and/or ``ray`` (``--backend``); each method runs on each.
        address: ``--address`` of the Ray cluster for ``ray`` (None: a local Ray instance per run).
        policy_lags: ``K`` values of the staleness runs (``--serial --policy-lag K``), or empty.
        out: output folder.
    """

    algos: list[str] = field(default_factory=lambda: study_methods(quick=False))
    workers: list[int] = field(default_factory=lambda: list(FULL["workers"]))
    seeds: list[int] = field(default_factory=lambda: list(FULL["seeds"]))
    env: str = "CartPole-v1"
    target_return: float | None = None
    max_seconds: float = 300.0
    total_steps: int = 10_000_000
    return_window: int = 100
    pin_workers: bool = False
    backends: list[str] = field(default_factory=lambda: ["shm"])
    address: str | None = None
    policy_lags: list[int] = field(default_factory=list)
    out: str = "bench/speedup"

    def __post_init__(self) -> None:
        known = methods()
        unknown = [a for a in self.algos if a not in known]
        if unknown:
            raise ValueError(f"--algos: unknown method {unknown[0]!r}; expected some of {', '.join(known)}")
        if not self.workers or min(self.workers) < 1:
            raise ValueError(f"--workers must be positive counts, got {self.workers}")
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")
        if not self.max_seconds > 0 or self.total_steps < 1 or self.return_window < 1:
            raise ValueError("--max-seconds, --total-steps and --return-window must be positive")
        if not self.backends or set(self.backends) - {"shm", "ray"}:
            raise ValueError(f"--backend must be shm and/or ray, got {' '.join(self.backends)}")
        if "ray" in self.backends:
            on_ray = ray_methods()
            not_on_ray = [a for a in self.algos if a not in on_ray]
            if not_on_ray:
                raise ValueError(
                    f"--backend ray runs {', '.join(registry.names(lambda s: 'ray' in s.backends))}; "
                    f"not {not_on_ray[0]}"
                )
        if self.address is not None and "ray" not in self.backends:
            raise ValueError("--address names a Ray cluster: it needs --backend ray")
        if self.policy_lags:
            if min(self.policy_lags) < 0:
                raise ValueError(f"--policy-lags must be >= 0, got {' '.join(map(str, self.policy_lags))}")
            if not self.lag_methods():
                raise ValueError(
                    f"--policy-lags needs a method that takes --policy-lag ({', '.join(lag_capable_methods())}) "
                    "in --algos"
                )

    def lag_methods(self) -> list[str]:
        """The methods of ``algos`` that the staleness runs cover (``lag_capable_methods``)."""
        return [m for m in self.algos if m in lag_capable_methods()]

    def label(self, method: str, backend: str) -> str:
        """A method's row in the tables: its name, with the backend where the study has several."""
        return method if len(self.backends) == 1 else f"{method} ({backend})"


# ---------------------------------------------------------------------------
# The computations (pure functions, tested on synthetic runs).


def processes(method: str, workers: int) -> int:
    """Processes a run keeps busy: the workers, plus the learner for A2C and PPO."""
    return workers + has_learner(method)


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratios_to_baseline(runs: list[dict[str, Any]], key: str, invert: bool = True) -> dict[tuple[str, int], dict]:
    """Per-seed ratios of each (method, workers) run to the same method and seed at the
    baseline worker count (the smallest in ``runs``), summarised over seeds.

    With ``invert`` (times, steps to the score) the ratio is ``baseline / value``, so 2
    means twice as fast; otherwise ``value / baseline`` (throughput). A run that did not
    reach the score has no time or steps to it: its seed gives no ratio, for that worker
    count and, if it is the baseline run, for every worker count.

    Args:
        runs: dicts with ``method``, ``workers``, ``seed``, ``reached_target`` and ``key``.
        key: ``time_to_target_s``, ``steps_to_target`` or ``steps_per_s``.
        invert: see above.

    Returns:
        ``{(method, workers): {"median", "min", "max", "n", "seeds"}}`` where ``n`` counts
        the seeds that gave a ratio and ``seeds`` all seeds run.
    """
    needs_target = key != "steps_per_s"

    def value(run: dict[str, Any]) -> float | None:
        if needs_target and not run["reached_target"]:
            return None
        v = run.get(key)
        return float(v) if v is not None and v > 0 else None

    base_workers = min(r["workers"] for r in runs) if runs else 1
    baseline = {(r["method"], r["seed"]): value(r) for r in runs if r["workers"] == base_workers}
    out: dict[tuple[str, int], dict] = {}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["method"], run["workers"]), []).append(run)
    for (method, workers), group in groups.items():
        values = []
        for run in group:
            base, this = baseline.get((method, run["seed"])), value(run)
            if base is not None and this is not None:
                values.append(base / this if invert else this / base)
        out[(method, workers)] = {**_spread(values), "seeds": len(group)}
    return out


def study_tables(runs: list[dict[str, Any]]) -> dict[str, dict[tuple[str, int], dict]]:
    """Speedup, data efficiency and throughput ratio (see the module docstring), plus the
    share of seeds that reached the score, for every (method, workers) of ``runs``."""
    reached: dict[tuple[str, int], dict] = {}
    for run in runs:
        cell = reached.setdefault((run["method"], run["workers"]), {"reached": 0, "seeds": 0})
        cell["seeds"] += 1
        cell["reached"] += bool(run["reached_target"])
    return {
        "speedup": ratios_to_baseline(runs, "time_to_target_s"),
        "data_efficiency": ratios_to_baseline(runs, "steps_to_target"),
        "throughput": ratios_to_baseline(runs, "steps_per_s", invert=False),
        "reached": reached,
    }


def staleness_table(lag_runs: list[dict[str, Any]]) -> dict[tuple[str, int], dict]:
    """Data efficiency of the staleness runs: per seed, env steps to the score at the
    smallest K (0) ÷ at K, summarised over seeds; ``{(method, K): ratios_to_baseline's cell}``."""
    as_workers = [{**r, "workers": r["policy_lag_setting"]} for r in lag_runs]
    return ratios_to_baseline(as_workers, "steps_to_target")


def lag_cell(runs: list[dict[str, Any]]) -> str:
    """``"median / p90"`` of the runs' measured policy lag (medians over the runs), or ``—``."""
    medians = [r["lag_median"] for r in runs if r.get("lag_median") is not None]
    p90s = [r["lag_p90"] for r in runs if r.get("lag_p90") is not None]
    if not medians:
        return "—"
    return f"{statistics.median(medians):g} / {statistics.median(p90s):g}"


def _oversubscribed(runs: list[dict[str, Any]], physical: int) -> bool:
    """Whether any of ``runs`` kept more processes busy than ``physical`` cores (as recorded,
    or from its method and worker count)."""
    return any(r.get("oversubscribed", processes(r.get("algo", r["method"]), r["workers"]) > physical) for r in runs)


def _cell(s: dict[str, Any]) -> str:
    if s["median"] is None:
        return "—"
    text = f"{s['median']:.2f}" if s["n"] == 1 else f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"
    return text + (f" [{s['n']}/{s['seeds']}]" if s["n"] < s["seeds"] else "")


def machine_line(machine: dict[str, Any], pinned: bool) -> str:
    """One line describing the machine, for every Markdown output."""
    return (
        f"Machine: {machine['cpu_model']}, {machine['physical_cores']} physical / {machine['logical_cores']} "
        f"logical cores ({machine['usable_cores']} usable), {machine['memory_gib']} GiB, {machine['os']}; "
        f"Python {machine['python']}, torch {machine['torch']}, gymnasium {machine['gymnasium']}; "
        f"workers {'pinned to cores' if pinned else 'not pinned'}."
    )


def markdown(
    runs: list[dict[str, Any]],
    machine: dict[str, Any],
    config: StudyConfig,
    lag_runs: list[dict[str, Any]] | None = None,
    capacity: list[dict[str, Any]] | None = None,
) -> str:
    """The study's tables, laid out like Mnih et al. 2016's Table 2 (methods as rows,
    worker counts as columns), then the staleness runs' table (``lag_runs``) and the Ray
    servers' capacity (``capacity``), where the study has them."""
    tables = study_tables(runs)
    workers = sorted({r["workers"] for r in runs})
    methods = list(dict.fromkeys(r["method"] for r in runs))  # rows: methods (with their backend, if several)
    physical = machine["physical_cores"] or machine["logical_cores"]
    score = runs[0]["target_return"] if runs else config.target_return
    lines = [
        machine_line(machine, config.pin_workers),
        "",
        f"{config.env}, reference score {score} (mean return of the last {config.return_window} episodes), seeds "
        f"{' '.join(map(str, config.seeds))}, at most {config.max_seconds:g} s a run. Cells: median (range) over "
        "seeds; [k/n]: only k of n seeds reached the score at both worker counts. *oversubscribed*: more busy "
        f"processes than the {physical} physical cores (the batched and off-policy learners count their learner): "
        "time sharing, not scaling.",
        "",
    ]
    header = "| method | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in workers) + " |"
    rule = "|---|" + "---|" * len(workers)

    def block(title: str, key: str) -> None:
        lines.extend([f"**{title}**", "", header, rule])
        for m in methods:
            cells = []
            for w in workers:
                s = tables[key].get((m, w))
                text = _cell(s) if s else ""
                if s and _oversubscribed([r for r in runs if r["method"] == m and r["workers"] == w], physical):
                    text += " *oversubscribed*"
                cells.append(text)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")

    block(f"Training speedup (time to the score with {workers[0]} worker ÷ with n)", "speedup")
    block(f"Data efficiency (env steps to the score with {workers[0]} worker ÷ with n)", "data_efficiency")
    block(f"Throughput (env steps/s with n workers ÷ with {workers[0]})", "throughput")
    lines.extend(
        [
            "**Runs** (medians over seeds)",
            "",
            "| method | backend | nodes | workers | reached | time to score (s) | env steps to score | env steps/s | "
            "policy lag (median / p90) | CPU per core (%) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
    )
    for m in methods:
        for w in workers:
            group = [r for r in runs if r["method"] == m and r["workers"] == w]
            if not group:
                continue
            reached = tables["reached"][(m, w)]

            def med(key: str, digits: int = 1, rows=group) -> str:
                values = [r[key] for r in rows if r.get(key) is not None]
                return f"{statistics.median(values):,.{digits}f}" if values else "—"

            cpu = [
                statistics.median([r["cpu_percent_per_core"][i] for r in group])
                for i in range(len(group[0]["cpu_percent_per_core"]))
            ]
            nodes = statistics.median(r.get("nodes", 1) for r in group)
            lines.append(
                f"| {m} | {group[0].get('backend', 'shm')} | {nodes:g} | "
                f"{w}{' *oversubscribed*' if _oversubscribed(group, physical) else ''} | "
                f"{reached['reached']}/{reached['seeds']} | {med('time_to_target_s')} | "
                f"{med('steps_to_target', 0)} | {med('steps_per_s', 0)} | {lag_cell(group)} | "
                f"{' / '.join(f'{c:.0f}' for c in cpu)} |"
            )
    lines.append("")
    lines.append(
        "Policy lag: updates of theta between the theta a gradient was computed from and its update "
        "(a batched learner: per rollout), median and 90th percentile over each run's updates, then the "
        "median over seeds."
    )
    if lag_runs:
        lines.extend(_staleness_lines(runs, lag_runs))
    if capacity:
        lines.extend(_capacity_lines(capacity))
    lines.extend(
        [
            "",
            "For reference, the paper's Table 2 (Atari, 16 CPU threads, speedup):",
            "",
            "| method | " + " | ".join(f"{w}" for w in PAPER_WORKERS) + " |",
            "|---|" + "---|" * 5,
        ]
    )
    for name, values in PAPER_TABLE_2.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def _staleness_lines(runs: list[dict[str, Any]], lag_runs: list[dict[str, Any]]) -> list[str]:
    """The staleness table: data efficiency against K per method, each followed by the real
    runs' data efficiency and measured lag at ``K + 1`` workers."""
    lags = sorted({r["policy_lag_setting"] for r in lag_runs})
    table = staleness_table(lag_runs)
    real = study_tables(runs)["data_efficiency"] if runs else {}
    lines = [
        "",
        f"**Staleness under control** (`--serial --workers 1 --policy-lag K`: every pull reads theta as it was K "
        f"updates ago; data efficiency = env steps to the score at K = {lags[0]} ÷ at K). Below each method, its real "
        "runs at K + 1 workers: their data efficiency (from the table above) and measured policy lag (median / p90).",
        "",
        "| method | " + " | ".join(f"K = {k}" for k in lags) + " |",
        "|---|" + "---|" * len(lags),
    ]
    for method in dict.fromkeys(r["method"] for r in lag_runs):
        lines.append(
            f"| {method} | "
            + " | ".join(_cell(table[(method, k)]) if (method, k) in table else "" for k in lags)
            + " |"
        )
        if any(r["method"] == method for r in runs):
            cells = []
            for k in lags:
                group = [r for r in runs if r["method"] == method and r["workers"] == k + 1]
                cell = real.get((method, k + 1))
                cells.append(f"{_cell(cell)}; lag {lag_cell(group)}" if group and cell else "")
            lines.append(f"| {method}, real runs at K + 1 workers | " + " | ".join(cells) + " |")
    return lines


def _capacity_lines(capacity: list[dict[str, Any]]) -> list[str]:
    """The Ray servers' capacity table."""

    def num(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    lines = [
        "",
        "**Ray server capacity** (one server per run: the parameter server of the Hogwild methods, the learner "
        "server of the batched ones; service time = server seconds per update or rollout, from calls pipelined "
        "from one process; saturates at = the workers whose updates (rollouts) together take all of it, from one "
        "worker's rate in the runs above; `asyncrl.backends.ray.capacity`)",
        "",
        "| method | server | per | payload (MB) | service time (ms) | most per s | round trip (ms) | one worker per s "
        "| saturates at (workers) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in capacity:
        trip = None if c["round_trip_s"] is None else 1000 * c["round_trip_s"]
        lines.append(
            f"| {c['method']} | {c['server']} | {c['unit']} | {num(c['payload_mb'], '.3f')} | "
            f"{1000 * c['service_s']:.2f} | {c['server_per_s']:,.0f} | {num(trip, '.2f')} | "
            f"{num(c['worker_per_s'], ',.1f')} | {num(c['saturation_workers'], '.1f')} |"
        )
    return lines


# ---------------------------------------------------------------------------
# Running.


def run_once(
    method: str,
    workers: int,
    seed: int,
    config: StudyConfig,
    run_dir: Path,
    backend: str = "shm",
    policy_lag: int | None = None,
) -> dict[str, Any]:
    """One ``python -m asyncrl.run`` child process (``--backend backend``; with ``policy_lag``
    K: ``--serial --policy-lag K``, or plain ``--serial`` for 0); returns its summary plus
    ``cpu_percent_per_core`` (each core's utilisation over the run, psutil) and
    ``process_wall_s``. ``steps_per_s`` is the steady rate (``metrics.steady_steps_per_s``
    after the first 0.5 s: start-up weighs heavily in runs of a few seconds), or the whole
    run's (``whole_run_steps_per_s``) when the run is too short for it.

    Raises:
        RuntimeError: if the run fails (its stderr's last line is quoted).
    """
    import psutil

    from asyncrl.metrics import steady_steps_per_s

    cmd = [
        sys.executable,
        "-m",
        "asyncrl.run",
        *methods()[method],
        "--env",
        config.env,
        "--workers",
        str(workers),
        "--seed",
        str(seed),
        "--max-seconds",
        str(config.max_seconds),
        "--total-steps",
        str(config.total_steps),
        "--run-dir",
        str(run_dir),
        "--progress",
        "none",
        "--log-interval",
        "0.5",
        "--return-window",
        str(config.return_window),
    ]
    if config.target_return is not None:
        cmd += ["--target-return", str(config.target_return)]
    if config.pin_workers:
        cmd.append("--pin-workers")
    if backend != "shm":
        cmd += ["--backend", backend] + (["--address", config.address] if config.address else [])
    if policy_lag is not None:
        cmd += ["--serial"] + (["--policy-lag", str(policy_lag)] if policy_lag else [])
    psutil.cpu_percent(percpu=True)  # starts the measurement interval
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=config.max_seconds + 120)
    wall = time.perf_counter() - start
    per_core = psutil.cpu_percent(percpu=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{' '.join(cmd[2:])} failed with exit code {proc.returncode}: {tail}")
    summary = json.loads((run_dir / "summary.json").read_text())
    steady = steady_steps_per_s(run_dir / "metrics.csv", skip_s=0.5)
    return {
        **summary,
        "whole_run_steps_per_s": summary["steps_per_s"],
        "steps_per_s": steady if steady is not None else summary["steps_per_s"],
        "cpu_percent_per_core": per_core,
        "process_wall_s": wall,
    }


RUN_FIELDS = (
    "reached_target",
    "time_to_target_s",
    "steps_to_target",
    "global_step",
    "wall_time_s",
    "steps_per_s",
    "whole_run_steps_per_s",
    "target_return",
    "stop_reason",
    "process_wall_s",
    "updates",
)
"""The summary entries each run's record keeps."""

REUSE_KEYS = ("env", "target_return", "max_seconds", "total_steps", "return_window", "pin_workers", "address")
"""The settings a kept run record must share with the study to be reused."""


def _planned(config: StudyConfig) -> list[dict[str, Any]]:
    """The study's runs in order: per seed, each method (and backend) at each worker count,
    then each staleness run (``lag``: K) of that seed."""
    plan = []
    for seed in config.seeds:
        for method, backend in [(m, b) for m in config.algos for b in config.backends]:
            for workers in config.workers:
                name = f"{method}-{backend}-w{workers}-s{seed}"
                plan.append(
                    {"method": method, "backend": backend, "workers": workers, "seed": seed, "lag": None, "name": name}
                )
        for method in config.lag_methods() if config.policy_lags else []:
            for lag in config.policy_lags:
                plan.append(
                    {
                        "method": method,
                        "backend": "shm",
                        "workers": 1,
                        "seed": seed,
                        "lag": lag,
                        "name": f"{method}-lag{lag}-s{seed}",
                    }
                )
    return plan


def speedup_study(
    config: StudyConfig, runner: Callable[..., dict[str, Any]] = run_once, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the study and write its outputs into ``config.out``.

    Worker counts run back to back within each seed and method (1, 2, 4, ... then the
    next method, then the next seed), so slow drifts of background load fall on every
    count alike; a seed's staleness runs follow its real runs. Each run keeps its folder
    under ``config.out/runs`` with its record (``bench_run.json``), which a later study
    with the same settings reuses; the tables are rewritten after every run, the figures at the end.

    Args:
        config: what to run.
        runner: ``runner(method, workers, seed, config, run_dir, backend)`` (and, for a
            staleness run, ``policy_lag=K``) ``-> summary`` (``run_once``; tests pass a fake).
        log: where progress lines go.

    Returns:
        ``{"machine", "config", "runs", "lag_runs", "paths"}``; ``runs.json`` holds the same.
    """
    from asyncrl.metrics import machine_info

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    settings = {k: asdict(config)[k] for k in REUSE_KEYS}
    runs: list[dict[str, Any]] = []
    lag_runs: list[dict[str, Any]] = []
    paths: dict[str, str] = {}
    for planned in _planned(config):
        method, backend, workers, seed, lag = (planned[k] for k in ("method", "backend", "workers", "seed", "lag"))
        run_dir = out / "runs" / planned["name"]
        record_path = run_dir / "bench_run.json"
        kept = json.loads(record_path.read_text()) if record_path.exists() else None
        if kept is not None and kept.get("settings") == settings:
            run = kept["run"]
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # (an unfinished or differently configured run)
            extra = {} if lag is None else {"policy_lag": lag}
            summary = runner(method, workers, seed, config, run_dir, backend, **extra)
            run = _record(summary, config, machine, method, backend, workers, seed, lag, run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            record_path.write_text(json.dumps({"settings": settings, "run": run}, indent=2))
        (runs if lag is None else lag_runs).append(run)
        t = run["time_to_target_s"]
        log(
            f"{run['method']:<15} {f'K={lag}' if lag is not None else f'{workers:>3} workers'} seed {seed}: "
            f"{f'{t:.1f} s' if t is not None else 'not reached'} to {run['target_return']}, "
            f"{run['steps_per_s'] or 0:,.0f} steps/s{' (oversubscribed)' if run['oversubscribed'] else ''}"
            f"{'' if run['lag_median'] is None else ', policy lag median ' + str(run['lag_median'])}"
        )
        if runs:  # (the tables so far; the figures once, at the end)
            write_outputs(runs, machine, config, lag_runs, figures=False)
    capacity = ray_capacity(config, runs) if "ray" in config.backends else []
    paths = write_outputs(runs, machine, config, lag_runs, capacity)
    return {
        "machine": machine,
        "config": asdict(config),
        "runs": runs,
        "lag_runs": lag_runs,
        "capacity": capacity,
        "paths": paths,
    }


def ray_capacity(config: StudyConfig, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method run on ``--backend ray``: its server's capacity
    (``asyncrl.backends.ray.capacity.server_capacity``), measured now on the study's
    environment, and the worker count that saturates it, from the method's ray runs at the
    smallest worker count (their updates, or rollouts, per second per worker).

    Returns:
        one dict per method: ``method`` and ``server_capacity``'s entries, with
        ``worker_per_s`` and ``saturation_workers`` (None without a run to take it from).
    """
    import tempfile

    from asyncrl.backends.ray import capacity

    out = []
    base_workers = min(config.workers)
    for method in config.algos:
        base = [r for r in runs if r["algo"] == method and r["backend"] == "ray" and r["workers"] == base_workers]
        with tempfile.TemporaryDirectory() as tmp:
            flags = [*methods()[method], "--env", config.env, "--run-dir", tmp]
            cap = capacity.server_capacity(flags, has_learner(method), address=config.address)
        rates = [rate for rate in (capacity.worker_rate(r, cap) for r in base) if rate is not None]
        worker_per_s = statistics.median(rates) if rates else None
        saturation = capacity.saturation_workers(1.0 / worker_per_s, cap["service_s"]) if worker_per_s else None
        out.append({"method": method, **cap, "worker_per_s": worker_per_s, "saturation_workers": saturation})
    return out


def _record(
    summary: dict[str, Any],
    config: StudyConfig,
    machine: dict[str, Any],
    method: str,
    backend: str,
    workers: int,
    seed: int,
    lag: int | None,
    run_dir: Path,
) -> dict[str, Any]:
    """One run's row: its method, worker count, seed and the summary entries of the tables."""
    ray_summary = summary.get("ray") or {}
    on_cluster = backend == "ray" and config.address is not None
    measured = summary.get("policy_lag") or {}
    busy = 1 if lag is not None else processes(method, workers)  # (a --serial run is one process)
    return {
        "method": config.label(method, backend),
        "algo": method,
        "backend": backend,
        "nodes": ray_summary.get("nodes_used", 1),
        "workers": workers,
        "seed": seed,
        "policy_lag_setting": lag,
        "processes": busy,
        # (a cluster gives each actor-learner one of the CPUs it declares)
        "oversubscribed": bool(summary.get("oversubscribed"))
        if on_cluster
        else busy > (machine["physical_cores"] or 1),
        "pinned": config.pin_workers,
        **{k: summary.get(k) for k in RUN_FIELDS},
        "lag_median": measured.get("median"),
        "lag_p90": measured.get("p90"),
        "lag_mean": measured.get("mean"),
        "cpu_percent_per_core": summary.get("cpu_percent_per_core", []),
        "run_dir": str(run_dir),
    }


def write_outputs(
    runs: list[dict[str, Any]],
    machine: dict[str, Any],
    config: StudyConfig,
    lag_runs: list[dict[str, Any]] | None = None,
    capacity: list[dict[str, Any]] | None = None,
    figures: bool = True,
) -> dict[str, str]:
    """``runs.csv``, ``runs.json``, ``table.md`` and, with ``figures``, ``speedup.png``,
    ``table2.png``, ``return_vs_time.png`` and, with staleness runs, ``policy_lag.png``;
    every one carries the machine description. Returns the paths written."""
    out = Path(config.out)
    lag_runs = lag_runs or []
    names = ["runs.csv", "runs.json", "table.md"]
    if figures:
        names += ["speedup.png", "table2.png", "return_vs_time.png"] + (["policy_lag.png"] if lag_runs else [])
    paths = {name: str(out / name) for name in names}
    tables = study_tables(runs)
    lag_table = staleness_table(lag_runs)
    (out / "runs.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "config": asdict(config),
                "runs": runs,
                "lag_runs": lag_runs,
                "capacity": capacity or [],
                "tables": {name: {f"{m}|{w}": v for (m, w), v in table.items()} for name, table in tables.items()},
                "staleness": {f"{m}|{k}": v for (m, k), v in lag_table.items()},
            },
            indent=2,
        )
    )
    machine_columns = {f"machine_{k}": v for k, v in machine.items()}
    with open(out / "runs.csv", "w", newline="") as f:
        columns = (
            [k for k in runs[0] if k != "cpu_percent_per_core"] + ["cpu_percent_per_core"] + list(machine_columns)
            if runs
            else list(machine_columns)
        )
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for run in runs + lag_runs:
            writer.writerow(
                {
                    **run,
                    "cpu_percent_per_core": " ".join(f"{c:.1f}" for c in run["cpu_percent_per_core"]),
                    **machine_columns,
                }
            )
    (out / "table.md").write_text(markdown(runs, machine, config, lag_runs, capacity))
    if not figures:
        return paths
    _plot_speedup(runs, tables, machine, config, out / "speedup.png")
    _plot_table2(runs, tables, machine, config, out / "table2.png")
    _plot_returns(runs, machine, config, out / "return_vs_time.png")
    if lag_runs:
        _plot_staleness(runs, lag_runs, tables, lag_table, machine, config, out / "policy_lag.png")
    return paths


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, footer: str, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` with ``footer`` (the machine line) in small print, and close it."""
    fig.text(0.01, 0.005, footer, fontsize=5, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)


def _plot_speedup(runs, tables, machine, config, path: Path) -> None:
    plt = _pyplot()

    workers = sorted({r["workers"] for r in runs})
    physical = machine["physical_cores"] or machine["logical_cores"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.plot(workers, [w / workers[0] for w in workers], "k--", label="ideal (linear)")
    for method in dict.fromkeys(r["method"] for r in runs):
        xs, ys, lo, hi = [], [], [], []
        for w in workers:
            s = tables["speedup"].get((method, w))
            if s and s["median"] is not None:
                xs.append(w)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=method)
    if max(workers) > physical:
        ax.axvspan(
            physical + 0.5,
            max(workers) * 1.1,
            color="grey",
            alpha=0.15,
            label=f"oversubscribed (> {physical} physical cores)",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.set_xlabel("workers (actor-learners, or actors)")
    ax.set_ylabel("training speedup (time to score, 1 worker ÷ n)")
    ax.set_title(f"{config.env}: speedup, {machine['physical_cores']} physical cores", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path, machine_line(machine, config.pin_workers))


def _plot_table2(runs, tables, machine, config, path: Path) -> None:
    """Data efficiency (left) and training speedup (right) against workers, each method
    beside its algorithm's row of the paper's Table 2 (dashed, the same colour)."""
    plt = _pyplot()

    workers = sorted({r["workers"] for r in runs})
    physical = machine["physical_cores"] or machine["logical_cores"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paper_drawn: set[str] = set()
    for i, method in enumerate(dict.fromkeys(r["method"] for r in runs)):
        colour = colours[i % len(colours)]
        algo = next(r["algo"] for r in runs if r["method"] == method)
        paper = PAPER_ROWS.get(registry.methods()[algo][0].name) if algo in registry.methods() else None
        for ax, key in zip(axes, ("data_efficiency", "speedup")):
            cells = [(w, tables[key].get((method, w))) for w in workers]
            points = [(w, c) for w, c in cells if c and c["median"] is not None]
            if points:
                xs = [w for w, _ in points]
                ys = [c["median"] for _, c in points]
                err = [[c["median"] - c["min"] for _, c in points], [c["max"] - c["median"] for _, c in points]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colour, label=method)
            if paper is not None and (paper, key) not in paper_drawn:
                paper_drawn.add((paper, key))
                ax.plot(
                    PAPER_WORKERS,
                    PAPER_TABLE_2[paper],
                    linestyle="--",
                    marker="x",
                    color=colour,
                    alpha=0.6,
                    label=f"paper: {paper}",
                )
    top = max(workers + [16])
    for ax, title in zip(
        axes, ("data efficiency (env steps to score, 1 worker ÷ n)", "training speedup (time to score, 1 worker ÷ n)")
    ):
        ax.plot([1, top], [1, top], "k:", linewidth=1, label="linear")
        if max(workers) > physical:
            ax.axvspan(
                physical + 0.5, top * 1.1, color="grey", alpha=0.12, label=f"oversubscribed (> {physical} cores)"
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ticks = sorted(set(workers) | set(PAPER_WORKERS))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("workers (actor-learners) / the paper's threads")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("ratio to 1 worker")
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{config.env} against Mnih et al. 2016, Table 2 (Atari, time speedup)", fontsize=10)
    _save(fig, path, machine_line(machine, config.pin_workers))


def _plot_staleness(runs, lag_runs, tables, lag_table, machine, config, path: Path) -> None:
    """Data efficiency against K (``--policy-lag``) per method, and the real runs' data
    efficiency placed at their measured median lag."""
    plt = _pyplot()

    lags = sorted({r["policy_lag_setting"] for r in lag_runs})
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in lag_runs)):
        colour = colours[i % len(colours)]
        points = [(k, lag_table.get((method, k))) for k in lags]
        points = [(k, c) for k, c in points if c and c["median"] is not None]
        if points:
            ax.errorbar(
                [k + 1 for k, _ in points],
                [c["median"] for _, c in points],
                yerr=[[c["median"] - c["min"] for _, c in points], [c["max"] - c["median"] for _, c in points]],
                marker="o",
                capsize=3,
                color=colour,
                label=f"{method}: --policy-lag K",
            )
        real = []
        for w in sorted({r["workers"] for r in runs if r["method"] == method}):
            group = [r for r in runs if r["method"] == method and r["workers"] == w and r.get("lag_median") is not None]
            cell = tables["data_efficiency"].get((method, w))
            if group and cell and cell["median"] is not None:
                real.append((statistics.median(r["lag_median"] for r in group) + 1, cell["median"], w))
        if real:
            ax.plot(
                [x for x, _, _ in real],
                [y for _, y, _ in real],
                linestyle="--",
                marker="s",
                color=colour,
                alpha=0.7,
                label=f"{method}: real runs at their median lag",
            )
            for x, y, w in real:
                ax.annotate(f"{w}w", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(1.0, color="k", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks([k + 1 for k in lags], [str(k) for k in lags])
    ax.set_xlabel("policy lag K (updates)")
    ax.set_ylabel("data efficiency (env steps to score at K = 0 ÷ at K)")
    ax.set_title(f"{config.env}: staleness under control", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path, machine_line(machine, config.pin_workers))


def _plot_returns(runs, machine, config, path: Path) -> None:
    plt = _pyplot()

    from asyncrl.metrics import read_metrics

    methods = list(dict.fromkeys(r["method"] for r in runs))
    cols = min(3, len(methods))
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    seed = config.seeds[0]
    for ax, method in zip(axes.flat, methods):
        for run in runs:
            if run["method"] != method or run["seed"] != seed:
                continue
            metrics_path = Path(run["run_dir"]) / "metrics.csv"
            if not metrics_path.exists():
                continue
            m = read_metrics(metrics_path)
            label = f"{run['workers']} worker{'s' if run['workers'] > 1 else ''}"
            ax.plot(m["wall_time_s"], m["mean_return"], label=label + (" (oversub.)" if run["oversubscribed"] else ""))
        if runs and runs[0]["target_return"] is not None:
            ax.axhline(runs[0]["target_return"], color="k", linestyle=":", linewidth=1)
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel(f"mean return (last {config.return_window})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    _save(fig, path, machine_line(machine, config.pin_workers) + f" Seed {seed}.", dpi=110)


# ---------------------------------------------------------------------------
# Command line.


def _check_reference_score(env_id: str) -> None:
    """Raise ValueError (an ``EnvError``) if ``env_id`` cannot be made or has no reward
    threshold to serve as the reference score."""
    from asyncrl.envs import make_env

    env = make_env(env_id)
    threshold = env.spec.reward_threshold if env.spec is not None else None
    env.close()
    if threshold is None:
        raise ValueError(f"{env_id} has no reward threshold to use as the reference score: give --target-return")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asyncrl.bench", description="Benchmarks of asyncrl on this machine."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "speedup",
        help="training speedup and data efficiency against worker count (Table 2)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--algos", nargs="+", choices=list(methods()), help=f"methods (default: {' '.join(study_methods(quick=False))})"
    )
    p.add_argument("--workers", type=int, nargs="+", help="worker counts (default: 1 2 4 8 16)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2)")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id (default: %(default)s)")
    p.add_argument("--target-return", type=float, help="reference score (default: the env's threshold; --quick: 200)")
    p.add_argument("--max-seconds", type=float, help="wall-time cap of one run (default: 300; --quick: 30)")
    p.add_argument("--total-steps", type=int, default=10_000_000, help="env-step cap of one run (default: %(default)s)")
    p.add_argument(
        "--return-window",
        type=int,
        default=100,
        help="episodes behind the mean return compared with the score (default: %(default)s)",
    )
    p.add_argument("--pin-workers", action="store_true", help="pin each worker process to a core (psutil)")
    p.add_argument(
        "--backend",
        nargs="+",
        default=["shm"],
        choices=list(registry.BACKENDS),
        help="where the shared state lives; several: each method on each, side by side in one table "
        "(ray: the Hogwild and batched-learner methods; pip install -e '.[ray]') (default: shm)",
    )
    p.add_argument(
        "--address",
        help="--backend ray: the Ray cluster to run on (auto or HOST:PORT; default: a local Ray instance per run)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{' '.join(study_methods(quick=True))} at 1 2 4 workers, seed 0, score 200, 30 s cap: "
        "under 5 minutes on 2 cores",
    )
    p.add_argument(
        "--policy-lags",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also run each method that takes --policy-lag as --serial --workers 1 --policy-lag K for each K "
        "(e.g. 0 1 3 7 15) and seed: data efficiency against a controlled lag",
    )
    p.add_argument("--out", default="bench/speedup", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    try:
        config = StudyConfig(
            algos=args.algos or study_methods(args.quick),
            workers=args.workers or list(defaults["workers"]),
            seeds=args.seeds if args.seeds is not None else list(defaults["seeds"]),
            env=args.env,
            target_return=args.target_return if args.target_return is not None else defaults["target_return"],
            max_seconds=args.max_seconds or defaults["max_seconds"],
            total_steps=args.total_steps,
            return_window=args.return_window,
            pin_workers=args.pin_workers,
            backends=args.backend,
            address=args.address,
            policy_lags=args.policy_lags,
            out=args.out,
        )
        if config.target_return is None:
            _check_reference_score(config.env)
    except ValueError as exc:
        print(f"asyncrl.bench: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        result = speedup_study(config)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"asyncrl.bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asyncrl.bench: interrupted", file=sys.stderr)
        return 130
    print(Path(result["paths"]["table.md"]).read_text())
    print("wrote " + ", ".join(result["paths"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
