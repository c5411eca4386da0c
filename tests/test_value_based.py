"""The value-based actor-learners: targets against slow transcriptions of the paper's
pseudocode, and the target network's refresh rule."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from asyncrl import registry
from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.networks import ObsSpec
from asyncrl.shared import GlobalCounters, TargetNetwork

GAMMA = 0.9
CTX = torch.multiprocessing.get_context("fork")


class Recorder(gym.Wrapper):
    """Records every transition (s, a, r, terminated, truncated, s')."""

    def __init__(self, env):
        super().__init__(env)
        self.transitions = []

    def reset(self, **kwargs):
        self.obs, info = self.env.reset(**kwargs)
        return self.obs, info

    def step(self, action):
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.transitions.append((self.obs.copy(), action, reward, terminated, truncated, next_obs.copy()))
        self.obs = next_obs
        return next_obs, reward, terminated, truncated, info


def make_learner(algo, monkeypatch=None, envs_per_actor=1, **algo_kwargs):
    """An actor-learner on Chain-v0 whose environments record their transitions
    (``learner.envs.envs[e].transitions``); with ``monkeypatch``, ``recorded`` collects the
    ``(actions, targets)`` of every gradient taken (time-major over the k environments)."""
    config = Config(run=RunConfig(algo=algo, env="Chain-v0", workers=1, serial=True, seed=0),
                    algo=algo_config(algo, "Chain-v0", gamma=GAMMA, envs_per_actor=envs_per_actor, **algo_kwargs))
    module = registry.get(algo)
    shared = module.make_shared(config, ObsSpec((2,)), 2)
    counters = GlobalCounters(1)
    learner = module.actor(0, config, shared, counters)
    for e, env in enumerate(learner.envs.envs):
        learner.envs.envs[e] = Recorder(env)
        learner.envs.envs[e].obs = learner.envs.obs[e].copy()
    recorded = []
    if monkeypatch is not None:
        real_gradient = learner.gradient

        def recording_gradient(obs, actions, targets):
            recorded.append((torch.as_tensor(actions).clone(), torch.as_tensor(targets).clone()))
            return real_gradient(obs, actions, targets)

        monkeypatch.setattr(learner, "gradient", recording_gradient)
    return learner, shared, counters, recorded


def per_env(recorded, k):
    """The recorded ``(actions, targets)`` of each of ``k`` environments, in its own order."""
    actions = [np.concatenate([a.reshape(-1, k)[:, e].numpy() for a, _ in recorded]) for e in range(k)]
    targets = [np.concatenate([t.reshape(-1, k)[:, e].numpy() for _, t in recorded]) for e in range(k)]
    return actions, targets


def q_target(shared, obs):
    with torch.no_grad():
        return shared.target.model(torch.as_tensor(obs)).numpy()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("algo", ["one-step-q", "one-step-sarsa"])
def test_one_step_targets_match_algorithm_1(monkeypatch, algo, k):
    """y = r for terminal s'; else r + gamma max_a' Q(s', a'; theta^-) (Q-learning) or
    r + gamma Q(s', a'; theta^-) with a' the next action taken (Sarsa), also when a time
    limit truncated the episode at s'; with k environments, each one's transitions."""
    learner, shared, counters, recorded = make_learner(algo, monkeypatch, k, target_update=10**9)
    frozen_target = copy.deepcopy(shared.target.model)
    for _ in range(40):
        learner.update()
    actions, targets = per_env(recorded, k)
    assert sum(len(env.transitions) for env in learner.envs) == counters.global_step
    kinds = set()
    for e, env in enumerate(learner.envs):
        transitions = env.transitions
        assert len(targets[e]) == len(transitions) == counters.global_step // k
        for i, (_obs, action, reward, terminated, truncated, next_obs) in enumerate(transitions):
            assert actions[e][i] == action
            if terminated:
                kinds.add("terminated")
                want = reward
            else:
                q_next = q_target(shared, next_obs)
                if algo == "one-step-q":
                    want = reward + GAMMA * q_next.max()
                elif truncated:  # a' drawn in s' but never executed: it must be one of the actions
                    kinds.add("truncated")
                    assert min(abs(targets[e][i] - (reward + GAMMA * q)) for q in q_next) < 1e-5
                    continue
                elif i + 1 == len(transitions):  # a' is pending: the next segment's first action
                    continue
                else:
                    want = reward + GAMMA * q_next[transitions[i + 1][1]]
                kinds.add("truncated" if truncated else "bootstrapped")
            assert targets[e][i] == pytest.approx(want, abs=1e-5), (e, i, transitions[i])
    assert kinds == {"terminated", "truncated", "bootstrapped"}
    for a, b in zip(frozen_target.parameters(), shared.target.model.parameters()):
        assert torch.equal(a, b)  # I_target never crossed: theta^- never moved


@pytest.mark.parametrize("k", [1, 3])
def test_n_step_returns_match_algorithm_S2(monkeypatch, k):
    """R = 0 for terminal s_{t+n}, else max_a Q(s_{t+n}, a; theta^-); R <- r_i + gamma R.
    With k environments every segment is t_max steps of each, and an episode's end inside
    it cuts that environment's returns there."""
    t_max = 3
    learner, shared, counters, recorded = make_learner("n-step-q", monkeypatch, k, target_update=10**9, t_max=t_max)
    kinds = set()
    for _ in range(40):
        starts = [len(env.transitions) for env in learner.envs]
        learner.update()
        _, targets = recorded[-1]
        targets = targets.reshape(-1, k).numpy()  # [n, k]
        for e, env in enumerate(learner.envs):
            segment = env.transitions[starts[e] :]
            assert len(segment) == targets.shape[0] and (k == 1 or len(segment) == t_max)
            want, R = [], None
            for i in reversed(range(len(segment))):
                _, _, reward, terminated, truncated, next_obs = segment[i]
                if terminated:
                    R = 0.0
                elif truncated or i == len(segment) - 1:
                    R = float(q_target(shared, next_obs).max())
                kinds.add("terminated" if terminated else "truncated" if truncated else "bootstrapped")
                R = reward + GAMMA * R
                want.append(R)
            if k == 1:  # the paper's segment ends with its episode
                assert all(not (t[3] or t[4]) for t in segment[:-1])
            np.testing.assert_allclose(targets[:, e], want[::-1], rtol=1e-5, atol=1e-5)
    assert kinds == {"terminated", "truncated", "bootstrapped"}


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("algo", ["one-step-q", "one-step-sarsa", "n-step-q"])
def test_target_network_changes_exactly_when_T_crosses_a_multiple_of_I_target(algo, k):
    interval = 7
    learner, shared, counters, _ = make_learner(algo, envs_per_actor=k, target_update=interval)
    crossings = 0
    for _ in range(80):
        before = counters.global_step
        theta = [p.detach().clone() for p in shared.model.parameters()]
        target_before = [p.detach().clone() for p in shared.target.model.parameters()]
        learner.update()
        after = counters.global_step
        crossed = after // interval > before // interval
        target_now = list(shared.target.model.parameters())
        changed = any(not torch.equal(a, b) for a, b in zip(target_before, target_now))
        moved = any(not torch.equal(a, b) for a, b in zip(theta, target_before))  # (not before the first update)
        assert changed == (crossed and moved), (before, after)
        if crossed:  # theta^- <- theta as it was when T crossed (theta moves only at the update's end)
            crossings += 1
            assert all(torch.equal(a, b) for a, b in zip(theta, target_now))
        assert shared.target.refreshes == after // interval
    assert crossings >= 10


def _race(counters, target, worker_id, steps, copies):
    for _ in range(steps):
        counters.add(worker_id, 1, updates=0)
        if target.maybe_refresh(counters.global_step):
            copies[worker_id] += 1


def test_concurrent_workers_refresh_once_per_crossing():
    online = torch.nn.Linear(3, 2).share_memory()
    target = TargetNetwork(copy.deepcopy(online).share_memory(), online, interval=50, lock=CTX.Lock())
    counters = GlobalCounters(3)
    copies = torch.zeros(3, dtype=torch.int64).share_memory_()
    procs = [CTX.Process(target=_race, args=(counters, target, w, 3000, copies)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counters.global_step == 9000
    assert int(copies.sum()) == target.refreshes == 9000 // 50


@pytest.mark.parametrize("env, obs", [("Chain-v0", ObsSpec((2,))), ("PixelChain-v0", ObsSpec((2, 6, 6), "uint8", 255.0))],
                         ids=["mlp-numpy", "cnn-torch"])
@pytest.mark.parametrize("algo", ["one-step-q", "one-step-sarsa"])
def test_serial_learners_on_one_shared_theta_each_apply_their_own_gradient(algo, env, obs):
    """In --serial mode the one-step actor-learners share one process and one theta: each
    update must apply exactly the gradient its own learner computed (autograd of q_loss
    on that learner's batch), never another learner's or none. Both gradient paths: NumPy
    for the MLP, autograd (``TorchQGradient``) for the CNN on uint8 images."""
    from asyncrl.losses import q_loss

    config = Config(run=RunConfig(algo=algo, env=env, workers=2, serial=True, seed=0),
                    algo=algo_config(algo, env, gamma=GAMMA, max_grad_norm=1e9))
    module = registry.get(algo)
    shared = module.make_shared(config, obs, 2)
    counters = GlobalCounters(2)
    learners = [module.actor(i, config, shared, counters) for i in range(2)]
    assert type(learners[0].gradient).__name__ == ("TorchQGradient" if obs.is_image else "NumpyQGradient")
    assert learners[0].envs.obs.dtype == obs.np_dtype  # images stay uint8
    expected, applied = [], []
    for learner in learners:
        real = learner.gradient

        def recording(obs, actions, targets, real=real):
            model = copy.deepcopy(shared.model)
            loss, _ = q_loss(model(torch.as_tensor(obs))[None], torch.as_tensor(actions)[None],
                             torch.as_tensor(targets)[None])
            loss.backward()
            expected.append([p.grad.clone() for p in model.parameters()])
            return real(obs, actions, targets)

        learner.gradient = recording
    real_step = shared.optimizer.step

    def recording_step():
        applied.append([p.grad.clone() for p in shared.model.parameters()])
        return real_step()

    shared.optimizer.step = recording_step
    for _ in range(6):
        for learner in learners:  # round-robin, as the serial trainer does
            learner.update()
    assert len(applied) == len(expected) == 12
    for want, got in zip(expected, applied):
        assert sum(float(g.norm()) for g in want) > 0
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
