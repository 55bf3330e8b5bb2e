"""Training-step and planning-tick speed of the default world model on each device (CPU, and CUDA when
there is one), and planning-step speed through an exported bundle on each onnxruntime execution provider
this onnxruntime offers (CPU always; CUDA and TensorRT when available), from synthetic inputs: no
dataset, simulator or LeRobot.

    python benchmarks/device_speed.py                        # CPU (+ CUDA if available), every provider
    python benchmarks/device_speed.py --devices cuda --steps 200 --providers cuda tensorrt
    python benchmarks/device_speed.py --bundle exports/push  # time an existing bundle instead of exporting one
    python benchmarks/device_speed.py --smoke                # seconds of timing (plus the export): a test

Measures, per torch device: optimizer steps per second of the full training objective
(:class:`latent_vla.losses.WorldModelLoss`, default weights, batch 64, window 4, two 64x64 cameras), and
the per-tick time of the gradient planner (8 restarts x 16 steps, fixed iteration counts), CEM and
MPPI (256 samples x 6 rounds) with no wall-clock budget. Per onnxruntime provider: milliseconds per
gradient-planner iteration (R restarts x H steps, the whole step) and per CEM round (256 samples)
through :class:`export.runtime.BundleBackend` on the ONNX graphs (``fused=False``), timed as
``benchmarks/planning_speed.py`` times its rows, on a default-size random checkpoint exported there,
with each provider's plan against the CPU provider's (max abs difference). Prints tables, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planning_speed import _time_row, random_checkpoint  # noqa: E402  (the sibling benchmark's timing)

from export.exporter import ExportSettings, export_bundle  # noqa: E402
from export.runtime import BundleBackend, load_bundle  # noqa: E402
from export.runtime.brain import BundlePerception  # noqa: E402
from export.runtime.session import PREFERRED_PROVIDERS  # noqa: E402
from latent_vla.base.robot_spec import SO101  # noqa: E402
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


PROVIDER_NAMES = {"cpu": PREFERRED_PROVIDERS[2], "cuda": PREFERRED_PROVIDERS[1], "tensorrt": PREFERRED_PROVIDERS[0]}
"""Short provider names of the onnxruntime rows -> onnxruntime's names (``export.runtime.session``)."""
SMOKE = {"steps": 1, "ticks": 1, "batch": 4, "iterations": 2, "rounds": 1, "repeats": 1}
"""``--smoke``: the fewest timed steps that still exercise every row."""


def available_providers() -> list[str]:
    """Short names of the providers of :data:`PROVIDER_NAMES` this onnxruntime offers, CPU first."""
    offered = ort.get_available_providers()
    return [short for short, full in PROVIDER_NAMES.items() if full in offered]


def _bundle_dir(args: argparse.Namespace) -> Path:
    """``--bundle``, or a default-size random checkpoint exported (fp32, ``--plan-horizon``) to a temporary folder."""
    if args.bundle is not None:
        return Path(args.bundle)
    from planners.objectives import TrajectoryObjective

    tmp = Path(tempfile.mkdtemp(prefix="device-speed-"))
    objective = TrajectoryObjective(prior_weight=1.0)  # the shipped grad planner's objective
    settings = ExportSettings(horizon=args.plan_horizon, precisions=("fp32",), objective=objective.to_dict())
    export_bundle(random_checkpoint(tmp / "run"), tmp / "bundle", settings, progress=False)
    return tmp / "bundle"


def _bundle_start(bundle: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(z0 (1, Z), task (1, T))``: a synthetic SO-101 observation at home encoded by the bundle."""
    perception = BundlePerception(bundle)
    rng = np.random.default_rng(0)
    observation: dict[str, Any] = dict(SO101.vector_to_action(SO101.home_vector))
    for camera in bundle.camera_names:
        observation[camera] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    task = perception.embed_instruction("reach the red target")
    return perception.encode_observation(observation, task), task


def onnxruntime_rows(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per provider (short name): ms per gradient iteration / CEM round through ``BundleBackend(fused=False)``,
    the provider onnxruntime actually put first, and the plan's max abs difference from the first provider's."""
    bundle_dir = _bundle_dir(args)
    rows: dict[str, dict[str, Any]] = {}
    reference = None
    for name in args.providers:
        bundle = load_bundle(bundle_dir, providers=[name], threads=args.threads or None)
        backend = BundleBackend(bundle, fused=False)
        z0, task = _bundle_start(bundle)
        timing = argparse.Namespace(**{**vars(args), "horizon": bundle.horizon})  # _time_row's H
        row = _time_row(timing, backend, backend.objective, z0, task)
        plan = row.pop("plan")
        reference = plan if reference is None else reference
        rows[name] = {"active_provider": bundle.sessions["cost_grad"].providers[0], "horizon": bundle.horizon,
                      "plan_max_abs_diff_vs_first": float(np.abs(plan - reference).max()), **row}  # fmt: skip
    return rows


def torch_rows(args: argparse.Namespace, cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """Per torch device: training steps per second and planning ms per tick (see the module docstring)."""
    devices = args.devices if args.devices is not None else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    out = {}
    for name in devices:
        device = torch.device(name)
        steps = args.steps * (10 if device.type == "cuda" else 1)
        out[name] = {
            "train_steps_per_s": train_steps_per_s(cfg, device, steps, args.batch, args.horizon),
            "plan_ms": plan_ms(cfg, device, args.ticks),
        }
    return out


def print_tables(result: dict[str, Any], cfg: ModelConfig) -> None:
    """The torch table (one column per device) and the onnxruntime table (one line per provider)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    if result["devices"]:
        table = Table(title=f"default world model ({WorldModel(cfg).num_parameters() / 1e6:.2f} M params), torch")
        table.add_column("measure")
        for name in result["devices"]:
            table.add_column(name, justify="right")
        a = result["args"]
        rows = [
            (f"train steps/s (batch {a['batch']}, window {a['horizon']})", lambda d: f"{d['train_steps_per_s']:.2f}")
        ]
        for planner in next(iter(result["devices"].values()))["plan_ms"]:
            label = f"{planner}: ms per tick p50 / p95"
            rows.append((label, lambda d, k=planner: "{p50:.1f} / {p95:.1f}".format(**d["plan_ms"][k])))
        for label, fmt in rows:
            table.add_row(label, *[fmt(d) for d in result["devices"].values()])
        console.print(table)
    if result["onnxruntime"]:
        a = result["args"]
        h = next(iter(result["onnxruntime"].values()))["horizon"]
        table = Table(title=f"bundle planning in onnxruntime (BundleBackend, ONNX graphs), R={a['restarts']} H={h}")
        for col in ("provider", "runs on", "grad ms/it p50", "p95", "cem ms/round p50", "plan diff vs first"):
            table.add_column(col, justify="right")
        for name, r in result["onnxruntime"].items():
            table.add_row(name, r["active_provider"], f"{r['grad_ms_per_iteration_p50']:.3f}",
                          f"{r['grad_ms_per_iteration_p95']:.3f}", f"{r['cem_ms_per_round_p50']:.3f}",
                          f"{r['plan_max_abs_diff_vs_first']:.1e}")  # fmt: skip
        console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); ``--smoke`` overrides the counts with :data:`SMOKE`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="*", default=None, help="torch devices; default: cpu, and cuda when available")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per device")
    p.add_argument("--ticks", type=int, default=30, help="timed planning ticks per planner")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--horizon", type=int, default=4, help="training window")
    p.add_argument("--threads", type=int, default=0, help="torch and onnxruntime CPU threads (0 = their default)")
    p.add_argument("--providers", nargs="*", default=None, choices=list(PROVIDER_NAMES),
                   help="onnxruntime providers; default: each this onnxruntime offers")  # fmt: skip
    p.add_argument("--bundle", default=None, help="time this bundle (its horizon) instead of exporting one")
    p.add_argument("--restarts", type=int, default=8, help="gradient-planner restarts R")
    p.add_argument("--plan-horizon", type=int, default=16, help="planning horizon H of the exported bundle")
    p.add_argument("--iterations", type=int, default=20, help="gradient iterations per timed plan")
    p.add_argument("--rounds", type=int, default=4, help="CEM rounds per timed plan")
    p.add_argument("--repeats", type=int, default=20, help="timed plans per provider")
    p.add_argument("--smoke", action="store_true", help="a few timed steps of each row, to check it runs")
    p.add_argument("--out", default="outputs/bench/device_speed.json")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    if args.providers is None:
        args.providers = available_providers()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6)
    result: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "onnxruntime_providers": ort.get_available_providers(),
            "python": platform.python_version(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "args": vars(args),
        "devices": torch_rows(args, cfg),
        "onnxruntime": onnxruntime_rows(args) if args.providers else {},
    }
    print_tables(result, cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
