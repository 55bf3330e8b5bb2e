"""Benchmark: how fast the simulator produces data, from physics to a written LeRobotDataset.

Measures, on this machine:

1. physics: ``mj_step`` per second on the task's scene (no rendering);
2. rendering: frames per second with both cameras at 64x64 (shadow- and multisample-free), where
   one frame is the pair of images an env step produces;
3. env: ``env.step`` per second with the scripted expert acting (physics + both cameras + task);
4. collection: end-to-end frames per second of ``sim.collect.collect`` into a LeRobotDataset
   (video encoding, parquet, statistics, merge), for each requested worker count.

Usage::

    python benchmarks/sim_throughput.py                          # reach, 40 episodes, workers 1 and 2
    python benchmarks/sim_throughput.py --task push --episodes 60 --workers 2 --out results.json

Prints a table and writes JSON (default ``benchmarks/results/sim_throughput.json``) with the load
average before and after, since other processes on a shared machine slow every figure down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", help="reach | push | pick (default reach)")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each micro-benchmark, s")
    p.add_argument("--episodes", type=int, default=40, help="episodes per collection run (default 40)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to collect with")
    p.add_argument("--image-size", type=int, default=64, help="square camera image size, pixels")
    p.add_argument("--max-episode-steps", type=int, default=None, help="episode length; default: the task's")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sim_throughput.json")
    return p.parse_args(argv)


def _timed(fn, seconds: float) -> tuple[int, float]:
    """Call ``fn()`` (which returns a count) until ``seconds`` have passed; (count, elapsed s)."""
    n, t0 = 0, time.perf_counter()
    while True:
        n += fn()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n, dt


def bench_sim(task: str, size: int, seconds: float) -> dict[str, float]:
    """Physics steps/s, rendered frames/s (both cameras) and expert env steps/s."""
    import mujoco

    import sim
    from sim.experts import make_expert

    env = sim.make_env(task, image_height=size, image_width=size)
    expert = make_expert(env)
    scene = env.unwrapped.scene
    cams = list(env.unwrapped.cameras)
    obs, _ = env.reset(seed=0)
    expert.reset(0)

    def physics() -> int:
        for _ in range(100):
            mujoco.mj_step(scene.model, scene.data)
        return 100

    def render() -> int:
        for cam in cams:
            scene.render(cam)
        return 1

    state = {"obs": obs, "t": 0, "seed": 0}

    def step() -> int:
        state["obs"], _, term, trunc, _ = env.step(expert.act(state["obs"]))
        if term or trunc:
            state["seed"] += 1
            state["obs"], _ = env.reset(seed=state["seed"])
            expert.reset(state["seed"])
        return 1

    render()  # create the renderers outside the timing
    out = {}
    n, dt = _timed(physics, seconds)
    out["physics_steps_per_s"] = n / dt
    n, dt = _timed(render, seconds)
    out["render_frames_per_s"] = n / dt
    out["render_ms_per_frame"] = 1e3 * dt / n
    env.reset(seed=0)
    n, dt = _timed(step, seconds)
    out["env_steps_per_s"] = n / dt
    out["env_ms_per_step"] = 1e3 * dt / n
    out["cameras"] = cams
    env.close()
    return out


def bench_collect(task: str, size: int, episodes: int, workers: int, steps: int | None) -> dict[str, float]:
    """One real collection into a temporary folder; its collect.json figures."""
    from sim.collect import CollectConfig, collect

    tmp = Path(tempfile.mkdtemp(prefix="sim_throughput_"))
    try:
        cfg = CollectConfig(
            task=task,
            episodes=episodes,
            seed=0,
            out=tmp / "ds",
            repo_id=f"bench/{task}",
            workers=workers,
            image_hw=(size, size),
            max_episode_steps=steps,
            progress=False,
        )
        result = collect(cfg)
        s = result.summary()
        return {
            k: s[k]
            for k in (
                "episodes",
                "frames",
                "frames_per_s",
                "steady_frames_per_s",
                "cpu_ms_per_frame",
                "wall_s",
                "merge_s",
                "pc_success",
            )
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    sim_figs = bench_sim(args.task, args.image_size, args.seconds)
    collections = []
    for w in [int(x) for x in str(args.workers).split(",") if x.strip()]:
        figs = bench_collect(args.task, args.image_size, args.episodes, w, args.max_episode_steps)
        collections.append({"workers": w, **figs})
    load_after = os.getloadavg()

    rows = [
        ("physics mj_step/s", f"{sim_figs['physics_steps_per_s']:,.0f}"),
        (
            f"rendered frames/s ({'+'.join(sim_figs['cameras'])}, {args.image_size}px)",
            f"{sim_figs['render_frames_per_s']:,.0f}",
        ),
        ("env steps/s (expert acting)", f"{sim_figs['env_steps_per_s']:,.0f}"),
    ]
    for c in collections:
        rows.append(
            (
                f"collected frames/s, {c['workers']} worker(s)",
                f"{c['frames_per_s']:,.0f} end to end, {c['steady_frames_per_s']:,.0f} steady, "
                f"{c['cpu_ms_per_frame']:.2f} CPU ms/frame ({c['frames']} frames in {c['wall_s']:.1f} s, "
                f"merge {c['merge_s']:.1f} s)",
            )
        )
    width = max(len(k) for k, _ in rows)
    print(f"sim throughput: task {args.task}, {os.cpu_count()} CPUs, load {load_before[0]:.2f} -> {load_after[0]:.2f}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")

    doc = {
        "command": " ".join(["python", "benchmarks/sim_throughput.py", *(sys.argv[1:] if argv is None else argv)]),
        "task": args.task,
        "image_size": args.image_size,
        "episodes": args.episodes,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        **{k: v for k, v in sim_figs.items()},
        "collect": collections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
