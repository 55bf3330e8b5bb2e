"""Benchmark: the MuJoCo twin under the control loop at a fixed rate.

Measures what a real arm would feel: deadline misses, tick-start jitter (p50/p99), tick,
observation and brain time, with the twin in real-time mode (physics follows the wall clock,
two 64x64 cameras rendered every tick) and the safety layer (with FK workspace check) on.

Usage::

    python benchmarks/control_loop.py                       # 60 s at 30 Hz, scripted brain
    python benchmarks/control_loop.py --duration 10 --fps 50 --brain <bundle or run dir> --mode policy

Prints a table and writes JSON (default ``benchmarks/results/control_loop.json``), including the
machine's load average before and after, since other processes disturb the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of control (default 60)")
    p.add_argument("--fps", type=float, default=30.0, help="control rate, Hz (default 30)")
    p.add_argument("--brain", default="scripted", help="scripted | bundle dir | training run dir")
    p.add_argument("--mode", default="policy", help="brain mode for bundles/runs: policy | grad | cem | mppi")
    p.add_argument("--task", default="push the red cube into the green zone", help="instruction")
    p.add_argument("--cameras", type=int, default=64, help="square camera image size, pixels")
    p.add_argument("--threads", type=int, default=1, help="torch threads for torch brains")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "control_loop.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hardware.brain import load_brain
    from hardware.config_twin import LatentVLATwinConfig
    from hardware.control_loop import ControlLoop
    from hardware.kinematics import ArmKinematics
    from hardware.safety import SafetyConfig, SafetyLayer
    from hardware.twin import LatentVLATwin
    from latent_vla.base.robot_spec import SO101

    if args.brain != "scripted":
        import torch

        torch.set_num_threads(args.threads)
    spec = SO101
    cams = {c: [args.cameras, args.cameras] for c in spec.camera_names}
    robot = LatentVLATwin(
        LatentVLATwinConfig(
            calibration_dir=Path(os.environ.get("TMPDIR", "/tmp")) / "latent_vla_twin_cal",
            realtime=True,
            fps=args.fps,
            cameras=cams,
        )
    )
    brain = load_brain(args.brain, args.task, robot_spec=spec, mode=args.mode, budget_ms=0.6e3 / args.fps)
    safety = SafetyLayer(spec, SafetyConfig(), fk=ArmKinematics.for_spec(spec))
    load_before = os.getloadavg()
    robot.connect()
    loop = ControlLoop(robot, brain, safety, fps=args.fps)
    t0 = time.time()
    report = loop.run(duration_s=args.duration, show_progress=False)
    load_after = os.getloadavg()
    result = {
        "benchmark": "control_loop",
        "started_at_unix": t0,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "loadavg_before_1_5_15min": load_before,
            "loadavg_after_1_5_15min": load_after,
        },
        "loop": report.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"control loop: twin, {args.brain} brain, {args.fps:g} Hz, {args.duration:g} s")
    table.add_column("measure")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("max", justify="right")
    for name, stats in (
        ("tick start jitter (ms)", report.jitter_ms),
        ("period (ms)", report.period_ms),
        ("tick work (ms)", report.tick_ms),
        ("observation (ms)", report.observation_ms),
        ("brain (ms)", report.brain_ms),
    ):
        table.add_row(name, *(f"{stats.get(k, float('nan')):.2f}" for k in ("p50", "p99", "max")))
    console = Console()
    console.print(table)
    console.print(
        f"ticks {report.ticks}, rate {report.fps_achieved:.2f} Hz, deadline misses {report.deadline_misses} "
        f"({100 * report.deadline_misses / max(report.ticks, 1):.2f} %), skipped {report.skipped_ticks}, "
        f"brain late {report.brain_late} (late answers used {report.brain_late_results_used}), "
        f"safety interventions {report.safety.get('interventions')}; "
        f"load average {load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs"
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
