"""Planning benchmark: optimizer quality on an analytic problem, per-tick planning time on a world model,
and (with a trained checkpoint) closed-loop success, gradient planner vs CEM, MPPI and the policy.

    python benchmarks/planning.py                          # parts A and B (no trained model needed)
    python benchmarks/planning.py --ckpt runs/push --task push --episodes 20   # + part C
    python benchmarks/planning.py --ckpt runs/reach --task reach --episodes 100 --budget-ms 10 \
        --workers 2 --sweep 2 5 10 20 40 --skip-a        # grad at 10 ms vs CEM/MPPI at 40 ms, + sweep

A. Double integrator with a closed-form optimum (planners.analytic): cost / optimum and iterations for
   Adam vs SGD-Nesterov at several learning rates and restart counts, CEM / MPPI / random shooting.
B. Per-tick planning time (p50 / p95, ms) at horizon H >= 16 on a WorldModel (the checkpoint's, else a
   randomly initialized default ``ModelConfig``) in an imagined MPC loop with warm starts.
C. Closed-loop evaluation in MuJoCo on the same seeded episodes (planners.evaluate).

Prints tables and writes everything to ``--out`` (JSON).
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

from planners.analytic import DoubleIntegrator, lq_optimum  # noqa: E402
from planners.common import Bounds  # noqa: E402
from planners.gradient import GradientPlanner  # noqa: E402
from planners.mpc import MPC, summarize_ticks  # noqa: E402
from planners.objectives import TrajectoryObjective  # noqa: E402
from planners.policy import PolicyPlanner  # noqa: E402
from planners.sampling import CEMPlanner, MPPIPlanner, RandomShootingPlanner  # noqa: E402


def part_a(horizon: int, seeds: int = 3) -> list[dict[str, Any]]:
    """Optimizer comparison on the analytic LQ problem (loose bounds: the optimum is interior)."""
    model = DoubleIntegrator(dims=2, dt=0.2)
    z0, goal, r = torch.tensor([[1.0, -0.5, 0.3, 0.0]]), torch.zeros(1, 4), 0.1
    _, opt = lq_optimum(model, z0, goal, horizon, r)
    obj, bounds = TrajectoryObjective(prior_weight=r), Bounds(-8, 8)
    configs: list[tuple[str, Any, dict[str, Any]]] = []
    for lr in (0.05, 0.1, 0.2):
        for restarts in (1, 8):
            configs.append((f"adam lr={lr} R={restarts}", GradientPlanner, {"lr": lr, "restarts": restarts}))
    for lr in (1e-3, 3e-3):
        configs.append((f"sgd lr={lr} R=8", GradientPlanner, {"lr": lr, "optimizer": "sgd"}))
    configs += [
        ("cem 256x6", CEMPlanner, {"samples": 256, "elites": 32, "iterations": 6}),
        ("cem 512x30", CEMPlanner, {"samples": 512, "elites": 32, "iterations": 30}),
        ("mppi 256x6", MPPIPlanner, {"samples": 256, "elites": 32, "iterations": 6}),
        ("mppi 512x30", MPPIPlanner, {"samples": 512, "elites": 64, "iterations": 30}),
        ("random 512x10", RandomShootingPlanner, {"samples": 512, "iterations": 10}),
    ]
    rows = []
    for name, cls, kw in configs:
        kw = {**kw, "iterations": kw.get("iterations", 2000)}
        ratios, iters, ms = [], [], []
        for seed in range(seeds):
            _, info = cls(model, horizon, objective=obj, bounds=bounds, seed=seed, **kw).plan(z0, goal)
            ratios.append(info["cost"] / opt)
            iters.append(info["iterations"])
            ms.append(info["plan_ms"])
        rows.append({"planner": name, "cost_over_optimum": float(np.mean(ratios)),
                     "worst_cost_over_optimum": float(np.max(ratios)), "iterations": float(np.mean(iters)),
                     "plan_ms": float(np.median(ms))})  # fmt: skip
    return rows


def _world_model(ckpt: str | None, starts: int) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]], str]:
    """(model, [(first latent (1, Z), task (1, T))] * starts, description)."""
    if ckpt:
        import sim
        from latent_vla.checkpoint import load_checkpoint
        from sim.observation import robot_observation

        c = load_checkpoint(ckpt)
        env = sim.make_env(str(c.config.get("task", "reach")) if isinstance(c.config, dict) else "reach")
        out = []
        for s in range(starts):  # encoded real observations (env seeds 100, 101, ...)
            obs, _ = env.reset(seed=100 + s)
            task = c.embed_instruction([str(obs["instruction"])])
            out.append((c.encode_observation(robot_observation(obs, c.spec), task), task))
        env.close()
        return c.model, out, f"checkpoint {ckpt}"
    from latent_vla.model import ModelConfig, WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6)).eval()
    with torch.no_grad():
        task = model.embed_task(torch.randint(1, 100, (1, 8)))
        out = [(model.normalize_latent(torch.randn(1, model.latent_dim)), task) for _ in range(starts)]
    n = sum(p.numel() for p in model.parameters())
    return model, out, f"random-init default ModelConfig ({n / 1e6:.2f} M params, Z={model.latent_dim})"


def part_b(
    ckpt: str | None, horizon: int, ticks: int, budget_ms: float, starts: int
) -> tuple[list[dict[str, Any]], str]:
    """Per-tick planning time and the model's predicted cost of the chosen plans in an imagined MPC
    loop (warm starts on) from ``starts`` start latents, ``ticks`` ticks each, all planners at H."""
    model, start_list, what = _world_model(ckpt, starts)
    model.requires_grad_(False)
    planners = {
        f"grad (budget {budget_ms:g} ms)": GradientPlanner(model, horizon, lr=0.2),
        "grad (30 it, lr 0.2)": GradientPlanner(model, horizon, iterations=30, lr=0.2),
        "grad (10 it, lr 0.2)": GradientPlanner(model, horizon, iterations=10, lr=0.2, patience=0),
        "grad (10 it, lr 0.1)": GradientPlanner(model, horizon, iterations=10, lr=0.1, patience=0),
        "grad (10 it, lr 0.2, R=1)": GradientPlanner(model, horizon, iterations=10, lr=0.2, patience=0, restarts=1),
        "cem 256x6": CEMPlanner(model, horizon),
        "mppi 256x6": MPPIPlanner(model, horizon),
        "random 512": RandomShootingPlanner(model, horizon),
        "policy": PolicyPlanner(model, horizon),
    }
    rows = []
    for name, planner in planners.items():
        records = []
        for z, task in start_list:
            mpc = MPC(planner, budget_ms=budget_ms if name.startswith("grad (budget") else None)
            for _ in range(ticks):
                a = torch.from_numpy(mpc.act(z, task))
                with torch.no_grad():
                    z = model.step(z, a[None])
            records += mpc.records
        rows.append({"planner": name, "horizon": horizon, "ticks": ticks * len(start_list), **summarize_ticks(records)})
    return rows, what


def _closed_loop_one(job: dict[str, Any]) -> dict[str, Any]:
    """One planner's closed-loop evaluation in its own process (one torch thread, one core)."""
    torch.set_num_threads(1)
    import sim
    from latent_vla.checkpoint import load_checkpoint
    from planners.brains import PlannerBrain
    from planners.evaluate import evaluate_brain
    from planners.shipped import planner_config

    c = load_checkpoint(job["ckpt"])
    cfg = planner_config(job["name"])
    if job["name"] != "policy":
        cfg["horizon"] = job["horizon"]
        cfg["budget_ms"] = job["budget_ms"]
        cfg.update(job.get("overrides", {}))
    brain = PlannerBrain(c, cfg)
    task = job["task"]
    rec = evaluate_brain(
        job["label"], brain, lambda: sim.make_env(task), c.spec, task, job["episodes"], job["seed"], progress=False
    )
    rec["budget_ms"] = job["budget_ms"] if job["name"] != "policy" else None
    rec.pop("per_episode", None)
    return rec


def part_c(
    ckpt: str,
    task: str,
    episodes: int,
    seed: int,
    horizon: int,
    grad_budget_ms: float,
    baseline_budget_ms: float,
    workers: int = 1,
    sweep: tuple[float, ...] = (),
    sweep_episodes: int = 20,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Closed-loop success on the same seeded episodes for grad, CEM, MPPI and the policy, and an
    optional budget sweep (success vs ms per tick) of grad, CEM and MPPI on the first episodes.

    Planners run in ``workers`` processes with one torch thread each; with ``workers`` no larger than
    the cores, each measures its planning time on a core of its own.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from planners.evaluate import add_baseline_deltas

    base = {"ckpt": ckpt, "task": task, "seed": seed, "horizon": horizon}
    budgets = {"grad": grad_budget_ms, "cem": baseline_budget_ms, "mppi": baseline_budget_ms, "policy": None}
    jobs = [{**base, "name": n, "label": n, "budget_ms": b, "episodes": episodes} for n, b in budgets.items()]
    sweep_jobs = [
        {**base, "name": n, "label": f"{n}@{ms:g}ms", "budget_ms": ms, "episodes": sweep_episodes, "sweep": True}
        for ms in sweep
        for n in ("grad", "cem", "mppi")
    ]
    order = sorted(jobs + sweep_jobs, key=lambda j: -j["episodes"] * (j["budget_ms"] or 2.0))  # longest first
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn")) as pool:
        results = dict(zip([j["label"] for j in order], pool.map(_closed_loop_one, order), strict=True))
    records = [results[j["label"]] for j in jobs]
    add_baseline_deltas(records)
    sweep_rows = []
    for j in sweep_jobs:
        r = results[j["label"]]
        sweep_rows.append({"planner": j["name"], "budget_ms": j["budget_ms"], "episodes": j["episodes"],
                           "pc_success": r["pc_success"], "plan_ms_p50": r["plan_ms_p50"],
                           "plan_ms_p95": r["plan_ms_p95"], "iterations_mean": r.get("iterations_mean")})  # fmt: skip
    return records, sweep_rows


def _plot_sweep(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in sorted({r["planner"] for r in rows}):
        pts = sorted((r["plan_ms_p50"], r["pc_success"]) for r in rows if r["planner"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("planning ms per tick (p50)")
    ax.set_ylabel("success (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print(rows: list[dict[str, Any]], cols: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, width=120)
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    Console(width=120).print(t)


def main() -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="trained run directory (enables part C)")
    p.add_argument("--task", default="reach")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--ticks", type=int, default=20, help="imagined MPC ticks per start (part B)")
    p.add_argument("--starts", type=int, default=3, help="start latents (part B)")
    p.add_argument("--budget-ms", type=float, default=40.0, help="gradient planner's budget per tick (parts B, C)")
    p.add_argument(
        "--baseline-budget-ms",
        type=float,
        default=None,
        help="CEM / MPPI budget per tick in part C (default: 4x --budget-ms, the target ratio)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes for part C (one planner each, 1 thread)")
    p.add_argument("--sweep", type=float, nargs="*", default=[], help="part C budget sweep, ms per tick")
    p.add_argument("--sweep-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-a", action="store_true")
    p.add_argument("--out", default="outputs/bench/planning.json")
    args = p.parse_args()
    if args.horizon < 16:
        p.error("--horizon must be >= 16 for this benchmark")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "torch_threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version()},
        "args": vars(args),
    }  # fmt: skip
    t0 = time.perf_counter()
    if not args.skip_a:
        result["analytic"] = part_a(args.horizon)
        cols = ["planner", "cost_over_optimum", "worst_cost_over_optimum", "iterations", "plan_ms"]
        _print(result["analytic"], cols, f"A. analytic LQ, H={args.horizon} (cost / closed-form optimum)")
    rows, what = part_b(args.ckpt, args.horizon, args.ticks, args.budget_ms, args.starts)
    result["timing"], result["timing_model"] = rows, what
    _print(rows, ["planner", "plan_ms_p50", "plan_ms_p95", "plan_ms_max", "iterations_mean", "cost_mean"],
           f"B. per-tick planning time, {what}, H={args.horizon}, {args.threads} thread(s)")  # fmt: skip
    if args.ckpt and args.episodes > 0:
        baseline_ms = args.baseline_budget_ms if args.baseline_budget_ms is not None else 4 * args.budget_ms
        recs, sweep_rows = part_c(args.ckpt, args.task, args.episodes, args.seed, args.horizon, args.budget_ms,
                                  baseline_ms, args.workers, tuple(args.sweep), args.sweep_episodes)  # fmt: skip
        by = {r["planner"]: r for r in recs}
        for r in recs:
            r["plan_ms_p95_over_cem"] = r["plan_ms_p95"] / by["cem"]["plan_ms_p95"]
            r["success_over_cem"] = r["success_rate"] / by["cem"]["success_rate"] if by["cem"]["success_rate"] else None
        result["closed_loop"] = recs
        _print(recs, ["planner", "pc_success", "success_vs_best_other", "plan_ms_p50", "plan_ms_p95",
                      "plan_ms_p95_over_cem", "mean_episode_length"],
               f"C. closed loop, task={args.task}, {args.episodes} episodes, budget per tick: grad "
               f"{args.budget_ms:g} ms, cem/mppi {baseline_ms:g} ms")  # fmt: skip
        if sweep_rows:
            result["budget_sweep"] = sweep_rows
            _print(sweep_rows, ["planner", "budget_ms", "episodes", "pc_success", "plan_ms_p50", "plan_ms_p95",
                                "iterations_mean"], f"C'. success vs planning budget, task={args.task}")  # fmt: skip
            plot = Path(args.out).with_suffix(".sweep.png")
            plot.parent.mkdir(parents=True, exist_ok=True)
            _plot_sweep(sweep_rows, plot, f"{args.task}: success vs planning time")
            print(f"wrote {plot}")
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out} ({result['seconds']:.0f} s; load average {result['machine']['load_avg_1m']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
