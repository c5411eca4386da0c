"""The Ray backend (``--backend ray``): the Hogwild algorithms and the batched learner across
the nodes of a Ray cluster.

One **parameter server** (a Ray actor on the driver's node) holds theta, the shared
optimizer's statistics, theta^- and the global step counter ``T``. Each **actor-learner**
is a Ray actor with one CPU, on any node: it keeps a replica of theta, computes its
gradient as on shared memory, and pushes it; the server applies each gradient on
arrival, in arrival order, without waiting for the others (the asynchronous updates of
Mnih et al. 2016, Section 4, across machines) and answers with theta as it is then, which
becomes the replica that the actor-learner's next segment starts from (``theta' <-
theta``). Gradients and parameters travel as NumPy arrays (inline in Ray's RPCs up to 8 MiB
on a local instance, else through its object store).

The actor-learners are the algorithm files' own (``AlgoSpec.actor``): they see a
``RemoteState`` (``pull``/``push``/``model``/``target``) and ``RemoteCounters`` (``T``, the
stop flag), the same interface as ``algos.base.SharedState`` and ``shared.GlobalCounters``.
Differences from shared memory, all bounded by one segment:

- ``T`` as an actor-learner reads it is the server's count at its last push plus its own
  env steps since; the server's count is exact. The target network ``theta^-`` is refreshed
  on the server when an actor-learner's ``T`` crosses a multiple of ``I_target`` (the first
  to see it asks, as on shared memory), and every actor-learner fetches the new one with
  its next push.
- One-step Q and Sarsa act with the replica of theta from their last push (on shared
  memory they read theta itself).
- The policy lag of an update (the server's version when the gradient arrives minus the
  version it was computed from) is measured and logged (``policy_lag`` in ``metrics.csv``).

The batched learner (A2C, PPO, REINFORCE) runs as one Ray actor, the ``LearnerServer``: the
rollout slots and the published policy live in its process (``storage.RolloutSlots`` and
``PolicyStore``, as on shared memory), the algorithm's learner trains in a thread, and the
algorithm's ``Actor`` on any node sees ``RemoteSlots`` and ``RemotePolicyStore`` (the slots'
actor side: acquire, commit a rollout, abandon; the policy's reader side). ``--sync`` keeps
its lockstep: an actor waits for a free slot inside the learner's process.

The driver (``RaySupervisor``, in the trainer's process) runs every actor-learner in
chunks of ``REPORT_INTERVAL_S`` (each chunk returns its statistics report), copies ``T``
from the server, replaces actor-learners that die (their process, or their node), and
takes the server's state for every checkpoint. Losing the server (the parameter server or
the learner) stops the run; its last checkpoint stays, and ``--resume`` continues from it.
Every call an actor makes to the server waits at most ``adapters.SERVER_TIMEOUT_S``.

Modules, by duty: ``adapters`` (what a remote worker sees), ``servers`` (the Ray actors),
``cluster`` (joining a cluster, placing workers), ``driver`` (``RaySupervisor``).
"""

from __future__ import annotations

from typing import Any

from asyncrl import registry
from asyncrl.backends import Backend, BackendError


class RayBackendError(BackendError):
    """A ``--backend ray`` run that cannot start: Ray missing, an algorithm it does not run,
    a cluster that cannot be reached or is too small."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def import_ray():
    """``import ray``, or a one-line ``RayBackendError`` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayBackendError("--backend ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def check(config: Any) -> None:
    """Check that ``--backend ray`` can run ``config`` (before anything starts).

    Raises:
        RayBackendError: if Ray is not installed, the algorithm does not run on Ray, or
            the learner is asked for on a GPU.
    """
    if BACKEND.name not in registry.get(config.run.algo).backends:
        raise RayBackendError(
            f"--backend ray runs {', '.join(registry.names(lambda s: BACKEND.name in s.backends))}; "
            f"--algo {config.run.algo} runs on --backend shm"
        )
    if getattr(config.algo, "learner_device", "cpu") != "cpu":
        raise RayBackendError("--backend ray runs the learner on a CPU; --learner-device needs --backend shm")
    import_ray()


def make_supervisor(config: Any, shared: Any, counters: Any, obs: Any, action: Any, learner_id: int | None) -> Any:
    """A ``RaySupervisor``: joins or starts Ray (``--address``).

    Raises:
        RayBackendError: if the Ray cluster cannot be reached or is too small.
    """
    from asyncrl.backends.ray.driver import RaySupervisor

    return RaySupervisor(config, shared, counters, obs, action, learner_id)


BACKEND = Backend(
    name="ray",
    summary="a Ray parameter server (or the batched learner) as a Ray actor; workers on any node of a Ray cluster",
    check=check,
    make_supervisor=make_supervisor,
    remote=True,
)
