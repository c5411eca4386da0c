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
    """Atari stacks: uint8 frames, each stored once (the two observations of _transition(7)
    are two distinct frames, so the ring holds 2 frames for the 4 x 2 images)."""
    replay = SharedReplay(capacity=4, actors=1, fields=_fields((4, 84, 84), np.uint8))
    assert replay.frames_tensor.dtype.itemsize == 1 and replay.stack == 4
    replay.add(0, _transition(7, (4, 84, 84), np.uint8))
    assert replay._frames_written[0] == 2
    sample = replay.sample(3, np.random.default_rng(0))
    assert sample["obs"].dtype == np.uint8 and sample["obs"].shape == (3, 4, 84, 84) and (sample["obs"] == 7).all()
    assert (sample["next_obs"] == 8).all()
    F = replay.frame_capacity
    assert F == 4 + 0 + 8 * 4
    assert replay.nbytes == 4 * (8 + 2 * 4 * 8 + 8 + 4 + 1 + 1 + 8) + F * 84 * 84


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


def _kill_while_sampling(replay: SharedReplay, writer, whole, rng: np.random.Generator) -> None:
    """Start ``writer`` as actor 1 in a forked process, check ``whole(sample)`` on samples
    taken while it writes, then SIGKILL it at a random moment (20-200 ms in)."""
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=writer, args=(replay, 1, ready), daemon=True)
    proc.start()
    assert ready.wait(10)
    deadline = time.monotonic() + rng.uniform(0.02, 0.2)
    while time.monotonic() < deadline:  # sampling while the writer runs
        assert whole(replay.sample(32, rng))
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL


def test_killed_writer_leaves_no_torn_transition_to_sample():
    """SIGKILL an actor process writing as fast as it can, at random moments: whatever it
    was writing, every transition the learner samples afterwards (and during) is whole."""
    rng = np.random.default_rng(0)
    torn_seen = 0
    for _trial in range(8):
        replay = SharedReplay(capacity=64, actors=2, fields=_fields())
        replay.add(0, _transition(1_000))  # another actor's entry, so the replay is never empty
        _kill_while_sampling(replay, _writer, lambda sample: _consistent(sample).all(), rng)
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


# -- frames stored once (stacked image observations) -------------------------------------

FRAME = (32, 32)  # 1,024 bytes: the smallest frame stored frame by frame


def _stacked_stream(steps: int, n: int, seed: int, episode: int = 23):
    """Transitions as the actors make them from a 4-frame stack (Gymnasium's
    FrameStackObservation: a new episode starts with its first frame 4 times) with n-step
    returns: obs = frames t-3..t, next_obs = frames t+n-3..t+n within the episode, or its
    last observation where it ended. Frame contents are random, so any mix-up shows."""
    rng = np.random.default_rng(seed)
    out, _stack, history = [], None, []
    for t in range(steps):
        if t % episode == 0:
            first = rng.integers(0, 256, FRAME, dtype=np.uint8)
            history = [np.stack([first] * 4)]
        frame = rng.integers(0, 256, FRAME, dtype=np.uint8)
        history.append(np.concatenate([history[-1][1:], frame[None]]))
        end = (t + 1) % episode == 0
        if end or len(history) > n:  # the n-step transition of the oldest pending step, or all of them at the end
            for i in range(len(history) - 1 if end else 1):
                j = min(i + n, len(history) - 1)
                out.append({"obs": history[i], "actions": len(out), "rewards": float(t), "next_obs": history[j],
                            "terminated": end, "truncated": False, "steps": j - i})
            history = history[-n:] if not end else []
    return out


def test_frame_store_samples_what_a_replay_of_whole_observations_samples(monkeypatch):
    """The same stream, with episode ends and 3-step returns, into a frame replay and a replay
    of whole observations (FRAME_BYTES raised): the same entries, the same images."""
    import asyncrl.replay as replay_module

    stream = _stacked_stream(600, n=3, seed=0)
    frames = SharedReplay(capacity=500, actors=1, fields=_fields((4, *FRAME), np.uint8))
    monkeypatch.setattr(replay_module, "FRAME_BYTES", 10**9)
    whole = SharedReplay(capacity=500, actors=1, fields=_fields((4, *FRAME), np.uint8))
    assert frames.stack == 4 and whole.stack == 0
    for t in stream:
        frames.add(0, t)
        whole.add(0, t)
    # each step's new frame once, plus one per episode for its first: 26 whole episodes of 23
    # steps (the 27th, 2 steps old, has emitted no transition yet)
    assert int(frames._frames_written[0]) == 26 * (23 + 1)
    a, b = frames.sample(4_000, np.random.default_rng(5)), whole.sample(4_000, np.random.default_rng(5))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert frames.nbytes < whole.nbytes / 3


def _frame_writer(replay: SharedReplay, actor: int, ready) -> None:
    stream = _stacked_stream(64, n=1, seed=actor)
    ready.set()
    k = 0
    while True:  # every pass writes new frames: the stream's images, each with a fresh code in its corner
        t = stream[k % len(stream)]
        code = np.uint8(k % 251)
        obs, next_obs = t["obs"].copy(), t["next_obs"].copy()
        obs[:, 0, 0], next_obs[:, 0, 0] = code, code
        replay.add(actor, {**t, "obs": obs, "next_obs": next_obs, "actions": int(code)})
        k += 1


def test_killed_frame_writer_leaves_nothing_torn_to_sample():
    """SIGKILL an actor writing frames and transitions at random moments: every sampled
    transition's images are whole (each frame carries its transition's code)."""
    rng = np.random.default_rng(0)
    for _trial in range(6):
        replay = SharedReplay(capacity=64, actors=2, fields=_fields((4, *FRAME), np.uint8))
        replay.add(0, _coded(0))  # another actor's entry, so the replay is never empty
        _kill_while_sampling(replay, _frame_writer, _coded_whole, rng)
        assert _coded_whole(replay.sample(1_024, rng))


def _coded(code: int) -> dict:
    obs = np.full((4, *FRAME), code, np.uint8)
    return {"obs": obs, "actions": code, "rewards": 0.0, "next_obs": obs, "terminated": False, "truncated": False,
            "steps": 1}


def _coded_whole(sample: dict) -> bool:
    """Every image of every sampled transition carries the transition's code."""
    codes = sample["actions"].astype(np.uint8)[:, None]
    return bool((sample["obs"][:, :, 0, 0] == codes).all() and (sample["next_obs"][:, :, 0, 0] == codes).all())


def test_entries_whose_frames_the_ring_overwrote_are_redrawn():
    """Episodes of one step (every transition brings 8 new frames, more than the ring was
    sized for): old entries lose their frames and are never sampled; the newest are whole."""
    replay = SharedReplay(capacity=64, actors=1, fields=_fields((4, *FRAME), np.uint8))
    F = replay.frame_capacity
    assert F == 64 + 4 + 32
    for k in range(64):
        t = _coded(k)
        t["next_obs"] = np.full((4, *FRAME), 200 + k % 50, np.uint8)  # distinct from the next obs
        older = [np.full(FRAME, 150 + k % 40 + i, np.uint8) for i in range(3)]
        replay.add(0, {**t, "obs": np.stack([np.full(FRAME, k, np.uint8), *older])})
    assert replay._frames_written[0] > F
    sample = replay.sample(2_000, np.random.default_rng(0))
    assert (sample["obs"][:, 0, 0, 0] == sample["actions"]).all()  # whole
    oldest_alive = int(sample["actions"].min())
    assert oldest_alive > 0 and set(sample["actions"].tolist()) == set(range(oldest_alive, 64))


def test_a_million_atari_transitions_fit_in_8_gib():
    """The paper's replay (Mnih et al. 2015: 1M transitions of 4 x 84 x 84 frames) with two
    actors: 7.1 GiB with frames stored once, where whole observations took 52.6 GiB."""
    layout = SharedReplay.layout(1_000_000, 2, _fields((4, 84, 84), np.uint8))
    assert layout["stack"] == 4 and layout["nbytes"] <= 8 * 2**30
    assert layout["nbytes"] == 7_591_451_584  # what the run reports (python -m asyncrl.run --algo dqn ...)
