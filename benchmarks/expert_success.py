"""Success rate of the scripted experts over seeded episodes, plus env step cost.

Usage::

    MUJOCO_GL=egl python benchmarks/expert_success.py --episodes 100   # -> benchmarks/results/expert_success.json
    MUJOCO_GL=egl python benchmarks/expert_success.py --tasks reach push --episodes 10

Prints a table (task, episodes, pc_success, mean steps to first success, avg_sum_reward,
wall-clock ms per env step incl. two 64x64 renders, ms per expert action) and writes the same
figures as JSON, with the load average before and after (the machine is shared: timings are
only comparable at a similar load). Episode ``i`` uses env seed ``seed + i`` and expert seed
``seed + i``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

os.environ.setdefault("MUJOCO_GL", "egl")

import sim  # noqa: E402
from sim.experts import EXPERTS, make_expert  # noqa: E402


def evaluate(task: str, episodes: int, seed: int) -> dict[str, float]:
    """Run ``episodes`` seeded expert episodes of ``task``; returns its figures."""
    env = sim.make_env(task)
    expert = make_expert(env)
    successes, first_success, sum_rewards, max_rewards = [], [], [], []
    step_s = act_s = 0.0
    steps = 0
    try:
        for i in tqdm(range(episodes), desc=task, unit="ep", leave=False):
            obs, _ = env.reset(seed=seed + i)
            expert.reset(seed + i)
            rewards, first, info = [], None, {}
            for t in range(env.unwrapped.episode_length):
                t0 = time.perf_counter()
                action = expert.act(obs)
                t1 = time.perf_counter()
                obs, reward, _, _, info = env.step(action)
                t2 = time.perf_counter()
                act_s += t1 - t0
                step_s += t2 - t1
                steps += 1
                rewards.append(reward)
                if info["is_success"] and first is None:
                    first = t + 1
            successes.append(bool(info["is_success"]))
            if first is not None:
                first_success.append(first)
            sum_rewards.append(float(np.sum(rewards)))
            max_rewards.append(float(np.max(rewards)))
    finally:
        env.close()
    return {
        "episodes": episodes,
        "pc_success": 100.0 * float(np.mean(successes)),
        "successes": int(np.sum(successes)),
        "mean_steps_to_success": float(np.mean(first_success)) if first_success else float("nan"),
        "episode_length": int(env.unwrapped.episode_length),
        "avg_sum_reward": float(np.mean(sum_rewards)),
        "avg_max_reward": float(np.mean(max_rewards)),
        "ms_per_env_step": 1000.0 * step_s / max(steps, 1),
        "ms_per_expert_act": 1000.0 * act_s / max(steps, 1),
        "failed_seeds": [seed + i for i, s in enumerate(successes) if not s],
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=sorted(EXPERTS), choices=sorted(EXPERTS))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "expert_success.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = {task: evaluate(task, args.episodes, args.seed) for task in args.tasks}
    load_after = os.getloadavg()
    header = f"{'task':<6} {'episodes':>8} {'pc_success':>10} {'steps_to_succ':>13} {'sum_reward':>10} " \
             f"{'ms/step':>8} {'ms/act':>7}"
    print(header)
    print("-" * len(header))
    for task, r in results.items():
        print(
            f"{task:<6} {r['episodes']:>8d} {r['pc_success']:>10.1f} {r['mean_steps_to_success']:>13.1f} "
            f"{r['avg_sum_reward']:>10.2f} {r['ms_per_env_step']:>8.2f} {r['ms_per_expert_act']:>7.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
