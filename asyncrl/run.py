"""``python -m asyncrl.run``: parse the flags, build the trainer, train.

Exit codes: 0 done, 1 an actor-learner failed beyond the restart policy, 2 bad input
(including a ``--resume`` folder without a usable checkpoint), 130 / 143 interrupted by
SIGINT / SIGTERM (after a final checkpoint).
"""

from __future__ import annotations

import os
import sys

# One thread per process for every numeric library, set before NumPy or torch load:
# with several processes on few cores, their thread pools only fight for the cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from asyncrl.checkpoint import CheckpointError  # noqa: E402
from asyncrl.config import CliError, parse_args  # noqa: E402
from asyncrl.envs import EnvError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from asyncrl.algos.batched import DeviceError
    from asyncrl.backends import BackendError
    from asyncrl.replay import ReplayMemoryError
    from asyncrl.trainer import RunDirError, Trainer, WorkerFailure

    try:
        config = parse_args(argv)
        trainer = Trainer(config)
    except (CliError, EnvError, RunDirError, DeviceError, ReplayMemoryError, BackendError) as exc:
        print(f"asyncrl.run: error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = trainer.train()
    except (CheckpointError, BackendError) as exc:
        print(f"asyncrl.run: error: {exc}", file=sys.stderr)
        return 2
    except WorkerFailure as exc:
        print(f"asyncrl.run: error: {exc}; run stopped, checkpoint in {trainer.run_dir}", file=sys.stderr)
        return 1
    if trainer.interrupted_by is not None:
        print(f"asyncrl.run: interrupted; checkpoint in {trainer.run_dir}", file=sys.stderr)
        return 128 + int(trainer.interrupted_by)
    last = f"last {summary['return_window']}"
    mean = summary["mean_return"] if summary["mean_return"] is not None else float("nan")
    if summary["reached_target"]:  # the window at the crossing (episodes drained after it can lower the last one)
        result = (
            f"mean return ({last}) {summary['mean_return_at_target']:.1f} at T={summary['steps_to_target']:,}, "
            f"target {summary['target_return']} reached"
        )
    elif summary["target_return"] is None:
        result = f"mean return ({last}) {mean:.1f}, no target"
    else:
        result = f"mean return ({last}) {mean:.1f}, target {summary['target_return']} not reached"
    print(
        f"{summary['stop_reason']}: T={summary['global_step']:,} env steps in {summary['wall_time_s']:.1f} s "
        f"({summary['steps_per_s']:,.0f} steps/s, {summary['workers']} "
        f"{_workers_word(summary['workers'], summary['learner'])} "
        f"on {summary['cpu_count']} cores"
        f"{_ray_placement(summary['ray']) if summary['ray'] else ''}"
        f"{', oversubscribed' if summary['oversubscribed'] else ''}); "
        f"{result}; run dir {trainer.run_dir}"
    )
    return 0


def _workers_word(workers: int, learner: bool) -> str:
    """``workers`` (with ``learner``: ``actors + 1 learner``), singular for one."""
    if learner:
        return ("actor" if workers == 1 else "actors") + " + 1 learner"
    return "worker" if workers == 1 else "workers"


def _ray_placement(ray_summary: dict) -> str:
    nodes = ray_summary["nodes_used"]
    return f" (Ray: {nodes} node{'s' if nodes != 1 else ''}, {ray_summary['cluster_cpus']:g} CPUs)"


if __name__ == "__main__":
    sys.exit(main())
