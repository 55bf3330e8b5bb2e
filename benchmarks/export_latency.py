"""Latency of the exported bundle vs eager PyTorch at batch 1: encoder, policy, one planning tick.

    python benchmarks/export_latency.py                         # default-size random model
    python benchmarks/export_latency.py --ckpt runs/push        # a trained checkpoint
    python benchmarks/export_latency.py --threads 1 --repeats 300 --out outputs/bench/export_latency.json

Both sides get the same thread count. The planning tick is encode + plan with a fixed number of
iterations (early stopping off), for the gradient planner (torch: ``planners.GradientPlanner``,
ONNX: ``cost_grad.onnx`` + numpy Adam) and CEM (torch: ``planners.CEMPlanner``, ONNX:
``rollout_cost.onnx`` + numpy sampling). Weights are random unless ``--ckpt`` is given: latency does
not depend on training. Prints a table with p50/p95 in milliseconds and the PyTorch/onnxruntime
ratio, and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch


def _timeit(fn: Callable[[], Any], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "n": repeats}


def _random_checkpoint(run_dir: Path) -> Path:
    from latent_vla.base.normalize import Normalizer
    from latent_vla.base.robot_spec import SO101
    from latent_vla.base.text import Tokenizer
    from latent_vla.checkpoint import save_checkpoint
    from latent_vla.model import ModelConfig, WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6))  # default sizes
    rng = np.random.default_rng(0)
    norm = Normalizer.from_arrays(
        rng.uniform(0.4 * SO101.lower, 0.4 * SO101.upper, (100, 6)),  # within the joint limits, as load checks
        rng.uniform(0.45 * SO101.lower, 0.45 * SO101.upper, (100, 6)),
        camera_names=("front", "wrist"),
    )
    save_checkpoint(run_dir, model, norm, Tokenizer(), SO101, {"benchmark": True}, 0)
    return run_dir


def _observation(spec: Any, cameras: list[str], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    obs: dict[str, Any] = spec.vector_to_action(rng.uniform(-40, 40, spec.num_joints))
    for c in cameras:
        obs[c] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return obs


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Export (unless ``--bundle``), time everything, return the figures."""
    from export.exporter import ExportSettings, export_bundle
    from export.runtime import load_bundle, load_bundle_brain
    from latent_vla.checkpoint import load_checkpoint
    from planners.gradient import GradientPlanner
    from planners.sampling import CEMPlanner

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="export-bench-"))
    ckpt = load_checkpoint(args.ckpt or _random_checkpoint(tmp / "run"))
    model = ckpt.model
    cams = list(model.camera_names)
    calib = [(_observation(ckpt.spec, cams, s), "push the red cube") for s in range(16)]
    bundle_dir = Path(args.bundle) if args.bundle else tmp / "bundle"
    if not args.bundle:
        settings = ExportSettings(horizon=args.horizon, precisions=("fp32", "fp16", "int8"))
        export_bundle(ckpt, bundle_dir, settings, calibration=calib, progress=True)
    bundles = {p: load_bundle(bundle_dir, precision=p, threads=args.threads) for p in ("fp32", "fp16", "int8")}
    horizon = bundles["fp32"].horizon

    obs = _observation(ckpt.spec, cams, 123)
    instruction = "push the red cube"
    task = ckpt.embed_instruction([instruction])
    images, state = ckpt.observation_to_model(obs)
    with torch.no_grad():
        z = model.encode(images, state, task)
    np_images = {f"image_{c}": v.numpy() for c, v in images.items()}
    np_state, np_task, np_z = state.numpy(), task.numpy(), z.numpy()
    r, w = args.repeats, max(5, args.repeats // 10)
    results: dict[str, dict[str, Any]] = {}

    def torch_encode() -> Any:
        with torch.no_grad():
            return model.encode(images, state, task)

    def torch_policy() -> Any:
        with torch.no_grad():
            return model.policy(z, task)

    results["encoder"] = {"torch": _timeit(torch_encode, r, w)}
    results["policy"] = {"torch": _timeit(torch_policy, r, w)}
    for p, b in bundles.items():
        enc, pol = b.sessions["encoder"], b.sessions["policy"]
        results["encoder"][f"ort_{p}"] = _timeit(
            lambda enc=enc: enc.run({**np_images, "state": np_state, "task": np_task}), r, w
        )
        results["policy"][f"ort_{p}"] = _timeit(lambda pol=pol: pol.run({"z": np_z, "task": np_task}), r, w)

    # One planning tick: encode the observation + plan (fixed iterations).
    it, restarts = args.grad_iterations, args.restarts
    elites = max(1, min(32, args.samples // 8))
    torch_grad = GradientPlanner(model, horizon=horizon, restarts=restarts, iterations=it, patience=0, use_policy=True)
    torch_cem = CEMPlanner(model, horizon=horizon, samples=args.samples, elites=elites, iterations=4, use_policy=True)

    def torch_tick(planner: Any) -> Callable[[], Any]:
        def tick() -> Any:
            zz = torch_encode()
            return planner.plan(zz, task)

        return tick

    plan_r = max(10, r // 10)
    results["grad_tick"] = {"torch": _timeit(torch_tick(torch_grad), plan_r, 3)}
    results["cem_tick"] = {"torch": _timeit(torch_tick(torch_cem), plan_r, 3)}
    for p in ("fp32", "int8"):
        grad_brain = load_bundle_brain(
            bundle_dir, mode="grad", instruction=instruction, precision=p, threads=args.threads,
            planner={"iterations": it, "restarts": restarts, "patience": 0, "budget_ms": None},
        )  # fmt: skip
        cem_brain = load_bundle_brain(
            bundle_dir, mode="cem", instruction=instruction, precision=p, threads=args.threads,
            planner={"samples": args.samples, "elites": elites, "iterations": 4, "budget_ms": None},
        )  # fmt: skip
        for name, brain in (("grad_tick", grad_brain), ("cem_tick", cem_brain)):
            brain.act(obs)
            brain.reset()  # no warm start carried between timed ticks
            results[name][f"ort_{p}"] = _timeit(lambda brain=brain: (brain.reset(), brain.act(obs)), plan_r, 3)

    for row in results.values():
        for key, val in row.items():
            if key.startswith("ort_"):
                val["speedup_vs_torch_p50"] = row["torch"]["p50_ms"] / val["p50_ms"]
    sizes = {
        f"{g}@{p}": spec.bytes
        for g, variants in bundles["fp32"].manifest.graphs.items()
        for p, spec in variants.items()
    }
    return {
        "results": results,
        "sizes_bytes": sizes,
        "settings": {
            "threads": args.threads, "repeats": r, "horizon": horizon, "grad_iterations": it, "restarts": restarts,
            "cem_samples": args.samples, "cem_elites": elites, "cem_iterations": 4, "batch": 1,
        },
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
            "onnxruntime": ort.__version__, "providers": bundles["fp32"].sessions["policy"].providers,
        },
        "model": {"checkpoint": str(ckpt.run_dir), "parameters": sum(p.numel() for p in model.parameters())},
    }  # fmt: skip


def print_table(figures: dict[str, Any]) -> None:
    """A rich table: p50 / p95 per backend and the PyTorch / onnxruntime ratio at p50."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"batch-1 latency, ms (threads={figures['settings']['threads']})")
    cols = ["torch", "ort_fp32", "ort_fp16", "ort_int8"]
    table.add_column("component")
    for c in cols:
        table.add_column(f"{c} p50/p95", justify="right")
    table.add_column("fp32 speedup", justify="right")
    table.add_column("int8 speedup", justify="right")
    for name, row in figures["results"].items():
        cells = [f"{row[c]['p50_ms']:.3f} / {row[c]['p95_ms']:.3f}" if c in row else "-" for c in cols]
        sp = [f"{row[k]['speedup_vs_torch_p50']:.1f}x" if k in row else "-" for k in ("ort_fp32", "ort_int8")]
        table.add_row(name, *cells, *sp)
    Console(width=140).print(table)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="checkpoint run dir (default: a random default-size model)")
    parser.add_argument("--bundle", default=None, help="use this bundle instead of exporting one")
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--grad-iterations", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--out", default="outputs/bench/export_latency.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = run(args)
    print_table(figures)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
