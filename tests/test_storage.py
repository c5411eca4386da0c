"""Rollout slots: the free -> writing -> full -> reading -> free cycle, the batch layout,
and the published policy's sequence lock."""

import numpy as np
import pytest
import torch

from asyncrl.networks import build_actor_critic
from asyncrl.storage import FREE, FULL, PolicyStore, RolloutSlots, SlotError


@pytest.fixture
def slots():
    return RolloutSlots(num_slots=3, unroll_length=4, envs_per_slot=2, obs_shape=(3,),
                        ctx=torch.multiprocessing.get_context("fork"))


def _rollout(mark: float, T=4, E=2):
    """A rollout whose every entry encodes (mark, t, e), so the batch layout can be checked."""
    t = np.arange(T + 1)[:, None]
    e = np.arange(E)[None, :]
    code = (mark * 100 + t * 10 + e).astype(np.float32)  # [T+1, E]
    return {
        "obs": np.repeat(code[:, :, None], 3, axis=2), "values": code,
        "actions": code[:T].astype(np.int64), "rewards": code[:T], "log_probs": code[:T],
        "final_values": code[:T], "terminated": (code[:T] % 2 == 0), "truncated": (code[:T] % 3 == 0),
    }


def test_slots_cycle_free_full_free_and_batch_is_time_major(slots):
    a = slots.acquire(worker_id=0, timeout=1.0)
    b = slots.acquire(worker_id=1, timeout=1.0)
    slots.commit(a, _rollout(1), policy_version=5)
    slots.commit(b, _rollout(2), policy_version=7)
    taken = slots.take(2, timeout=1.0)
    assert sorted(taken) == sorted([a, b])
    batch = slots.batch(taken)
    assert batch["obs"].shape == (5, 4, 3) and batch["values"].shape == (5, 4)
    assert batch["rewards"].shape == batch["actions"].shape == batch["terminated"].shape == (4, 4)
    marks = {a: 1, b: 2}
    for j, index in enumerate(taken):
        for e in range(2):
            column = j * 2 + e  # rollout j * E + e
            want = [marks[index] * 100 + t * 10 + e for t in range(5)]
            np.testing.assert_array_equal(batch["values"][:, column].numpy(), want)
            np.testing.assert_array_equal(batch["obs"][:, column, 2].numpy(), want)
            np.testing.assert_array_equal(batch["actions"][:, column].numpy(), want[:4])
    assert batch["policy_version"].tolist() == [5 if i == a else 7 for i in taken for _ in range(2)]
    slots.release(taken)
    assert slots.cycles.tolist()[a] == slots.cycles.tolist()[b] == 1
    assert slots.state[a].item() == slots.state[b].item() == FREE
    # every slot comes back: three acquires succeed, a fourth finds none
    held = [slots.acquire(0, timeout=1.0) for _ in range(3)]
    assert sorted(held) == [0, 1, 2]
    assert slots.acquire(0, timeout=0.05) is None


def test_no_unwritten_slot_reaches_the_learner(slots):
    index = slots.acquire(0, timeout=1.0)
    with pytest.raises(SlotError, match="writing, expected reading"):
        slots.batch([index])  # not committed
    slots.full.put(index)  # a bug that queued a slot without writing it ...
    with pytest.raises(SlotError, match="writing, expected full"):
        slots.take(1, timeout=1.0)  # ... is refused by the learner
    other = slots.acquire(0, timeout=1.0)
    slots.commit(other, _rollout(3), 0)
    with pytest.raises(SlotError, match="full, expected writing"):
        slots.commit(other, _rollout(3), 0)  # twice
    taken = slots.take(1, timeout=1.0)
    slots.release(taken)
    with pytest.raises(SlotError, match="free, expected reading"):
        slots.release(taken)  # twice


def test_reclaim_frees_a_dead_actors_slots(slots):
    mine = slots.acquire(worker_id=4, timeout=1.0)
    theirs = slots.acquire(worker_id=5, timeout=1.0)
    assert slots.reclaim(4) == 1
    assert slots.state[mine].item() == FREE and slots.state[theirs].item() != FREE
    assert slots.acquire(0, timeout=1.0) is not None  # the third, never used
    assert slots.acquire(0, timeout=1.0) == mine


def test_partial_take_can_be_given_back(slots):
    index = slots.acquire(0, timeout=1.0)
    slots.commit(index, _rollout(1), 0)
    taken = slots.take(2, timeout=0.05)
    assert taken == [index]
    slots.give_back_unread(taken)
    assert slots.state[index].item() == FULL


def test_policy_store_versions_and_consistent_reads():
    model = build_actor_critic(3, 2, (8,), shared_torso=True).share_memory()
    store = PolicyStore(model, initial_version=4)
    assert store.version == 4
    learner = build_actor_critic(3, 2, (8,), shared_torso=True)
    for p in learner.parameters():
        torch.nn.init.constant_(p, 0.5)
    version = store.publish(list(learner.state_dict().values()))
    assert version == store.version == 5
    copy = build_actor_critic(3, 2, (8,), shared_torso=True)
    params = list(copy.state_dict().values())
    shared = list(model.state_dict().values())
    assert store.read(lambda: torch._foreach_copy_(params, shared)) == 5
    assert all(torch.all(p == 0.5) for p in copy.parameters())

    calls = []

    def copy_during_a_publication():  # the writer moves the sequence while we copy
        calls.append(1)
        if len(calls) == 1:
            store.publish(list(learner.state_dict().values()))

    assert store.read(copy_during_a_publication) == 6
    assert len(calls) == 2  # the torn copy was retried
