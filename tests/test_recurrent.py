"""Recurrent policies: the LSTM core's unroll against a step-by-step reference, state resets
at episode ends, the acting paths, A3C-LSTM segments and recurrent A2C/PPO batches."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from asyncrl.config import Config, RunConfig, algo_config
from asyncrl.distributions import ActionSpec
from asyncrl.networks import NetworkError, NumpyLSTM, ObsSpec, RecurrentPolicyValue, build_actor_critic
from asyncrl.shared import GlobalCounters
from asyncrl.trainer import Trainer

ENV = "asyncrl/CartPoleNoVelocity-v1"


def _model(action=3, lstm_size=6, seed=0):
    torch.manual_seed(seed)
    model = build_actor_critic(4, action, (8,), lstm_size=lstm_size)
    with torch.no_grad():  # away from the near-zero initial heads
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("action", [3, ActionSpec.box([-1, -1], [1, 1])], ids=["categorical", "gaussian"])
def test_unroll_with_resets_equals_a_step_by_step_unroll_and_its_gradient(action):
    """``sequence`` (one torso pass, masked core steps) against one ``step`` per time step
    with the state zeroed by hand: the same outputs, and autograd through both gives the
    same gradient (truncated back-propagation through time over T steps)."""
    model = _model(action)
    reference = _model(action)
    T, B = 7, 3
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T, B, 4, generator=g)
    resets = torch.rand(T, B, generator=g) < 0.3
    h0, c0 = torch.randn(B, 6, generator=g), torch.randn(B, 6, generator=g)
    params, values, (hs, cs) = model.sequence(obs, (h0, c0), resets)
    want_params, want_values, state = [], [], (h0, c0)
    for t in range(T):
        keep = (~resets[t]).float()[:, None]
        state = (state[0] * keep, state[1] * keep)
        p, v, state = reference.step(obs[t], state)
        want_params.append(p)
        want_values.append(v)
        torch.testing.assert_close(hs[t], state[0])
        torch.testing.assert_close(cs[t], state[1])
    torch.testing.assert_close(params, torch.stack(want_params))
    torch.testing.assert_close(values, torch.stack(want_values))
    weights = torch.randn(T, B, params.shape[-1], generator=g)
    (params * weights).sum().add(values.pow(2).sum()).backward()
    (torch.stack(want_params) * weights).sum().add(torch.stack(want_values).pow(2).sum()).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert model.core.weight_hh.grad.abs().sum() > 0  # the gradient did flow through time


def test_span_wise_torch_lstm_equals_the_step_loop_and_its_gradient():
    """The training path (``states=False``: ``torch.lstm`` over the spans between reset
    times) against the step-by-step loop: same outputs and gradients, also when a reset
    falls on the first step or no reset at all."""
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(9, 4, 4, generator=g)
    state = (torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g))
    resets = torch.rand(9, 4, generator=g) < 0.25
    resets[0, 1] = True
    for mask in (resets, torch.zeros_like(resets), None):
        loop, spans = _model(), _model()
        p1, v1, _ = loop.sequence(obs, state, mask)
        p2, v2, states = spans.sequence(obs, state, mask, states=False)
        assert states is None
        torch.testing.assert_close(p2, p1)
        torch.testing.assert_close(v2, v1)
        (p1.sum() + v1.pow(2).sum()).backward()
        (p2.sum() + v2.pow(2).sum()).backward()
        for (name, a), b in zip(loop.named_parameters(), spans.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("action", [3, ActionSpec.box([-1, -1], [1, 1])], ids=["categorical", "gaussian"])
def test_numpy_lstm_step_equals_the_torch_step(action):
    model = _model(action)
    g = torch.Generator().manual_seed(2)
    obs, h, c = torch.randn(5, 4, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    with torch.no_grad():
        want = model.step(obs, (h, c))
    params, values, h1, c1 = NumpyLSTM(model)(obs.numpy(), h.numpy(), c.numpy())
    np.testing.assert_allclose(params, want[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, want[1].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1, want[2][0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1, want[2][1].numpy(), rtol=1e-5, atol=1e-6)


def test_acting_carries_the_state_peeks_without_moving_it_and_resets_one_env():
    model = _model()
    acting = RecurrentPolicyValue(model, num_envs=2)
    obs = np.random.default_rng(0).standard_normal((4, 2, 4)).astype(np.float32)
    state = model.initial_state(2)
    for t in range(3):
        params, values = acting(obs[t])
        with torch.no_grad():
            want_params, want_values, state = model.step(torch.from_numpy(obs[t]), state)
        np.testing.assert_allclose(params, want_params.numpy(), rtol=1e-5, atol=1e-6)
    before = acting.state()
    with torch.no_grad():
        peek = model.step(torch.from_numpy(obs[3][1:]), (state[0][1:], state[1][1:]))[1]
    np.testing.assert_allclose(acting.values(obs[3][1:], [1]), peek.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acting.state(), before)  # a peek does not move the state
    acting.reset(0)
    assert not acting.state()[0].any() and acting.state()[1].any()
    by_params, by_call = RecurrentPolicyValue(model, num_envs=2), RecurrentPolicyValue(model, num_envs=2)
    np.testing.assert_array_equal(by_params.params(obs[0]), by_call(obs[0])[0])
    np.testing.assert_array_equal(by_params.state(), by_call.state())  # params steps the state as a call does
    assert by_params.state().any()


def test_lstm_needs_one_shared_torso():
    with pytest.raises(NetworkError, match="--shared-torso"):
        build_actor_critic(4, 2, (8,), shared_torso=False, lstm_size=4)
    with pytest.raises(ValueError, match="--no-shared-torso"):
        algo_config("a3c", ENV, lstm=True, shared_torso=False)
    assert build_actor_critic(4, 2, (8,), shared_torso=None, lstm_size=4).value_torso is None
    with pytest.raises(TypeError, match="sequence"):
        build_actor_critic(4, 2, (8,), lstm_size=4)(torch.zeros(1, 4))


def test_cartpole_no_velocity_is_cartpole_without_its_velocities():
    from asyncrl.envs import make_env

    masked, full = make_env(ENV), gym.make("CartPole-v1")
    assert masked.observation_space.shape == (2,) and masked.spec.reward_threshold == 475.0
    assert masked.spec.max_episode_steps == 500
    obs, _ = masked.reset(seed=3)
    want, _ = full.reset(seed=3)
    np.testing.assert_array_equal(obs, want[[0, 2]])
    for action in [0, 1, 1, 0, 1]:
        obs, reward, *_ = masked.step(action)
        want, want_reward, *_ = full.step(action)
        np.testing.assert_array_equal(obs, want[[0, 2]])
        assert reward == want_reward


def test_a3c_lstm_carries_the_state_across_segments_and_zeroes_it_at_episode_ends():
    from asyncrl.algos import a3c

    config = Config(run=RunConfig(algo="a3c", env=ENV, workers=1, seed=0),
                    algo=algo_config("a3c", ENV, lstm=True, lstm_size=8, t_max=5))
    shared = a3c.make_shared(config, ObsSpec((2,)), 2)
    learner = a3c.ActorLearner(0, config, shared, GlobalCounters(1))
    ended = carried = 0
    for _ in range(60):
        before = learner.policy.state()[0, 0].copy()
        episodes = len(learner.stats.episodes)
        learner.update()
        state = learner.policy.state()[0, 0]  # h of the one environment
        if len(learner.stats.episodes) > episodes:  # the segment ended an episode: the next starts from zeros
            assert np.abs(state).sum() == 0
            ended += 1
        else:
            assert np.abs(state).sum() > 0 and not np.array_equal(state, before)
            carried += 1
    assert ended >= 2 and carried >= 10
    learner.close()


def _batched(algo, **overrides):
    from asyncrl import registry

    module = registry.get(algo)
    config = Config(run=RunConfig(algo=algo, env=ENV, workers=1, seed=0, serial=True),
                    algo=algo_config(algo, ENV, lstm=True, lstm_size=8, unroll_length=40, envs_per_actor=3,
                                     **overrides))
    shared = module.make_shared(config, ObsSpec((2,)), 2)
    with torch.no_grad():  # a policy that does not keep the pole up for long: many episode ends
        for p in shared.model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module, config, shared, GlobalCounters(2)


def test_recurrent_rollouts_store_their_first_state_and_the_learner_unroll_reproduces_acting():
    """The actor zeroes an environment's state exactly where its episode ended, and the
    learner, unrolling each rollout from its stored first state with resets after every
    terminated or truncated step, computes the very log-probs and values the actor acted
    with."""
    from asyncrl.algos.batched import recurrent_inputs

    module, config, shared, counters = _batched("ppo")
    actor = module.actor(0, config, shared, counters)
    seen = []
    acting = actor.policy_value
    inner = acting.step

    def spy(obs, h, c):  # the state each environment's observation was processed with
        seen.append(h.copy())
        return inner(obs, h, c)

    acting.step = spy
    episode_starts = 0
    for k in range(3):
        assert actor.update() == 120
        index = shared.slots.take(1, 0.0)
        batch = shared.slots.batch(index)
        shared.slots.release(index)
        done = (batch["terminated"] | batch["truncated"]).numpy()  # [T, E]
        steps = [h for h in seen if len(h) == 3][-41:-1]  # the T acting calls (not the peeks)
        for t in range(1, 40):
            for e in range(3):
                zero = not steps[t][e].any()
                assert zero == bool(done[t - 1, e]), (k, t, e)
                episode_starts += zero
        np.testing.assert_array_equal(batch["initial_state"][:, 0].numpy(), steps[0])
        state, resets = recurrent_inputs(batch)
        with torch.no_grad():
            params, values, _ = shared.model.sequence(batch["obs"], state, resets)
        log_probs = shared.model.dist.log_prob(params[:-1], batch["actions"])
        torch.testing.assert_close(log_probs, batch["log_probs"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, batch["values"], rtol=1e-5, atol=1e-5)
    assert episode_starts >= 5
    actor.close()


def test_recurrent_ppo_minibatches_are_whole_sequences():
    from asyncrl.algos.ppo import _sequence_minibatches

    T, B = 4, 6
    obs = torch.arange(T * B, dtype=torch.float32).view(T, B, 1).expand(T, B, 2)
    ids = torch.arange(T * B).view(T, B)
    state = (torch.arange(B, dtype=torch.float32)[:, None].expand(B, 3), torch.zeros(B, 3))
    resets = torch.zeros(T, B, dtype=torch.bool)
    cfg = algo_config("ppo", ENV, minibatch_size=8, unroll_length=T)  # 8 // 4 = 2 environments each
    epoch = _sequence_minibatches(cfg, obs, {"ids": ids, "old_log_probs": ids.float()}, (state, resets),
                                  np.random.default_rng(0))
    columns = []
    for mb_obs, sequences, mb in epoch():
        assert mb_obs.shape == (T, 2, 2) and mb["ids"].shape == (T * 2,)
        cols = (mb["ids"][:2] % B).tolist()  # the environments of this minibatch
        assert mb["ids"].tolist() == [t * B + b for t in range(T) for b in cols]  # all T steps, time-major
        assert sequences["state"][0][:, 0].tolist() == cols  # their own first states
        columns += cols
    assert sorted(columns) == list(range(B))


@pytest.mark.parametrize("algo", ["a3c", "a2c", "ppo"])
def test_every_actor_critic_trains_and_evaluates_with_lstm(tmp_path, algo):
    from asyncrl.evaluate import evaluate

    small = {"unroll_length": 16, "minibatch_size": 32, "epochs": 2} if algo == "ppo" else {}
    run = RunConfig(algo=algo, env=ENV, workers=2, seed=0, serial=True, total_steps=1_500, target_return=math.inf,
                    run_dir=str(tmp_path / algo))
    trainer = Trainer(Config(run=run, algo=algo_config(algo, ENV, lstm=True, lstm_size=16, **small)), quiet=True)
    summary = trainer.train()
    assert summary["global_step"] >= 1_500 and summary["episodes"] > 10
    from asyncrl.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / algo / "checkpoint.pt")["model"]
    assert state["core.weight_hh"].shape == (64, 16)
    returns = evaluate(tmp_path / algo, episodes=2)
    assert returns.shape == (2,) and (returns >= 1).all() and (returns <= 500).all()
