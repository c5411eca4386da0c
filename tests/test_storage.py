"""Rollout slots: the free -> writing -> full -> reading -> free cycle, the batch layout,
and the published policy's sequence lock."""

import threading
import time

import numpy as np
import pytest
import torch

from asyncrl.networks import build_actor_critic
from asyncrl.storage import FREE, PolicyStore, PublicationStalled, RolloutSlots, SlotError


@pytest.fixture
def slots():
    """Two actors with two slots each."""
    return RolloutSlots(actors=2, slots_per_actor=2, unroll_length=4, envs_per_slot=2, obs_shape=(3,))


def _rollout(mark: float, T=4, E=2):
    """A rollout whose every entry encodes (mark, t, e), so the batch layout can be checked."""
    t = np.arange(T + 1)[:, None]
    e = np.arange(E)[None, :]
    code = (mark * 100 + t * 10 + e).astype(np.float32)  # [T+1, E]
    return {
        "obs": np.repeat(code[:, :, None], 3, axis=2), "values": code,
        "actions": code[:T].astype(np.int64), "rewards": code[:T], "log_probs": code[:T],
        "final_obs": np.repeat(code[:T, :, None], 3, axis=2), "final_values": code[:T], "terminated": (code[:T] % 2 == 0), "truncated": (code[:T] % 3 == 0),
    }


def test_slots_cycle_free_full_free_and_batch_is_time_major(slots):
    a = slots.acquire(worker_id=1, timeout=1.0)
    b = slots.acquire(worker_id=0, timeout=1.0)
    assert a in slots.owned(1) == range(2, 4) and b in slots.owned(0) == range(0, 2)
    slots.commit(a, _rollout(1), policy_version=5)
    slots.commit(b, _rollout(2), policy_version=7)
    taken = slots.take(2, timeout=1.0)
    assert taken == [a, b]  # oldest first
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
    assert batch["policy_version"].tolist() == [5, 5, 7, 7]
    slots.release(taken)
    assert slots.cycles[a].item() == slots.cycles[b].item() == 1
    assert slots.state[a].item() == slots.state[b].item() == FREE
    # every slot comes back: each actor gets its two, and a third waits in vain
    held = [slots.acquire(w, timeout=1.0) for w in (0, 0, 1, 1)]
    assert sorted(held) == [0, 1, 2, 3]
    assert slots.acquire(0, timeout=0.05) is None


def test_no_unwritten_slot_reaches_the_learner(slots):
    index = slots.acquire(0, timeout=1.0)
    with pytest.raises(SlotError, match="writing, expected reading"):
        slots.batch([index])  # not committed
    assert slots.take(1, timeout=0.05) == []  # a slot being written is never taken
    slots.commit(index, _rollout(3), 0)
    with pytest.raises(SlotError, match="full, expected writing"):
        slots.commit(index, _rollout(3), 0)  # twice
    with pytest.raises(SlotError, match="full, expected reading"):
        slots.batch([index])  # not taken
    taken = slots.take(1, timeout=1.0)
    slots.release(taken)
    with pytest.raises(SlotError, match="free, expected reading"):
        slots.release(taken)  # twice


def test_take_waits_for_slots_committed_meanwhile(slots):
    first = slots.acquire(0, timeout=1.0)
    slots.commit(first, _rollout(1), 0)
    assert slots.take(2, timeout=0.05) == [first]  # only one came in time
    second = slots.acquire(1, timeout=1.0)
    timer = threading.Timer(0.05, slots.commit, args=(second, _rollout(2), 0))
    timer.start()
    assert slots.take(1, timeout=5.0) == [second]
    timer.join()


def test_reclaim_frees_a_dead_actors_slot(slots):
    mine = slots.acquire(worker_id=0, timeout=1.0)
    theirs = slots.acquire(worker_id=1, timeout=1.0)
    assert slots.reclaim(0) == 1
    assert slots.state[mine].item() == FREE and slots.state[theirs].item() != FREE
    assert slots.reclaim(0) == 0


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


def _publisher(store, stop, model_size):
    """Publish weights whose every entry is the version being written, as fast as it can."""
    torch.set_num_threads(1)
    learner = build_actor_critic(3, 2, (model_size,), shared_torso=True)
    tensors = list(learner.state_dict().values())
    version = store.version
    while not stop.is_set():
        version += 1
        for t in tensors:
            t.fill_(float(version))
        store.publish(tensors)


def test_policy_store_reads_are_consistent_under_a_concurrent_writer():
    ctx = torch.multiprocessing.get_context("fork")
    model = build_actor_critic(3, 2, (256,), shared_torso=True).share_memory()
    store = PolicyStore(model)
    stop = ctx.Event()
    writer = ctx.Process(target=_publisher, args=(store, stop, 256), daemon=True)
    writer.start()
    try:
        local = build_actor_critic(3, 2, (256,), shared_torso=True)
        params, shared = list(local.state_dict().values()), list(model.state_dict().values())
        versions = []
        deadline = time.monotonic() + 20
        while len(set(versions)) < 50 and time.monotonic() < deadline:
            version = store.read(lambda: torch._foreach_copy_(params, shared), timeout_s=5.0)
            values = torch.cat([p.reshape(-1) for p in params])
            if version > 0:  # (version 0: the initial weights, before the first publication)
                assert torch.all(values == values[0]), "a torn copy: entries of two publications"
                assert version == int(values[0].item())
            versions.append(version)
        assert len(set(versions)) >= 50 and versions == sorted(versions)
    finally:
        stop.set()
        writer.join(timeout=10)


def test_policy_store_read_gives_up_on_a_dead_writer():
    model = build_actor_critic(3, 2, (8,), shared_torso=True).share_memory()
    store = PolicyStore(model, initial_version=3)
    store.sequence.fill_(7)  # a writer died in the middle of publication 4
    copies = []
    start = time.monotonic()
    assert store.read(lambda: copies.append(1), should_stop=lambda: True) is None  # the stop flag, at once
    assert time.monotonic() - start < 0.5
    start = time.monotonic()
    with pytest.raises(PublicationStalled, match="stood half-written"):
        store.read(lambda: copies.append(1), timeout_s=0.3)  # no stop: the deadline ends the wait
    assert 0.3 <= time.monotonic() - start < 2.0
    assert copies == []  # nothing was copied from the half-written weights


def _publish_big(store, ready):
    torch.set_num_threads(1)  # as every process of ours (a forked child must not use the parent's thread pool)
    tensors = [torch.full_like(t, 1.0) for t in store.model.state_dict().values()]
    ready.set()
    while True:
        store.publish(tensors)


def test_sigterm_never_leaves_a_publication_half_written():
    """``terminate()`` of a learner that takes long to stop (the trainer's join timeout)
    must not tear a publication: SIGTERM waits until the publication is complete."""
    ctx = torch.multiprocessing.get_context("fork")
    model = build_actor_critic(64, 2, (2048, 2048), shared_torso=True).share_memory()  # ~4M floats: ms per copy
    store = PolicyStore(model)
    for attempt in range(5):
        ready = ctx.Event()
        writer = ctx.Process(target=_publish_big, args=(store, ready), daemon=True)
        writer.start()
        assert ready.wait(30)
        time.sleep(0.05 + 0.013 * attempt)
        writer.terminate()
        writer.join(timeout=10)
        assert writer.exitcode == -15
        assert int(store.sequence.item()) % 2 == 0, f"attempt {attempt}: killed mid-publication"
