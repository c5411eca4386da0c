"""Joining or starting a Ray cluster, and placing actor-learners on its nodes."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from asyncrl.backends.ray import RayBackendError, first_line, import_ray
from asyncrl.backends.ray.adapters import SERVER_TIMEOUT_S

# -- the driver's side ----------------------------------------------------------------


def connect(address: str | None, workers: int) -> tuple[bool, float]:
    """Start a local Ray instance (``address`` None: one CPU per worker, however many cores
    there are) or join the cluster at ``address``.

    Returns:
        ``(started_here, CPUs of the cluster)``.

    Raises:
        RayBackendError: if the cluster cannot be reached, or has fewer CPUs than ``workers``.
    """
    ray = import_ray()
    if ray.is_initialized():
        started = False
    else:
        options = dict(logging_level=logging.ERROR, log_to_driver=False)
        if address is not None:
            address = reachable_address(address)
        try:
            if address is None:
                # Arguments and answers up to 8 MiB (theta and d theta of the paper's CNN) travel
                # inline in Ray's RPCs instead of through the object store: measured 20% less
                # time per push for the MinAtar CNN (0.5 MB) here.
                ray.init(
                    address="local",  # a new instance, even where `ray start` runs one
                    num_cpus=max(os.cpu_count() or 1, workers),
                    include_dashboard=False,
                    _system_config={"max_direct_call_object_size": 8 << 20, "task_rpc_inlined_bytes_limit": 64 << 20},
                    **options,
                )
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address is None:
                raise RayBackendError(f"cannot start a local Ray instance: {first_line(exc)}") from None
            raise RayBackendError(
                f"--address {address}: cannot join the Ray cluster: {first_line(exc)} (this shell's RAY_AUTH_MODE is "
                f"{os.environ.get('RAY_AUTH_MODE', 'unset')}: it must match the cluster's, e.g. RAY_AUTH_MODE=token "
                "where `ray start` enabled token authentication)"
            ) from None
        started = address is None
    cpus = float(ray.cluster_resources().get("CPU", 0))
    if cpus < workers:
        if started:
            ray.shutdown()
        raise RayBackendError(
            f"--workers {workers} needs {workers} CPUs of the Ray cluster (one per actor-learner); "
            f"it has {cpus:g} (`ray status` lists them)"
        )
    return started, cpus


def reachable_address(address: str) -> str:
    """``HOST:PORT`` of the cluster that ``--address`` names (``auto``: the one ``ray start``
    made on this node, or ``RAY_ADDRESS``), once a TCP connection to it succeeds within
    ``SERVER_TIMEOUT_S`` (``ray.init`` itself retries an unreachable address for minutes).

    Raises:
        RayBackendError: if no cluster is found or it does not answer.
    """
    from ray._private import services

    try:
        resolved = services.canonicalize_bootstrap_address_or_die(address)
        host, port = resolved.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=SERVER_TIMEOUT_S).close()
    except (ConnectionError, OSError, ValueError) as exc:
        raise RayBackendError(
            f"--address {address}: no Ray cluster answers there ({first_line(exc)}); start one with `ray start --head`"
        ) from None
    return resolved


def spread_over_nodes(nodes: list[dict[str, Any]], workers: int) -> list[str | None]:
    """A node id for each actor-learner: round-robin over the live nodes (in ``ray.nodes()``'s
    order), skipping a node once its CPUs are taken, so that ``workers`` actor-learners span
    as many nodes as they can (Ray's own SPREAD strategy is best-effort: two actors started
    together may land on one node). None where the cluster's CPUs run out.

    Args:
        nodes: ``ray.nodes()``: dicts with ``NodeID``, ``Alive`` and ``Resources``.
        workers: actor-learners to place.
    """
    free = {n["NodeID"]: int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive")}
    order = [node for node, cpus in free.items() if cpus > 0]
    out: list[str | None] = []
    while len(out) < workers and order:
        for node in list(order):
            if len(out) == workers:
                break
            out.append(node)
            free[node] -= 1
            if free[node] == 0:
                order.remove(node)
    return out + [None] * (workers - len(out))
