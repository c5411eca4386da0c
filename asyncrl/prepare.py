"""Preparing a run: its config checked against its environment, defaults that depend on
the environment filled in, its folder created, before any process starts."""

from __future__ import annotations

import dataclasses
import math
import os
import time

from asyncrl import backends, envs, registry
from asyncrl.config import CliError, Config
from asyncrl.distributions import ActionSpec
from asyncrl.networks import NetworkError, ObsSpec, resolve_network
from asyncrl.replay import check_replay_memory, transition_fields

__all__ = ["RunDirError", "Setup", "prepare"]


class RunDirError(ValueError):
    """A run folder that cannot be created or written."""


@dataclasses.dataclass
class Setup:
    """A config resolved against its environment, ready to train."""

    config: Config
    obs: ObsSpec
    action: ActionSpec


def prepare(config: Config) -> Setup:
    """Check the environment and fill in defaults that depend on it.

    Resolves ``target_return`` (the env's ``reward_threshold``; ``inf`` if it has none)
    and ``run_dir`` (``runs/<algo>-<env>-<seed>-<timestamp>``), and creates the folder.

    Raises:
        EnvError: if the environment cannot be made, its spaces do not suit the
            algorithm, or ``--network`` cannot read its observations.
        RunDirError: if the run folder cannot be created or written.
        CliError: if ``--policy-lag`` is asked of an algorithm that pulls no local copy, or
            a Hogwild method's ``--sync`` with ``--policy-lag`` or ``--backend ray``.
        DeviceError: if ``--learner-device`` asks for a device this machine lacks.
        ReplayMemoryError: if ``--replay-size`` transitions would not fit in memory.
        BackendError: if the backend cannot run the config (``--backend ray``: Ray missing, an
            algorithm it does not run).
    """
    run = config.run
    if run.policy_lag and not registry.get(run.algo).local_copy:
        raise CliError(
            f"--policy-lag delays the parameters an actor-learner pulls; --algo {run.algo} does not pull a copy "
            f"(use --algo {', '.join(registry.names(lambda s: s.local_copy))})"
        )
    # (a Hogwild algorithm whose config has no --sync, such as one registered from outside, has no twin)
    if registry.get(run.algo).family == registry.HOGWILD and getattr(config.algo, "sync", False):
        if run.policy_lag:
            raise CliError(
                "--sync applies each round's mean gradient to theta; it cannot be combined with --policy-lag"
            )
        if run.backend != "shm":
            raise CliError(f"--sync runs on --backend shm (its round's barrier is in shared memory), not {run.backend}")
    backends.get(run.backend).check(config)  # (Ray: installed, and it runs the algorithm)
    env = envs.make_env(run.env, run.seed, options=envs.EnvOptions.from_run(run))
    try:
        obs, action = envs.check_spaces(env, run.algo)
        try:
            resolve_network(config.algo.network, obs)
        except NetworkError as exc:
            raise envs.EnvError(f"{run.env}: {exc}") from None
        if registry.get(run.algo).family == registry.REPLAY:  # the replay's shared memory, before any is taken
            check_replay_memory(
                config.algo.replay_size,
                run.workers,
                transition_fields(obs.shape, obs.np_dtype, action.shape, action.np_dtype),
            )
        if (
            getattr(config.algo, "normalize_obs", False) or getattr(config.algo, "normalize_reward", False)
        ) and obs.is_image:
            raise envs.EnvError(
                f"{run.env}: --normalize-obs and --normalize-reward need flat observations, got {obs.describe()}"
            )
        threshold = env.spec.reward_threshold if env.spec is not None else None
    finally:
        env.close()
    target = run.target_return
    if target is None:
        target = float(threshold) if threshold is not None else math.inf
    run_dir = run.run_dir
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe_env = run.env.replace(":", "_").replace("/", "_")
        run_dir = os.path.join("runs", f"{run.algo}-{safe_env}-{run.seed}-{stamp}")
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise RunDirError(f"--run-dir {run_dir} is not a writable folder: {exc.strerror or exc}") from None
    run = dataclasses.replace(run, target_return=target, run_dir=run_dir)
    device = getattr(config.algo, "learner_device", None)
    if device is not None:
        from asyncrl.algos.batched import check_device

        check_device(device)  # before any process starts
    return Setup(Config(run=run, algo=config.algo), obs, action)
