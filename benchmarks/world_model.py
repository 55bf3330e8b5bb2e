"""World-model benchmark: prediction quality, cost ranking, policy success, size and speed.

    # everything from scratch (collect 200 reach episodes, train 15 min, evaluate)
    python benchmarks/world_model.py --task reach --collect-episodes 200 --train-minutes 15 \\
        --data data/reach --ckpt runs/reach --out benchmarks/results/world_model_reach.json
    # an existing dataset and checkpoint
    python benchmarks/world_model.py --data data/reach --ckpt runs/reach --task reach --eval-episodes 20
    # the open-loop error on the states the run's own planner visits (a dataset it never trained on)
    latent-vla collect task=push policy=brain brain=runs/push brain_mode=grad episodes=20 out=data/push_visited
    python benchmarks/world_model.py --data data/push_visited --ckpt runs/push --all-episodes --eval-episodes 0

Measures, on the episodes the training run held out (``train.val_fraction`` / ``train.seed`` of the
checkpoint's config; all episodes when it held none out, or with ``--all-episodes``):

1. open-loop latent prediction error after 1, 4 and 8 recorded actions, against the constant-latent
   baseline ``z_{t+h} = z_t`` (ratio < 1: the dynamics beat "nothing moves");
2. Spearman rank correlation of the predicted cost with the true task distance (``-next.reward``),
   target >= 0.9;
3. closed-loop success of the policy head in MuJoCo via ``latent-vla eval ... planners=[policy]``
   (``--eval-episodes 0`` skips it);
4. model size (parameters, bytes of ``model.safetensors``) and ``step`` throughput (latents/s) at
   batch 1 and 1024, with 1 torch thread and with the default number.

Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latent_vla.analysis import cost_vs_distance, encode_episodes, env_state_errors, open_loop_errors  # noqa: E402
from latent_vla.checkpoint import load_checkpoint  # noqa: E402
from latent_vla.data import load_frames, split_episodes  # noqa: E402


def collect_data(task: str, episodes: int, out: Path, workers: int) -> dict[str, Any]:
    """Collect expert episodes with ``sim.collect`` (skipped when ``out`` already holds a dataset)."""
    if (out / "meta" / "info.json").exists():
        return {"collected": False}
    from sim.collect import CollectConfig, collect

    t0 = time.perf_counter()
    res = collect(CollectConfig(task=task, episodes=episodes, out=out, workers=workers))
    return {"collected": True, "collect_s": time.perf_counter() - t0, "expert_pc_success": res.pc_success}


def train_model(data: Path, ckpt: Path, minutes: float, extra: list[str]) -> dict[str, Any]:
    """``latent-vla train data=... out=... train.minutes=...`` in a subprocess; returns its summary."""
    cmd = [
        sys.executable,
        "-m",
        "latent_vla.app.cli",
        "train",
        f"data={data}",
        f"out={ckpt}",
        f"train.minutes={minutes}",
        *extra,
    ]
    subprocess.run(cmd, check=True)
    return json.loads((ckpt / "train_summary.json").read_text())


def step_throughput(model, batch: int, threads: int, seconds: float = 1.0) -> float:
    """``model.step`` latents per second at ``batch`` with ``threads`` torch threads (no autograd)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = next(model.parameters()).device
        z = model.normalize_latent(torch.randn(batch, model.latent_dim, device=device))
        a = torch.rand(batch, model.action_dim, device=device) * 2 - 1
        with torch.no_grad():
            for _ in range(10):
                model.step(z, a)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                model.step(z, a)
                n += 1
            dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    return n * batch / dt


def policy_success(ckpt: Path, task: str, episodes: int, out: Path) -> dict[str, Any]:
    """Closed-loop success of the policy head through ``latent-vla eval`` (planners engineer's CLI)."""
    cmd = [
        sys.executable, "-m", "latent_vla.app.cli", "eval", f"ckpt={ckpt}", "planners=[policy]", f"task={task}",
        f"episodes={episodes}", f"out={out}", "videos=0", "progress=false",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:]}
    records = json.loads((out / "eval.json").read_text())
    rec = next(r for r in records if r["planner"] == "policy")
    return {k: rec[k] for k in ("pc_success", "avg_sum_reward", "avg_max_reward") if k in rec} | {"episodes": episodes}


def evaluate(
    ckpt: Path, data: Path, eval_episodes: int, task: str, out_dir: Path, all_episodes: bool = False
) -> dict[str, Any]:
    """All measurements of one checkpoint on one dataset: on the episodes its training run held out of
    ``data``, or on every episode with ``all_episodes`` (a dataset the run never saw, e.g. episodes its
    own planner acted in: ``latent-vla collect policy=brain brain=<run> brain_mode=grad``)."""
    ck = load_checkpoint(ckpt)
    model = ck.model
    cache = load_frames(data, model.image_size, cameras=model.camera_names, progress=True)
    train_cfg = ck.config.get("train", {})
    val_fraction = 0.0 if all_episodes else float(train_cfg.get("val_fraction", 0.0))
    _, val = split_episodes(cache.num_episodes, val_fraction, int(train_cfg.get("seed", 0)))
    held_out = len(val) > 0
    eps = val if held_out else np.arange(cache.num_episodes)
    enc = encode_episodes(model, cache, ck.normalizer, ck.tokenizer, eps)
    result: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "step": ck.step,
        "dataset": str(data),
        "episodes_evaluated": int(len(eps)),
        "held_out": held_out,
        "open_loop": open_loop_errors(model, cache, ck.normalizer, enc, horizons=(1, 4, 8)),
    }
    if cache.reward is not None:
        loss = train_cfg.get("loss", {})
        targets = float(loss.get("cost_dense", 0.0)), float(loss.get("cost_to_go", 0.0))
        result["cost_rank"] = cost_vs_distance(model, cache, enc, *targets)
    if cache.env_state is not None and model.env_state_dim > 0:
        result["env_state"] = env_state_errors(model, cache, enc)
    result["num_parameters"] = model.num_parameters()
    result["model_bytes"] = (Path(ckpt) / "model.safetensors").stat().st_size
    default_threads = torch.get_num_threads()
    result["step_latents_per_s"] = {
        f"batch{b}_threads{t}": step_throughput(model, b, t) for b in (1, 1024) for t in sorted({1, default_threads})
    }
    if eval_episodes > 0:
        result["policy"] = policy_success(ckpt, task, eval_episodes, out_dir / f"policy_eval_{task}")
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"world model: {result['checkpoint']} (step {result['step']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for h, r in result["open_loop"].items():
        table.add_row(
            f"latent mse after {h} steps (model / constant)",
            f"{r['model_mse']:.3g} / {r['constant_mse']:.3g} = {r['ratio']:.2f}",
        )
        if "learned_ratio" in r:
            table.add_row(
                f"  learned block only, {h} steps",
                f"{r['learned_model_mse']:.3g} / {r['learned_constant_mse']:.3g} = {r['learned_ratio']:.2f}",
            )
    if "cost_rank" in result:
        table.add_row(
            "Spearman(cost, true distance)",
            f"{result['cost_rank']['spearman']:.3f} (ceiling {result['cost_rank']['spearman_ceiling']:.3f})",
        )
        if "spearman_unsolved" in result["cost_rank"]:
            table.add_row(
                "  on frames short of success",
                f"{result['cost_rank']['spearman_unsolved']:.3f} ({result['cost_rank']['frames_unsolved']} frames)",
            )
        table.add_row("cost MAE (m)", f"{result['cost_rank']['mae_m']:.4f}")
    if "env_state" in result:
        es = result["env_state"]
        table.add_row(
            "named object position MAE (m), aux head / mean",
            f"{es['mae_first_half']:.4f} / {es['baseline_mae_first_half']:.4f}",
        )
    if "policy" in result:
        pol = result["policy"]
        table.add_row(
            "policy pc_success (%)", f"{pol['pc_success']:.1f}" if "pc_success" in pol else pol.get("error", "?")
        )
    table.add_row("parameters", f"{result['num_parameters']:,}")
    table.add_row("model.safetensors (bytes)", f"{result['model_bytes']:,}")
    for k, v in result["step_latents_per_s"].items():
        table.add_row(f"step latents/s ({k})", f"{v:,.0f}")
    Console().print(table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="LeRobotDataset folder (collected when missing)")
    p.add_argument("--ckpt", type=Path, required=True, help="run directory (trained when missing or --train-minutes)")
    p.add_argument("--task", default="reach", help="sim task for collection and closed-loop eval")
    p.add_argument("--collect-episodes", type=int, default=0, help="collect this many episodes if --data is missing")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-minutes", type=float, default=0.0, help="train (or continue training) for this long")
    p.add_argument("--train-arg", action="append", default=[], help="extra `latent-vla train` override (repeatable)")
    p.add_argument("--eval-episodes", type=int, default=20, help="policy closed-loop episodes (0 = skip)")
    p.add_argument(
        "--all-episodes",
        action="store_true",
        help="measure every episode of --data, not the run's held-out split (a dataset it never trained on)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/world_model.json"))
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    record: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if args.collect_episodes > 0:
        record["collect"] = collect_data(args.task, args.collect_episodes, args.data, args.workers)
    if args.train_minutes > 0 or not (args.ckpt / "checkpoint.json").exists():
        minutes = args.train_minutes if args.train_minutes > 0 else 15.0
        record["train"] = train_model(args.data, args.ckpt, minutes, args.train_arg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record.update(evaluate(args.ckpt, args.data, args.eval_episodes, args.task, args.out.parent, args.all_episodes))
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print_table(record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
