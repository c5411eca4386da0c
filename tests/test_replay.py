"""The shared-memory replay (segments, uniform sampling, torn entries, a killed writer), the
rate limiter between actors and learner, and n-step transitions."""

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from asyncrl.algos.offpolicy import NStep
from asyncrl.replay import RateLimiter, ReplayError, SharedReplay, transition_fields

OBS = 4096  # floats per observation: a write is long, so most kills land inside one


def _fields(obs_shape=(OBS,), obs_dtype=np.float32):
    return transition_fields(obs_shape, obs_dtype, (), np.int64)


def _transition(k: int, obs_shape=(OBS,), dtype=np.float32):
    """A transition whose every field encodes ``k``: a torn one mixes two codes."""
    return {"obs": np.full(obs_shape, k, dtype), "actions": k, "rewards": float(k),
            "next_obs": np.full(obs_shape, k + 1, dtype), "terminated": k % 2 == 0, "truncated": k % 3 == 0,
            "steps": 1 + k % 3}


def _consistent(sample: dict) -> np.ndarray:
    k = sample["actions"]  # [N]
    return ((sample["obs"] == k[:, None]).all(1) & (sample["next_obs"] == k[:, None] + 1).all(1)
            & (sample["rewards"] == k) & (sample["terminated"] == (k % 2 == 0))
            & (sample["truncated"] == (k % 3 == 0)) & (sample["steps"] == 1 + k % 3))


def test_segments_ring_and_layout():
    replay = SharedReplay(capacity=10, actors=2, fields=_fields())
    assert replay.segment == 5 and replay.capacity == 10
    assert replay.nbytes == 10 * (8 + 2 * OBS * 4 + 8 + 4 + 1 + 1 + 8)
    for k in range(7):  # actor 1 writes 7: its ring wraps, entries 5..9 hold k = 5, 6, 2, 3, 4
        assert replay.add(1, _transition(k)) == 5 + k % 5
    replay.add(0, _transition(100))
    assert replay.inserted == 8 and replay.size() == 6
    assert [replay.state(i) for i in (0, 1, 5)] == ["complete", "empty", "complete"]
    sample = replay.sample(2_000, np.random.default_rng(0))
    assert _consistent(sample).all()
    assert set(sample["actions"].tolist()) == {100, 2, 3, 4, 5, 6}  # 0 and 1 were overwritten
    assert set(sample["indices"].tolist()) == {0, 5, 6, 7, 8, 9}


def test_sampling_is_uniform_over_all_written_entries():
    """Segments filled unevenly (a slow actor): every written transition has the same
    probability, checked against the counts of a slow reference draw."""
    replay = SharedReplay(capacity=300, actors=3, fields=_fields((2,)))
    written = {0: 100, 1: 10, 2: 40}
    for actor, count in written.items():
        for k in range(count):
            replay.add(actor, _transition(actor * 1000 + k, (2,)))
    draws = 200_000
    sample = replay.sample(draws, np.random.default_rng(1))
    counts = np.bincount(sample["indices"], minlength=300)
    filled = [i for a, n in written.items() for i in range(a * 100, a * 100 + n)]
    assert set(np.flatnonzero(counts)) == set(filled)
    expected = draws / len(filled)  # 1,333 per entry
    chi2 = (((counts[filled] - expected) ** 2) / expected).sum()
    assert chi2 < len(filled) + 5 * np.sqrt(2 * len(filled))  # chi-square, 149 dof: mean 149, sd 17
    per_actor = [counts[a * 100:(a + 1) * 100].sum() / draws for a in range(3)]
    np.testing.assert_allclose(per_actor, [100 / 150, 10 / 150, 40 / 150], atol=0.005)


def test_images_stay_uint8():
    replay = SharedReplay(capacity=4, actors=1, fields=_fields((4, 84, 84), np.uint8))
    assert replay.tensors["obs"].dtype.itemsize == 1
    replay.add(0, _transition(7, (4, 84, 84), np.uint8))
    sample = replay.sample(3, np.random.default_rng(0))
    assert sample["obs"].dtype == np.uint8 and sample["obs"].shape == (3, 4, 84, 84) and (sample["obs"] == 7).all()
    assert replay.nbytes == 4 * (8 + 2 * 4 * 84 * 84 + 8 + 4 + 1 + 1 + 8)


def test_an_entry_being_written_is_never_sampled():
    """An odd sequence number (a write in progress, or a torn write left by a killed
    actor) keeps the entry out of every sample; the actor that replaces it rewrites it."""
    replay = SharedReplay(capacity=4, actors=1, fields=_fields())
    for k in range(3):
        replay.add(0, _transition(k))
    replay._seq[1] += 1  # entry 1 (k = 1): as if its writer died half-way
    replay._arrays["obs"][1, :OBS // 2] = 99.0  # ... having written half the new observation
    assert replay.state(1) == "writing"
    sample = replay.sample(5_000, np.random.default_rng(0))
    assert 1 not in sample["indices"] and _consistent(sample).all()
    assert set(sample["actions"].tolist()) == {0, 2}
    replay._written[0] = 1  # the replacement actor's next write lands on the torn entry
    replay.add(0, _transition(50))
    assert replay.state(1) == "complete" and replay._seq[1] % 2 == 0
    assert 50 in replay.sample(5_000, np.random.default_rng(0))["actions"]


def test_sample_gives_up_when_every_entry_is_being_written():
    replay = SharedReplay(capacity=2, actors=1, fields=_fields())
    with pytest.raises(ReplayError, match="empty"):
        replay.sample(1, np.random.default_rng(0))
    replay.add(0, _transition(1))
    replay._seq[0] += 1
    with pytest.raises(ReplayError, match="being written"):
        replay.sample(4, np.random.default_rng(0))


def _writer(replay: SharedReplay, actor: int, ready) -> None:
    prebuilt = [_transition(k) for k in range(3)]  # (so that the writer spends its time writing)
    ready.set()
    k = 0
    while True:
        replay.add(actor, prebuilt[k % 3])
        k += 1


def test_killed_writer_leaves_no_torn_transition_to_sample():
    """SIGKILL an actor process writing as fast as it can, at random moments: whatever it
    was writing, every transition the learner samples afterwards (and during) is whole."""
    ctx = mp.get_context("fork")
    rng = np.random.default_rng(0)
    torn_seen = 0
    for trial in range(8):
        replay = SharedReplay(capacity=64, actors=2, fields=_fields())
        replay.add(0, _transition(1_000))  # another actor's entry, so the replay is never empty
        ready = ctx.Event()
        proc = ctx.Process(target=_writer, args=(replay, 1, ready), daemon=True)
        proc.start()
        assert ready.wait(10)
        deadline = time.monotonic() + rng.uniform(0.02, 0.2)
        while time.monotonic() < deadline:  # sampling while the writer runs
            assert _consistent(replay.sample(32, rng)).all()
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
        states = [replay.state(i) for i in range(replay.capacity)]
        torn_seen += states.count("writing")
        sample = replay.sample(1_024, rng)
        assert _consistent(sample).all()
        torn = [i for i, s in enumerate(states) if s == "writing"]
        assert not set(torn) & set(sample["indices"].tolist())
    assert 1 <= torn_seen <= 8  # some kills landed mid-write (most do: a write is 32 KiB), at most one entry each


def test_rate_limiter_due_updates_and_lockstep():
    rate = RateLimiter(replay_ratio=0.25, learning_starts=100, tolerance=0)
    assert [rate.due(n) for n in (0, 100, 103, 104, 107, 108, 500)] == [0, 0, 0, 1, 1, 2, 100]
    assert RateLimiter(0.1, 0, 0).due(30) == 3 and RateLimiter(2.0, 10, 0).due(11) == 2
    # lockstep (tolerance 0), one actor: the insert that makes an update due waits for it
    inserted, trace = 0, []
    for _ in range(120):
        if rate.learner_may_update(inserted):
            rate.count_update()
            trace.append("U")
        else:
            assert rate.actor_may_insert(inserted)
            inserted += 1
            trace.append("I")
        if trace[-1] == "I" and rate.due(inserted) > rate.updates:
            assert not rate.actor_may_insert(inserted)  # the actor waits for the learner
    assert "".join(trace) == "I" * 104 + "U" + "IIIIU" * 3
    lenient = RateLimiter(replay_ratio=1.0, learning_starts=0, tolerance=16)
    assert lenient.actor_may_insert(16) and not lenient.actor_may_insert(17)
    for _ in range(5):
        lenient.count_update()
    assert lenient.actor_may_insert(21) and not lenient.actor_may_insert(22)
    with pytest.raises(ValueError):
        RateLimiter(0.0, 0, 0)


def _slow_n_step(rewards, n, gamma, ends):
    """Reference: for each start t, sum gamma^k r_{t+k} up to n steps or the episode's end."""
    out = []
    T = len(rewards)
    for t in range(T):
        end = min(t + n, T)
        for e in ends:
            if t <= e < end:
                end = e + 1
                break
        out.append((sum(gamma ** (k - t) * rewards[k] for k in range(t, end)), end - t, end))
    return out


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("last", ["terminated", "truncated"])
def test_n_step_transitions_match_a_slow_reference(n, last):
    gamma, T = 0.9, 7
    rewards = [1.0, -2.0, 3.0, 0.5, 4.0, -1.0, 2.0]
    nstep = NStep(n, gamma)
    got = []
    for t in range(T):
        end = t == T - 1
        obs, next_obs = np.array([t], np.float32), np.array([t + 1], np.float32)
        got += nstep.push(obs, t, rewards[t], next_obs, end and last == "terminated", end and last == "truncated")
    want = _slow_n_step(rewards, n, gamma, ends=[T - 1])
    assert len(got) == T
    for tr, (ret, steps, end) in zip(got, want):
        t = tr["actions"]
        assert tr["obs"][0] == t and tr["steps"] == steps and tr["next_obs"][0] == end
        assert tr["rewards"] == pytest.approx(ret)
        episode_end = end == T
        assert tr["terminated"] == (episode_end and last == "terminated")
        assert tr["truncated"] == (episode_end and last == "truncated")
