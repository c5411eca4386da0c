"""The algorithm registry: a new algorithm defined in this file alone trains through the
real command line, and every table the package used to keep is derived from the specs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from asyncrl import registry
from asyncrl.algos.base import SharedState, WorkerStats
from asyncrl.config import algo_config, build_parser, preset
from asyncrl.config.fields import LearnerFields, configclass, option
from asyncrl.envs import game_over, game_score, start_worker_env
from asyncrl.networks import build_actor_critic
from asyncrl.run import main
from asyncrl.shared import make_shared_optimizer, share_model

# -- vanilla policy gradient (Williams 1992), as a Hogwild actor-learner, in ~60 lines ---------


@configclass
class VPGConfig(LearnerFields):
    """Vanilla policy gradient: one whole episode per update, returns to go, a learned baseline."""

    lr: float = 1e-2
    optimizer: str = "adam"
    max_grad_norm: float = 1e3
    episode_cap: int = option(500, "the longest episode an update takes, in env steps")


def build_model(config, obs, action):
    return build_actor_critic(obs, action, config.algo.hidden_sizes, False, config.algo.network, "parameter")


def make_shared(config, obs, action):
    torch.manual_seed(config.run.seed)
    model = share_model(build_model(config, obs, action))
    a = config.algo
    return SharedState(model=model, optimizer=make_shared_optimizer(a.optimizer, model.parameters(), lr=a.lr,
                                                                     eps=a.optim_eps))


def greedy_action(model, obs, state=None):
    params, _, _ = model.step(obs.unsqueeze(0), state)
    return int(params.argmax()), state


class VPGActorLearner:
    def __init__(self, worker_id, config, shared, counters):
        self.worker_id, self.cfg, self.shared, self.counters = worker_id, config.algo, shared, counters
        self.env, self.obs, _ = start_worker_env(config.run, worker_id)
        self.local = copy.deepcopy(shared.model)
        self.params = list(self.local.parameters())
        self.rng = np.random.default_rng(config.run.seed + worker_id)
        self.stats = WorkerStats(counters)

    def update(self) -> int:
        self.shared.pull(self.params)
        observations, actions, rewards = [], [], []
        for _ in range(self.cfg.episode_cap):
            with torch.no_grad():
                logits, _ = self.local(torch.as_tensor(self.obs).unsqueeze(0))
            probs = torch.softmax(logits[0], 0).numpy().astype(np.float64)
            action = int(self.rng.choice(len(probs), p=probs / probs.sum()))
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.counters.add(self.worker_id, 1, updates=0)
            self.stats.step(game_score(reward, info), game_over(terminated, truncated, info))
            observations.append(self.obs)
            actions.append(action)
            rewards.append(float(reward))
            self.obs = next_obs
            if terminated or truncated:
                break
        self.obs = self.env.reset()[0] if terminated or truncated else self.obs
        returns = np.zeros(len(rewards), np.float32)  # G_t = r_t + gamma G_{t+1}, 0 after the last step
        for t in reversed(range(len(rewards))):
            returns[t] = rewards[t] + (self.cfg.gamma * returns[t + 1] if t + 1 < len(rewards) else 0.0)
        logits, values = self.local(torch.as_tensor(np.asarray(observations)))
        log_probs = torch.log_softmax(logits, 1)[torch.arange(len(actions)), torch.as_tensor(actions)]
        advantages = torch.as_tensor(returns) - values.detach()  # with a learned baseline V(s_t)
        advantages = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)
        loss = -(log_probs * advantages).mean() + 0.5 * (torch.as_tensor(returns) - values).pow(2).mean() / 100
        for p in self.params:
            p.grad = None
        loss.backward()
        self.shared.push(self.params, self.cfg.max_grad_norm)
        self.counters.add(self.worker_id, 0, updates=1)
        self.stats.update({"policy_loss": loss.item()})
        return len(rewards)

    def drain_stats(self):
        return self.stats.drain()

    def close(self):
        self.env.close()


VPG = registry.AlgoSpec(
    name="test-vpg", family=registry.HOGWILD, config=VPGConfig, summary="vanilla policy gradient (Williams 1992)",
    build_model=build_model, make_shared=make_shared, greedy_action=greedy_action, actor=VPGActorLearner,
    loss_names=("policy_loss",),
    presets=(registry.Preset("CartPole-v1", {"lr": 2e-3}, "a test's preset"),),
)


@pytest.fixture
def vpg():
    registry.register(VPG)
    yield VPG
    registry.unregister(VPG.name)


def _summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_an_algorithm_defined_in_a_test_trains_from_the_command_line(vpg, tmp_path, capsys):
    # CartPole-v1, 2 serial actor-learners: random play averages ~22. Seeds 0-5 passed a mean
    # return of 100 (last 100 episodes) at 10k-17k env steps (lr 2e-3; with 2e-2 three of six
    # collapsed to 9); the budget is 60k.
    run_dir = tmp_path / "vpg"
    code = main(["--algo", "test-vpg", "--env", "CartPole-v1", "--workers", "2", "--serial", "--seed", "0",
                 "--total-steps", "60000", "--target-return", "100", "--progress", "none", "--run-dir", str(run_dir)])
    assert code == 0, capsys.readouterr().err
    summary = _summary(run_dir)
    assert summary["reached_target"], summary["mean_return"]
    assert summary["steps_to_target"] <= 60_000
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"]["lr"] == 2e-3  # its preset, from its spec
    assert config["algo"]["episode_cap"] == 500


def test_a_registered_algorithm_runs_in_worker_processes_and_has_its_flags(vpg, tmp_path, capsys):
    run_dir = tmp_path / "vpg-processes"
    code = main(["--algo", "test-vpg", "--workers", "2", "--total-steps", "3000", "--episode-cap", "50",
                 "--progress", "none", "--run-dir", str(run_dir)])
    assert code == 0, capsys.readouterr().err
    assert _summary(run_dir)["global_step"] >= 3000
    help_text = build_parser("test-vpg").format_help()
    assert "--episode-cap EPISODE_CAP" in help_text and "the longest episode an update takes" in help_text
    assert "--lr LR" in help_text and "CartPole-v1: --lr 0.002" in help_text
    assert "test-vpg" in registry.names() and "test-vpg" in registry.methods()


def test_registry_rejects_a_second_algorithm_of_the_same_name_and_bad_specs(vpg):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(VPG.__class__(**{**VPG.__dict__, "summary": "another"}))
    with pytest.raises(ValueError, match="family must be one of"):
        registry.AlgoSpec(**{**VPG.__dict__, "name": "x", "family": "bogus"})
    with pytest.raises(ValueError, match="has no learner process"):
        registry.AlgoSpec(**{**VPG.__dict__, "name": "x", "learner": VPGActorLearner})
    with pytest.raises(ValueError, match="actions must be some of"):
        registry.AlgoSpec(**{**VPG.__dict__, "name": "x", "actions": frozenset({"tuple"})})
    with pytest.raises(ValueError, match="--algo must be one of"):
        registry.get("no-such-algorithm")


def test_a_field_without_help_anywhere_is_refused():
    with pytest.raises(TypeError, match="has no help text"):
        @configclass
        class Bad(LearnerFields):
            undocumented: int = 3


def test_a_subclass_changes_a_default_in_one_line_and_keeps_the_help():
    fields = VPGConfig.__dataclass_fields__
    assert VPGConfig().lr == 1e-2 and fields["lr"].metadata["help"] == LearnerFields.__dataclass_fields__[
        "lr"].metadata["help"]
    assert fields["optimizer"].metadata["choices"] == ("rmsprop", "adam")
    with pytest.raises(ValueError, match="--optimizer must be rmsprop or adam"):
        VPGConfig(optimizer="sgd")


# -- the tables that used to be spelled by hand, now derived ------------------------------


def test_derived_tables_are_the_ones_the_package_documents():
    def names(where):
        return set(registry.names(where))

    assert names(lambda s: "box" in s.actions) == {"a3c", "a2c", "ppo", "reinforce", "ddpg", "td3", "sac"}
    assert names(lambda s: "multi" in s.actions) == {"a3c", "a2c", "ppo"}
    assert names(lambda s: s.actions == {"box"}) == {"ddpg", "td3", "sac"}
    assert names(lambda s: s.family == registry.REPLAY) == {"dqn", "ddpg", "td3", "sac"}
    assert names(lambda s: s.family == registry.HOGWILD) == {"a3c", "one-step-q", "one-step-sarsa", "n-step-q"}
    assert names(lambda s: "ray" in s.backends) == {"a3c", "one-step-q", "one-step-sarsa", "n-step-q", "a2c", "ppo",
                                                    "reinforce"}
    assert list(registry.methods()) == ["a3c", "a3c-sync", "one-step-q", "one-step-q-sync", "one-step-sarsa",
                                        "one-step-sarsa-sync", "n-step-q", "n-step-q-sync", "a2c-sync", "a2c-async",
                                        "ppo-sync", "ppo-async", "reinforce", "dqn", "td3", "ddpg", "sac"]


def test_presets_come_from_the_specs_exact_id_before_pattern():
    assert preset("a3c", "ALE/Pong-v5") == {"t_max": 5, "lstm_size": 256, "envs_per_actor": 16, "loss_reduction": "mean",
                                            "rms_eps_inside": True, "optim_eps": 1e-5, "rms_init": 1.0,
                                            "max_grad_norm": 0.5, "lr": 1.4e-3}
    assert preset("ppo", "Pendulum-v1")["gamma"] == 0.9  # the exact id, not a pattern's
    assert preset("ppo", "Hopper-v4")["unroll_length"] == 1024
    assert preset("dqn", "MountainCar-v0") == {}
    assert algo_config("one-step-sarsa", "CartPole-v1").lr == 5e-4
    assert algo_config("one-step-sarsa", "CartPole-v1").sarsa and not algo_config("one-step-q", "CartPole-v1").sarsa
    for spec in registry.specs():
        for p in spec.presets:
            assert p.source and "\n" not in p.source, (spec.name, p.env)
            spec.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.values.items()})  # valid values
