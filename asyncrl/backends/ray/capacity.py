"""How many workers one Ray server can serve: its service time per update or rollout.

Every Hogwild update on ``--backend ray`` is one call to the single ``ParameterServer``
(push the clipped gradient, apply it, answer with theta), and every rollout of the batched
family one ``acquire`` + ``commit`` to the single ``LearnerServer``, whose thread trains on
them. A Ray actor answers its calls one at a time, so the server saturates once the
workers together ask for more than one second of its time per second:

    N_sat = (worker's seconds per update, round trip included) / (server's seconds per update)

``parameter_server_capacity`` measures the denominator by pipelining pushes from this
process (so the server never waits for the next one) and a single push's round trip;
``learner_server_capacity`` the rollouts per second the learner server takes in and
trains on when rollouts come as fast as it takes them. The numerator comes from a run:
its wall time per update with one worker (``saturation_workers``). ``benchmarks/
ray_backend.py --studies capacity`` reports them for the MLP, MinAtar's CNN and the
paper's Atari CNN, and ``python -m asyncrl.bench speedup --backend ray`` beside its runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from asyncrl import registry
from asyncrl.backends.ray import import_ray
from asyncrl.backends.ray.cluster import connect
from asyncrl.backends.ray.servers import LearnerServer, ParameterServer, state_payload


def _setup(argv: list[str]) -> Any:
    from asyncrl.config.cli import parse_args
    from asyncrl.prepare import prepare

    return prepare(parse_args(argv))


def _ensure_ray(address: str | None = None) -> tuple[Any, bool]:
    """Ray, initialised as a run initialises it (``cluster.connect``: the running instance,
    the cluster at ``address``, or a new local one with the runs' RPC settings); and whether
    this call started it (and so must shut it down)."""
    ray = import_ray()
    started, _ = connect(address, 1)
    return ray, started


def parameter_server_capacity(
    argv: list[str], pushes: int = 200, round_trips: int = 30, address: str | None = None
) -> dict[str, Any]:
    """The ``ParameterServer``'s service time for the run ``argv`` describes (``asyncrl.run``
    flags: ``--algo``, ``--env``, ...), on a Ray instance of this machine (started if none
    is running; ``address``: the cluster to join instead).

    Returns:
        ``server`` (``"parameter server"``), ``unit`` (``"update"``), ``params`` (parameters
        of theta), ``payload_mb`` (one gradient, float32, MB), ``round_trip_s`` (median of
        ``round_trips`` single pushes, waited for one by one), ``service_s`` (seconds of
        server time per push: ``pushes`` pipelined pushes over the time they took),
        ``server_per_s`` (its inverse: the most updates one server applies per second) and
        ``steps_per_rollout`` (None: a push's env steps are the worker's).

    Raises:
        RayBackendError: if Ray is not installed; CliError, EnvError as ``asyncrl.run``.
    """
    ray, started = _ensure_ray(address)
    try:
        setup = _setup([*argv, "--workers", "1"])
        config, obs, action = setup.config, setup.obs, setup.action
        shared = registry.get(config.run.algo).make_shared(config, obs, action)
        server = (
            ray.remote(ParameterServer).options(num_cpus=0).remote(config, obs, action, state_payload(shared, 0), 0, 1)
        )
        rng = np.random.default_rng(0)
        grads = [1e-6 * rng.standard_normal(p.shape).astype(np.float32) for p in shared.shared_params]
        ray.get(server.pull.remote())
        for _ in range(5):  # warm-up
            ray.get(server.push.remote(0, grads, 0, 0, None, -1))
        trips = []
        for _ in range(round_trips):
            start = time.perf_counter()
            ray.get(server.push.remote(0, grads, 0, 0, None, -1))
            trips.append(time.perf_counter() - start)
        start = time.perf_counter()
        ray.get([server.push.remote(0, grads, 0, 0, None, -1) for _ in range(pushes)])
        service = (time.perf_counter() - start) / pushes
        params = sum(int(np.prod(p.shape)) for p in shared.shared_params)
        ray.kill(server)
        return {
            "server": "parameter server",
            "unit": "update",
            "params": params,
            "payload_mb": params * 4 / 1e6,
            "round_trip_s": statistics.median(trips),
            "service_s": service,
            "server_per_s": 1.0 / service,
            "steps_per_rollout": None,
        }
    finally:
        if started:
            ray.shutdown()


def learner_server_capacity(argv: list[str], seconds: float = 15.0, address: str | None = None) -> dict[str, Any]:
    """The ``LearnerServer``'s rollouts per second for the batched-learner run ``argv``
    describes: one actor slot set refilled from this process as fast as the server frees
    it, for ``seconds``, while its thread trains on what it receives (``address`` as in
    ``parameter_server_capacity``).

    Returns:
        ``server`` (``"learner server"``), ``unit`` (``"rollout"``), ``steps_per_rollout``
        (env steps in one slot), ``payload_mb`` (one slot's arrays, MB), ``rollouts``
        (committed in the window), ``round_trip_s`` (None), ``service_s`` (seconds per
        rollout) and ``server_per_s`` (rollouts per second).

    Raises:
        RayBackendError: if Ray is not installed; CliError, EnvError as ``asyncrl.run``.
    """
    ray, started = _ensure_ray(address)
    try:
        setup = _setup([*argv, "--workers", "1", "--total-steps", str(10**12)])
        config, obs, action = setup.config, setup.obs, setup.action
        shared = registry.get(config.run.algo).make_shared(config, obs, action)
        slots = shared.slots
        rollout = {name: getattr(slots, name)[0].numpy() for name in slots.FIELDS}
        if slots.initial_state is not None:
            rollout["initial_state"] = slots.initial_state[0].numpy()
        stats = None if slots.stats is None else slots.stats[0].numpy()
        steps = slots.unroll_length * slots.envs_per_slot
        server = (
            ray.remote(max_concurrency=4)(LearnerServer)
            .options(num_cpus=0)
            .remote(config, obs, action, state_payload(shared, 0), 0, 2)
        )
        ray.get(server.hello.remote(0))

        def one() -> bool:
            index, _ = ray.get(server.acquire.remote(0, 5.0))
            if index is None:
                return False
            ray.get(server.commit.remote(0, index, rollout, 0, stats, steps))
            return True

        for _ in range(3):  # warm-up: the learner's first batches
            one()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            count += one()
        elapsed = time.perf_counter() - start
        ray.get(server.request_stop.remote())
        ray.kill(server)
        nbytes = sum(a.nbytes for a in rollout.values())
        return {
            "server": "learner server",
            "unit": "rollout",
            "steps_per_rollout": steps,
            "payload_mb": nbytes / 1e6,
            "rollouts": count,
            "round_trip_s": None,
            "service_s": elapsed / max(count, 1),
            "server_per_s": count / elapsed,
        }
    finally:
        if started:
            ray.shutdown()


def server_capacity(argv: list[str], learner: bool, address: str | None = None) -> dict[str, Any]:
    """The capacity of the server a run of ``argv`` would use: ``learner_server_capacity``
    if ``learner``, else ``parameter_server_capacity`` (both answer ``server``, ``unit``,
    ``service_s``, ``server_per_s``, ``payload_mb``, ``round_trip_s`` and
    ``steps_per_rollout``).

    Raises:
        as ``parameter_server_capacity`` and ``learner_server_capacity``.
    """
    if learner:
        return learner_server_capacity(argv, address=address)
    return parameter_server_capacity(argv, address=address)


def worker_rate(summary: dict[str, Any], capacity: dict[str, Any]) -> float | None:
    """One worker's updates (rollouts, for a learner server) per second in a run, from its
    ``summary.json`` entries (``updates``, ``wall_time_s``, ``steps_per_s``, ``workers``)
    and ``server_capacity``'s ``steps_per_rollout``; None if the run made none."""
    workers = summary.get("workers") or 1
    if capacity["steps_per_rollout"] is not None:
        rate = summary.get("steps_per_s") or 0.0
        return rate / capacity["steps_per_rollout"] / workers if rate > 0 else None
    updates, wall = summary.get("updates") or 0, summary.get("wall_time_s") or 0.0
    return updates / wall / workers if updates > 0 and wall > 0 else None


def saturation_workers(seconds_per_update: float, service_s: float) -> float:
    """``N_sat``: the worker count at which updates (or rollouts) arrive as fast as one
    server serves them, from one worker's wall time per update (round trip included) and
    the server's service time.

    Raises:
        ValueError: if either time is not positive.
    """
    if not seconds_per_update > 0 or not service_s > 0:
        raise ValueError(f"times must be positive, got {seconds_per_update} and {service_s}")
    return seconds_per_update / service_s
