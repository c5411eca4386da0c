"""Throughput on Atari pixels (``ALE/Pong-v5``, the paper's network): what one core can do,
A3C at 1 and 2 workers, and the batched learner against Stable-Baselines3.

1. **Ceiling**, one process on one core: agent steps/s of the preprocessed ALE pipeline
   alone (random actions), forward passes/s of the paper's network at batch 1 without
   autograd, and forward+backward passes/s at batch 5.
2. **A3C**, frozen policy (``--lr 0``: every update is computed and applied, the weights
   do not move, so every repeat plays the same kind of games): frames/s per worker at 1
   and 2 workers, and the 2-worker / 1-worker ratio.
3. **Batched learner**: our A2C and PPO, 2 actors x 8 envs (``--sync`` and ``--async``),
   beside SB3's A2C and PPO with their CNN policy and the same 16 envs (rl-baselines3-zoo
   Atari hyperparameters; torch one thread; ``DummyVecEnv``, SB3's default for Atari, and
   ``SubprocVecEnv``), each measured in a child process of this one, alternating.

Figures are medians over ``--repeats`` with min-max; frames = 4 x agent steps.

    python benchmarks/atari_throughput.py --repeats 3

Writes ``benchmarks/results/atari_throughput.{json,md}``; needs ``pip install -e ".[atari,bench]"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import asyncrl_run, fmt, parse_args, run_json, spread, write_results  # noqa: E402

ENV = "ALE/Pong-v5"
FRAMES = 4

OURS = {
    "asyncrl A2C (sync, 2 actors x 8 envs)": ["--algo", "a2c", "--envs-per-actor", "8", "--sync"],
    "asyncrl A2C (async, 2 actors x 8 envs)": ["--algo", "a2c", "--envs-per-actor", "8", "--async"],
    "asyncrl PPO (sync, 2 actors x 8 envs)": ["--algo", "ppo", "--envs-per-actor", "8", "--sync"],
    "asyncrl PPO (async, 2 actors x 8 envs)": ["--algo", "ppo", "--envs-per-actor", "8", "--async"],
}
SB3 = {
    "SB3 A2C (16 envs, DummyVecEnv)": ("a2c", "dummy"),
    "SB3 A2C (16 envs, SubprocVecEnv)": ("a2c", "subproc"),
    "SB3 PPO (16 envs, DummyVecEnv)": ("ppo", "dummy"),
    "SB3 PPO (16 envs, SubprocVecEnv)": ("ppo", "subproc"),
}
STEPS = {"a2c": 16_000, "ppo": 16 * 128 * 4}
SKIP_S = 3.0  # start-up left out of a steady rate  # agent steps per measurement (PPO: 4 rollouts of 16 x 128)

_CEILING = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from asyncrl.envs import make_env, check_spaces
from asyncrl.networks import build_actor_critic
env = make_env("ALE/Pong-v5", seed=0)
spec, actions = check_spaces(env, "a3c")
env.reset(seed=0)
rng = np.random.default_rng(0)
n, start = 3000, time.perf_counter()
for _ in range(n):
    obs, r, term, trunc, _ = env.step(int(rng.integers(actions.n)))
    if term or trunc:
        env.reset()
env_steps = n / (time.perf_counter() - start)
model = build_actor_critic(spec, actions, (64,), shared_torso=None)
one = torch.from_numpy(np.asarray(obs))[None]
five = one.repeat(5, 1, 1, 1)
with torch.no_grad():
    for _ in range(50): model(one)
    k, start = 2000, time.perf_counter()
    for _ in range(k): model(one)
    forward = k / (time.perf_counter() - start)
k, start = 300, time.perf_counter()
for _ in range(k):
    logits, values = model(five)
    (logits.sum() + values.sum()).backward()
backward = k / (time.perf_counter() - start)
print(json.dumps({"pipeline_steps_per_s": env_steps, "forward_batch1_per_s": forward,
                  "forward_backward_batch5_per_s": backward}))
"""

_SB3 = r"""
import json, sys, time
import ale_py, gymnasium, torch
gymnasium.register_envs(ale_py)
torch.set_num_threads(1)
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
algo, vec, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}[vec]
env = make_atari_env("ALE/Pong-v5", n_envs=16, seed=0, vec_env_cls=cls,
                     vec_env_kwargs={"start_method": "fork"} if vec == "subproc" else None,  # ALE ids registered
                     env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0})
env = VecFrameStack(env, n_stack=4)
if algo == "a2c":  # rl-baselines3-zoo hyperparams/a2c.yml, atari
    model = A2C("CnnPolicy", env, ent_coef=0.01, vf_coef=0.25, seed=0, device="cpu",
                policy_kwargs=dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5)))
else:  # rl-baselines3-zoo hyperparams/ppo.yml, atari (lr and clip linear to 0)
    model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=lambda f: f * 2.5e-4,
                clip_range=lambda f: f * 0.1, vf_coef=0.5, ent_coef=0.01, seed=0, device="cpu")
start = time.perf_counter()
model.learn(total_timesteps=steps)
wall = time.perf_counter() - start
env.close()
print(json.dumps({"global_step": model.num_timesteps, "wall_time_s": wall, "steps_per_s": model.num_timesteps / wall}))
"""


def ceiling() -> dict:
    result, _, err = run_json([sys.executable, "-c", _CEILING], timeout=600)
    if result is None:
        raise RuntimeError(err)
    return result


def a3c(workers: int, steps_per_worker: int, tmp: Path, tag: str) -> float:
    """Steady frames/s per worker of A3C with the paper's one environment per actor-learner
    and ``--lr 0``."""
    from asyncrl.metrics import steady_steps_per_s

    run_dir = tmp / f"a3c-{workers}-{tag}"
    asyncrl_run(["--algo", "a3c", "--env", ENV, "--workers", str(workers), "--envs-per-actor", "1", "--lr", "0",
                 "--total-steps", str(steps_per_worker * workers), "--log-interval", "1"], run_dir)
    return steady_steps_per_s(run_dir / "metrics.csv", skip_s=SKIP_S) * FRAMES / workers


def ours(args: list[str], tmp: Path, tag: str) -> float:
    """Steady frames/s of a batched-learner run."""
    from asyncrl.metrics import steady_steps_per_s

    run_dir = tmp / tag
    algo = args[args.index("--algo") + 1]
    asyncrl_run([*args, "--env", ENV, "--workers", "2", "--total-steps", str(STEPS[algo]), "--log-interval", "1"],
                run_dir)
    return steady_steps_per_s(run_dir / "metrics.csv", skip_s=SKIP_S) * FRAMES


def sb3(algo: str, vec: str) -> float:
    result, _, err = run_json([sys.executable, "-c", _SB3, algo, vec, str(STEPS[algo])], timeout=1800)
    if result is None:
        raise RuntimeError(err)
    return result["steps_per_s"] * FRAMES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--a3c-steps", type=int, default=15_000, help="agent steps per A3C worker per measurement")
    p.add_argument("--skip-sb3", action="store_true")
    args = parse_args(p, repeats=1, a3c_steps=2_500)
    if args.smoke:
        global SKIP_S
        STEPS.update(a2c=4_000, ppo=16 * 128 * 2)
        SKIP_S = 0.0

    raw: dict[str, list[float]] = {}
    ceilings = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.repeats):
            ceilings.append(ceiling())
            order = [1, 2] if r % 2 == 0 else [2, 1]
            for workers in order:
                raw.setdefault(f"a3c_{workers}", []).append(a3c(workers, args.a3c_steps, tmp, str(r)))
            systems = list(OURS) + ([] if args.skip_sb3 else list(SB3))
            for name in (systems if r % 2 == 0 else systems[::-1]):
                value = ours(OURS[name], tmp, f"{r}-{len(raw)}") if name in OURS else sb3(*SB3[name])
                raw.setdefault(name, []).append(value)
                print(f"repeat {r}: {name}: {value:,.0f} frames/s", file=sys.stderr, flush=True)
    a3c_ratio = [two / one * 2 for one, two in zip(raw["a3c_1"], raw["a3c_2"])]  # total 2w / total 1w
    ceil = {k: spread([c[k] for c in ceilings]) for k in ceilings[0]}
    summary = {name: spread(values) for name, values in raw.items()}
    comparisons = []
    for algo in ("A2C", "PPO"):
        best_sb3 = max((n for n in SB3 if f"SB3 {algo}" in n and n in summary),
                       key=lambda n: summary[n]["median"], default=None)
        for name in OURS:
            if f"asyncrl {algo}" in name and best_sb3:
                comparisons.append((name, best_sb3, summary[name]["median"] / summary[best_sb3]["median"]))
    lines = [
        f"# Atari throughput ({ENV}, the paper's network; frames = 4 x agent steps)\n",
        f"Medians (min–max) over {args.repeats} repeats; `python benchmarks/atari_throughput.py --repeats "
        f"{args.repeats}`.\n",
        "## Ceiling: one process, one core\n",
        f"- ALE pipeline alone (AtariPreprocessing + 4-frame stack, random actions): "
        f"{fmt(ceil['pipeline_steps_per_s'], 0)} agent steps/s = "
        f"{ceil['pipeline_steps_per_s']['median'] * FRAMES:,.0f} frames/s",
        f"- network forward, batch 1, no autograd: {fmt(ceil['forward_batch1_per_s'], 0)} /s "
        f"({1000 / ceil['forward_batch1_per_s']['median']:.2f} ms)",
        f"- network forward + backward, batch 5: {fmt(ceil['forward_backward_batch5_per_s'], 0)} /s "
        f"({1000 / ceil['forward_backward_batch5_per_s']['median']:.2f} ms)\n",
        "## A3C, frozen policy (--lr 0)\n",
        "| workers | frames/s per worker | agent steps/s per worker |",
        "|---|---|---|",
        *[f"| {w} | {fmt(summary[f'a3c_{w}'], 0)} | {summary[f'a3c_{w}']['median'] / FRAMES:,.0f} |" for w in (1, 2)],
        f"\nScaling 1 → 2 workers (total frames/s ratio): {fmt(spread(a3c_ratio), 2)}\n",
        "## Batched learner vs Stable-Baselines3 (16 envs each)\n",
        "| system | frames/s |", "|---|---|",
        *[f"| {name} | {fmt(summary[name], 0)} |" for name in list(OURS) + list(SB3) if name in summary],
        "",
        *[f"- {a} ÷ {b} (the faster SB3): {ratio:.2f}×" for a, b, ratio in comparisons],
    ]
    write_results("atari_throughput", {"raw": raw, "ceiling": ceilings, "summary": summary,
                                       "a3c_scaling": a3c_ratio,
                                       "comparisons": [dict(ours=a, sb3=b, ratio=r) for a, b, r in comparisons]},
                  "\n".join(lines) + "\n")
    print(json.dumps({"summary": summary, "a3c_scaling": a3c_ratio}))


if __name__ == "__main__":
    main()
