"""Planning-step speed of the one planner implementation on every backend, against the FLOP limit.

    python benchmarks/planning_speed.py                       # default-size random model, 1 thread
    python benchmarks/planning_speed.py --compile             # + a torch.compile (inductor) row (~2 min to compile)
    python benchmarks/planning_speed.py --threads 2 --iterations 40 --out outputs/bench/planning_speed.json

Side by side in one run (same model, same thread count), milliseconds per gradient-planner iteration
(``R`` restarts x ``H`` steps, the shipped R = 8, H = 16; the whole planner step: rollout, cost,
gradient, action terms, Adam) and per CEM round (256 samples x 16 steps) for:

* ``torch autograd``   the PyTorch backend with autograd (``TorchBackend(fused=False)``)
* ``torch compiled``   the same cost-and-gradient through ``torch.compile`` (with ``--compile``)
* ``torch fused``      the PyTorch backend with the fused closed-form kernel (the default on CPU)
* ``onnxruntime``      the bundle backend on ``cost_grad.onnx`` / ``rollout_cost.onnx``
* ``bundle fused``     the bundle backend on the fused kernel's exported tensors (the default)

with the FLOP count of each step (``torch.utils.flop_counter`` on the PyTorch call), the fraction of
this machine's measured fp32 matmul peak the timing reaches, and each row's plan after ``iterations``
steps against autograd's (max abs difference, same start). Weights are random: speed does not depend
on training. Prints a table and writes JSON.
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
import torch
from export_latency import _timeit  # the sibling benchmark's timer (run as python benchmarks/planning_speed.py)
from torch.utils.flop_counter import FlopCounterMode

from export.exporter import ExportSettings, export_bundle
from export.graphs import cost_and_grad as torch_cost_and_grad
from export.runtime import BundleBackend, load_bundle
from latent_vla.base.cpus import cpu_ticks, steal_fraction
from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import SO101
from latent_vla.base.text import Tokenizer
from latent_vla.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from latent_vla.model import ModelConfig, WorldModel
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.sampling import CEMPlanner
from planners.torch_backend import TorchBackend, TorchStart


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    timed = _timeit(fn, repeats, warmup=3)
    return timed["p50_ms"], timed["p95_ms"]


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """This machine's fp32 matmul rate at ``threads`` threads, GFLOP/s (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def random_checkpoint(run_dir: Path) -> Checkpoint:
    """A default-size ``WorldModel`` with random weights for the SO-101, saved and loaded back."""
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6))
    rng = np.random.default_rng(0)
    lo, hi = SO101.lower, SO101.upper
    states = rng.uniform(0.5 * lo, 0.5 * hi, (100, 6))
    norm = Normalizer.from_arrays(states, states, camera_names=("front", "wrist"))
    save_checkpoint(run_dir, model, norm, Tokenizer(), SO101, {"benchmark": True}, 0)
    return load_checkpoint(run_dir)


def _flops(backend: TorchBackend, start: Any, actions: np.ndarray, grad: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        if grad:
            backend.step_costs_and_grad(start, actions)
        else:
            backend.step_costs(start, actions)
    return int(counter.get_total_flops())


class CompiledTorchBackend(TorchBackend):
    """The PyTorch backend with its cost-and-gradient (``export.graphs.cost_and_grad``, the reference the
    exporter traces) compiled by ``torch.compile``: the compiled row of the table."""

    def __init__(self, model: Any, objective: TrajectoryObjective) -> None:
        super().__init__(model, objective, fused=False)
        self._compiled = torch.compile(lambda z0, a, t, w: torch_cost_and_grad(model, z0, a, t, w), dynamic=False)

    def step_costs_and_grad(self, start: TorchStart, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`TorchBackend.step_costs_and_grad`."""
        a = self._actions(start, actions)
        _, grad, steps = self._compiled(start.z0, a, start.task, self._step_weights(a.shape[1], a))
        return steps.numpy(), grad.numpy()


def _backends(args: argparse.Namespace, ckpt: Checkpoint, bundle_dir: Path, objective: Any) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir, threads=args.threads)
    backends = {"torch autograd": TorchBackend(ckpt.model, objective, fused=False)}
    if args.compile:
        backends["torch compiled"] = CompiledTorchBackend(ckpt.model, objective)
    backends["torch fused"] = TorchBackend(ckpt.model, objective, fused=True)
    backends["onnxruntime"] = BundleBackend(bundle, fused=False)
    backends["bundle fused"] = BundleBackend(bundle, fused=True)
    return backends


def _time_row(args: argparse.Namespace, backend: Any, objective: Any, z0: np.ndarray, task: np.ndarray) -> dict:
    grad = GradientPlanner(backend, args.horizon, restarts=args.restarts, iterations=args.iterations,
                           patience=0, objective=objective, use_policy=False)  # fmt: skip
    cem = CEMPlanner(backend, args.horizon, samples=256, elites=32, iterations=args.rounds, objective=objective,
                     use_policy=False)  # fmt: skip
    g50, g95 = _median_ms(lambda: grad.plan(z0, task), args.repeats)
    c50, _ = _median_ms(lambda: cem.plan(z0, task), max(3, args.repeats // 4))
    plan, _ = GradientPlanner(backend, args.horizon, restarts=args.restarts, iterations=args.iterations, patience=0,
                              objective=objective, use_policy=False, seed=1).plan(z0, task)  # fmt: skip
    return {"grad_ms_per_iteration_p50": g50 / args.iterations, "grad_ms_per_iteration_p95": g95 / args.iterations,
            "grad_plan_ms_p50": g50, "cem_ms_per_round_p50": c50 / args.rounds, "cem_plan_ms_p50": c50,
            "plan": plan}  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every backend on the same random default model; return the figures."""
    torch.set_num_threads(args.threads)
    ticks = cpu_ticks()
    tmp = Path(tempfile.mkdtemp(prefix="planning-speed-"))
    ckpt = random_checkpoint(tmp / "run")
    objective = TrajectoryObjective(prior_weight=1.0)  # the shipped grad planner's objective
    settings = ExportSettings(horizon=args.horizon, precisions=("fp32",), objective=objective.to_dict())
    export_bundle(ckpt, tmp / "bundle", settings, progress=False)
    backends = _backends(args, ckpt, tmp / "bundle", objective)
    with torch.no_grad():
        task = ckpt.embed_instruction(["reach the red target"]).numpy()
        z0 = ckpt.model.normalize_latent(torch.randn(1, ckpt.model.latent_dim)).numpy()
    rows = [{"backend": name, **_time_row(args, b, objective, z0, task)} for name, b in backends.items()]
    reference = rows[0]["plan"]
    for r in rows:
        r["plan_max_abs_diff"] = float(np.abs(r.pop("plan") - reference).max())
    torch_backend = backends["torch autograd"]
    start = torch_backend.prepare(z0, task)
    flops_grad = _flops(torch_backend, start, np.zeros((args.restarts, args.horizon, 6), np.float32), True)
    flops_cem = _flops(torch_backend, start, np.zeros((256, args.horizon, 6), np.float32), False)
    peak = matmul_peak_gflops(args.threads)
    for r in rows:
        r["grad_gflop_per_iteration"] = flops_grad / 1e9
        r["grad_fraction_of_peak"] = flops_grad / (r["grad_ms_per_iteration_p50"] * 1e-3) / (peak * 1e9)
        r["cem_gflop_per_round"] = flops_cem / 1e9
        r["cem_fraction_of_peak"] = flops_cem / (r["cem_ms_per_round_p50"] * 1e-3) / (peak * 1e9)
    return {
        "rows": rows,
        "matmul_peak_gflops": peak,
        "steal_fraction": steal_fraction(ticks, cpu_ticks()),  # the hypervisor's share while measuring
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    """The CPU model, the product tile the fused kernel chose for it (8 x 2 with AVX-512, 4 x 1 without:
    the kernel's speed differs by about 1.4x between the two) and the torch version."""
    from latent_vla.base.fused_gemm import TILE  # numba: compiled only when the kernel rows run anyway

    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        name = models[0] if models else name
    return {"cpu": name, "avx512": TILE == (8, 2), "kernel_tile": list(TILE), "torch": torch.__version__}


def print_table(result: dict[str, Any]) -> None:
    """One line per backend."""
    s = result["settings"]
    steal = "n/a" if result["steal_fraction"] is None else f"{100 * result['steal_fraction']:.1f} %"
    print(f"planning speed: R={s['restarts']} H={s['horizon']}, {s['threads']} thread(s), "
          f"fp32 matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s, {steal} of CPU time stolen by the "
          "hypervisor")  # fmt: skip
    m = result.get("machine", {})
    print(f"cpu: {m.get('cpu')}, AVX-512: {m.get('avx512')}, kernel tile {m.get('kernel_tile')}")
    print(f"{'backend':<15} {'grad ms/it':>10} {'p95':>6} {'MFLOP/it':>9} {'% peak':>7} "
          f"{'cem ms/round':>12} {'MFLOP/round':>11} {'% peak':>7} {'plan diff':>9}")  # fmt: skip
    for r in result["rows"]:
        print(f"{r['backend']:<15} {r['grad_ms_per_iteration_p50']:>10.3f} {r['grad_ms_per_iteration_p95']:>6.2f} "
              f"{r['grad_gflop_per_iteration'] * 1e3:>9.1f} {100 * r['grad_fraction_of_peak']:>6.1f}% "
              f"{r['cem_ms_per_round_p50']:>12.3f} {r['cem_gflop_per_round'] * 1e3:>11.1f} "
              f"{100 * r['cem_fraction_of_peak']:>6.1f}% {r['plan_max_abs_diff']:>9.1e}")  # fmt: skip


def main() -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--restarts", type=int, default=8)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--iterations", type=int, default=20, help="gradient iterations per timed plan")
    p.add_argument("--rounds", type=int, default=4, help="CEM rounds per timed plan")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="add the torch.compile row (compiling takes minutes)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/planning_speed.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = measure(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
