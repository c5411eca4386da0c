"""Both backends against the written contract (``asyncrl.backends.contract``), member by
member: every method a Protocol names exists on each implementation with the same
parameters, every property is a property, every attribute is there."""

from __future__ import annotations

import inspect
import threading

import pytest
import torch
from torch import nn

from asyncrl import backends
from asyncrl.algos.base import SharedState
from asyncrl.backends import contract
from asyncrl.backends.ray.adapters import RemoteCounters, RemotePolicyStore, RemoteSlots, RemoteState, RemoteTarget
from asyncrl.backends.ray.driver import RaySupervisor
from asyncrl.policy_lag import LaggedModel, MeasuredLag
from asyncrl.shared import GlobalCounters, TargetNetwork, make_shared_optimizer, share_model
from asyncrl.storage import PolicyStore, RolloutSlots
from asyncrl.supervisor import Supervisor
from asyncrl.sync_round import SyncMember

IMPLEMENTATIONS = [
    (contract.StepCounter, GlobalCounters, RemoteCounters),
    (contract.Target, TargetNetwork, RemoteTarget),
    (contract.SharedModel, MeasuredLag, RemoteState),  # (MeasuredLag: SharedState.for_worker's view)
    (contract.SharedModel, SyncMember, LaggedModel),  # the views of --sync and --policy-lag
    (contract.RolloutWriter, RolloutSlots, RemoteSlots),
    (contract.PolicyReader, PolicyStore, RemotePolicyStore),
    (contract.Supervisor, Supervisor, RaySupervisor),
]


def _members(protocol: type) -> dict[str, object]:
    names = set(protocol.__annotations__) | {n for n in vars(protocol) if not n.startswith("_")}
    return {n: inspect.getattr_static(protocol, n, None) for n in sorted(names)}


def _parameters(function) -> list[tuple[str, bool]]:
    """(name, has a default) of every parameter but self."""
    return [(p.name, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("protocol, shm, ray", IMPLEMENTATIONS, ids=lambda x: getattr(x, "__name__", ""))
def test_both_backends_implement_every_member_of_the_contract(protocol, shm, ray):
    for cls in (shm, ray):
        for name, member in _members(protocol).items():
            if isinstance(member, property):
                assert isinstance(inspect.getattr_static(cls, name, None), property), f"{cls.__name__}.{name}"
            elif callable(member):
                implemented = inspect.getattr_static(cls, name, None)
                assert callable(implemented), f"{cls.__name__}.{name} missing"
                mine, wanted = _parameters(implemented), _parameters(member)
                # the contract's parameters first, in order; any more must be optional
                assert mine[: len(wanted)] == wanted, f"{cls.__name__}.{name} signature"
                assert all(default for _, default in mine[len(wanted):]), f"{cls.__name__}.{name} extra parameters"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return share_model(nn.Linear(3, 2))


def test_instances_carry_the_contracts_attributes():
    """Data attributes (``model``, ``target``) are set by constructors: check live objects."""
    model = _model()
    target = TargetNetwork(share_model(nn.Linear(3, 2)), model, 10, threading.Lock())
    shm_state = SharedState(model=model, optimizer=make_shared_optimizer("rmsprop", model.parameters(), lr=1e-3, eps=1e-5),
                            target=target)
    remote_target = RemoteTarget(nn.Linear(3, 2), server=None, interval=10)
    remote_state = RemoteState(nn.Linear(3, 2), None, RemoteCounters(), 0, remote_target)
    view, _ = shm_state.for_worker(0, GlobalCounters(2))
    assert isinstance(view, MeasuredLag) and view.model is model and view.target is target
    for obj, protocol in ((view, contract.SharedModel), (remote_state, contract.SharedModel),
                          (target, contract.Target), (remote_target, contract.Target),
                          (GlobalCounters(2), contract.StepCounter), (RemoteCounters(), contract.StepCounter),
                          (PolicyStore(model), contract.PolicyReader)):
        assert isinstance(obj, protocol), (type(obj).__name__, protocol.__name__)


def test_every_backend_is_registered_under_its_name_and_unknown_ones_are_refused():
    for name in backends.NAMES:
        backend = backends.get(name)
        assert backend.name == name and callable(backend.check) and callable(backend.make_supervisor)
    assert backends.get("ray").remote and not backends.get("shm").remote
    with pytest.raises(ValueError, match="--backend must be one of shm, ray"):
        backends.get("mpi")
