"""Training-step and planning-tick speed of the default world model on each device (CPU, and CUDA when
there is one), from synthetic inputs, so it needs only torch: no dataset, simulator or LeRobot.

    python benchmarks/device_speed.py                        # CPU (+ CUDA if available)
    python benchmarks/device_speed.py --devices cuda --steps 200

Measures, per device: optimizer steps per second of the full training objective
(:class:`latent_vla.losses.WorldModelLoss`, default weights, batch 64, window 4, two 64x64 cameras), and
the per-tick time of the gradient planner (8 restarts x 16 steps, fixed iteration counts), CEM and
MPPI (256 samples x 6 rounds) with no wall-clock budget. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latent_vla.data import Batch  # noqa: E402
from latent_vla.losses import LossWeights, WorldModelLoss  # noqa: E402
from latent_vla.model import ModelConfig, WorldModel  # noqa: E402
from planners.gradient import GradientPlanner  # noqa: E402
from planners.sampling import CEMPlanner, MPPIPlanner  # noqa: E402


def synthetic_batch(cfg: ModelConfig, batch: int, horizon: int, device: torch.device, seed: int = 0) -> Batch:
    """A model-ready :class:`Batch` of random data with the shapes of a real one."""
    g = torch.Generator().manual_seed(seed)
    k1 = horizon + 1
    images = {c: torch.rand(batch, k1, 3, *cfg.image_size, generator=g) for c in cfg.camera_names}
    tokens = torch.randint(1, cfg.vocab_size, (batch, 12), generator=g)
    return Batch(
        images=images,
        state=torch.randn(batch, k1, cfg.state_dim, generator=g),
        actions=torch.rand(batch, horizon, cfg.action_dim, generator=g) * 2 - 1,
        cost=torch.rand(batch, horizon, generator=g) * 0.2,
        success=(torch.rand(batch, horizon, generator=g) > 0.8).float(),
        chunk=torch.rand(batch, cfg.chunk_len, cfg.action_dim, generator=g) * 2 - 1,
        chunk_mask=torch.ones(batch, cfg.chunk_len),
        tokens=tokens,
    ).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps_per_s(cfg: ModelConfig, device: torch.device, steps: int, batch: int, horizon: int) -> float:
    """Optimizer steps per second of the default objective (after 5 warm-up steps)."""
    torch.manual_seed(0)
    model = WorldModel(cfg).to(device).train()
    loss_fn = WorldModelLoss(model, LossWeights())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = synthetic_batch(cfg, batch, horizon, device)
    for i in range(steps + 5):
        if i == 5:
            _sync(device)
            t0 = time.perf_counter()
        total, _ = loss_fn(data)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    _sync(device)
    return steps / (time.perf_counter() - t0)


def plan_ms(cfg: ModelConfig, device: torch.device, ticks: int) -> dict[str, dict[str, float]]:
    """p50 / p95 milliseconds per planning tick of each planner, no budget, warm starts off."""
    torch.manual_seed(0)
    model = WorldModel(cfg).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        task = model.embed_task(torch.randint(1, 100, (1, 8), device=device))
        z0 = model.normalize_latent(torch.randn(1, model.latent_dim, device=device))
    planners = {
        "grad 8x16, 10 it": GradientPlanner(model, 16, iterations=10, patience=0),
        "grad 8x16, 30 it": GradientPlanner(model, 16, iterations=30, patience=0),
        "cem 256x6": CEMPlanner(model, 16),
        "mppi 256x6": MPPIPlanner(model, 16),
    }
    out = {}
    for name, planner in planners.items():
        times = []
        for i in range(ticks + 3):
            _sync(device)
            t0 = time.perf_counter()
            planner.plan(z0, task)
            _sync(device)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
        out[name] = {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}
    return out


def main() -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per device")
    p.add_argument("--ticks", type=int, default=30, help="timed planning ticks per planner")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", default="outputs/bench/device_speed.json")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    cfg = ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6)
    result: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "args": vars(args),
        "devices": {},
    }
    for name in devices:
        device = torch.device(name)
        steps = args.steps * (10 if device.type == "cuda" else 1)
        result["devices"][name] = {
            "train_steps_per_s": train_steps_per_s(cfg, device, steps, args.batch, args.horizon),
            "plan_ms": plan_ms(cfg, device, args.ticks),
        }
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"default world model ({WorldModel(cfg).num_parameters() / 1e6:.2f} M params)")
    table.add_column("measure")
    for name in result["devices"]:
        table.add_column(name, justify="right")
    rows = [("train steps/s (batch 64, window 4)", lambda d: f"{d['train_steps_per_s']:.2f}")]
    for planner in next(iter(result["devices"].values()))["plan_ms"]:
        rows.append(
            (
                f"{planner}: ms per tick p50 / p95",
                lambda d, k=planner: f"{d['plan_ms'][k]['p50']:.1f} / {d['plan_ms'][k]['p95']:.1f}",
            )
        )
    for label, fmt in rows:
        table.add_row(label, *[fmt(d) for d in result["devices"].values()])
    Console(width=120).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
