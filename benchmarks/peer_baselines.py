"""Peer baseline: LeRobot's ACT against our policy head and gradient planner, side by side.

Per task, on one dataset and with the same training minutes and torch threads:

1. the dataset: ``latent-vla collect`` of expert episodes on seeds ``--collect-seed`` + i (100000 by
   default, so that no evaluated layout was seen in training), or ``--data task=DIR``;
2. our world model: ``latent-vla train ... train.minutes=M`` (our recipe), or ``--run task=DIR``;
3. LeRobot's ACT, trained by LeRobot's own code for the same ``M`` minutes: ``ACTPolicy`` from
   ``make_policy`` (a CPU-sized config, ResNet-18 from scratch: nothing can be downloaded), LeRobot's
   processors with the dataset's stats, ``LeRobotDataset`` with the chunk's delta timestamps, and
   ``lerobot_train.update_policy`` (Accelerate on the CPU) for every step; saved with
   ``save_pretrained`` so ``lerobot-eval --policy.path=<work>/<task>/act`` can load it;
4. evaluation of all three through one loop, LeRobot's ``eval_policy`` in our env
   (``sim.lerobot_env_config.LatentVLAEnv``, which ends an episode at its first success, so
   ``pc_success`` is "achieved at any step" as in ``latent-vla eval``), on seeds ``--seed`` + i:
   the episodes ``latent-vla eval seed=S episodes=N`` runs. Our brain runs through
   ``hardware.lerobot_policy.LatentVLAPolicy``.

Prints a table and writes ``--out`` (JSON). The full run takes hours of CPU::

    python benchmarks/peer_baselines.py --tasks reach push --collect-episodes 600 --minutes 15 \\
        --episodes 100 --work outputs/peer --out benchmarks/results/peer_baselines.json
    python benchmarks/peer_baselines.py --smoke --work /tmp/peer --out /tmp/peer.json   # a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMOKE = {
    "tasks": ["reach"], "collect_episodes": 2, "minutes": 1.0, "episodes": 1, "episode_length": 5,
    "act_max_steps": 2, "act_batch_size": 2, "act_dim": 32, "act_chunk": 4,
    "collect_override": ["max_episode_steps=12", "workers=1"],
    "ours_override": ["train.steps=3", "train.batch_size=4", "train.horizon=2", "train.val_every=0",
                      "train.warmup_steps=1", "model.latent_dim=16", "model.hidden=32", "model.head_hidden=16",
                      "model.image_feat=16", "model.channels=[4,8,8,8]"],
}  # fmt: skip
"""``--smoke``: every stage for seconds (the pipeline runs; the numbers mean nothing)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--smoke`` replaces the sizes with :data:`SMOKE`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["reach", "push"], help="reach | push | pick")
    p.add_argument("--work", default="outputs/peer", help="datasets, runs and ACT checkpoints go here")
    p.add_argument("--out", default="benchmarks/results/peer_baselines.json")
    p.add_argument("--data", nargs="*", default=[], help="task=DIR: an existing dataset (no collection)")
    p.add_argument("--run", nargs="*", default=[], help="task=DIR: an existing run of ours (no training)")
    p.add_argument("--collect-episodes", type=int, default=600)
    p.add_argument("--collect-seed", type=int, default=100_000)
    p.add_argument("--collect-override", nargs="*", default=[], help="extra `latent-vla collect` overrides")
    p.add_argument("--ours-override", nargs="*", default=[], help="extra `latent-vla train` overrides")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall-clock minutes, each model")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads while training")
    p.add_argument("--act-batch-size", type=int, default=16)
    p.add_argument("--act-max-steps", type=int, default=10**9, help="stop ACT earlier than --minutes")
    p.add_argument("--act-dim", type=int, default=256, help="ACT transformer width (dim_model)")
    p.add_argument("--act-chunk", type=int, default=20, help="ACT chunk size (temporal ensembling 0.01)")
    p.add_argument("--act-lr", type=float, default=1e-4)
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per task and policy")
    p.add_argument("--seed", type=int, default=0, help="episode i uses env seed seed + i (as latent-vla eval)")
    p.add_argument("--episode-length", type=int, default=None, help="control steps; default: the task's")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for a smoke test")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    for name in ("collect_episodes", "episodes", "threads", "act_batch_size", "act_max_steps", "act_chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.minutes > 0:
        p.error(f"--minutes must be > 0, got {args.minutes}")
    args.data, args.run = _task_dirs(p, args.data, "--data"), _task_dirs(p, args.run, "--run")
    return args


def _task_dirs(p: argparse.ArgumentParser, items: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not path:
            p.error(f"{flag} takes task=DIR, got {item!r}")
        out[task] = Path(path)
    return out


def _cli(*argv: str) -> float:
    """Run ``latent-vla <argv>`` in a subprocess; returns its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "latent_vla.app.cli", *argv], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def dataset(task: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The task's dataset: ``--data`` or ``latent-vla collect`` (skipped when it exists already)."""
    if task in args.data:
        return args.data[task], {"given": True}
    out = Path(args.work) / task / "data"
    if (out / "meta" / "info.json").exists():
        return out, {"reused": True}
    cpu_s = _cli("collect", f"task={task}", f"episodes={args.collect_episodes}", f"seed={args.collect_seed}",
                 f"out={out}", "progress=false", *args.collect_override)  # fmt: skip
    return out, {"episodes": args.collect_episodes, "seed": args.collect_seed, "cpu_s": cpu_s}


def train_ours(task: str, data: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Our world model: ``--run`` or ``latent-vla train`` for ``--minutes`` (skipped when it exists)."""
    if task in args.run:
        return args.run[task], {"given": True}
    run = Path(args.work) / task / "run"
    if not (run / "model.safetensors").exists():
        t0 = time.perf_counter()
        cpu_s = _cli("train", f"data={data}", f"out={run}", f"train.minutes={args.minutes}",
                     f"train.num_threads={args.threads}", "train.progress=false", *args.ours_override)  # fmt: skip
        summary = json.loads((run / "train_summary.json").read_text())
        return run, {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_s, "steps": summary.get("step")}
    return run, {"reused": True}


def act_config(args: argparse.Namespace) -> Any:
    """A CPU-sized ACT: ResNet-18 from scratch, a narrow transformer, temporal ensembling (ACT's own)."""
    from lerobot.policies.act.configuration_act import ACTConfig

    return ACTConfig(
        device="cpu", pretrained_backbone_weights=None, dim_model=args.act_dim, n_heads=8 if args.act_dim >= 64 else 2,
        dim_feedforward=4 * args.act_dim, n_encoder_layers=2, n_vae_encoder_layers=2, chunk_size=args.act_chunk,
        n_action_steps=1, temporal_ensemble_coeff=0.01, optimizer_lr=args.act_lr, optimizer_lr_backbone=args.act_lr,
    )  # fmt: skip


def train_act(data: Path, out: Path, args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any]]:
    """LeRobot's ACT on ``data`` for ``--minutes`` with LeRobot's ``update_policy``; returns
    ``(policy, preprocessor, postprocessor, figures)`` and saves all three under ``out``.

    Inputs are the cameras and ``observation.state`` only: ``observation.environment_state`` is
    privileged simulator state that our model uses as an auxiliary training target, never as input.
    """
    import torch
    from accelerate import Accelerator
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_train import update_policy
    from lerobot.utils.logging_utils import AverageMeter, MetricsTracker

    torch.manual_seed(args.seed)
    meta = LeRobotDatasetMetadata(f"local/{data.name}", root=data)
    cfg = act_config(args)
    features = dataset_to_policy_features(meta.features)
    cfg.input_features = {k: f for k, f in features.items() if f.type in (FeatureType.VISUAL, FeatureType.STATE)}
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ds = LeRobotDataset(f"local/{data.name}", root=data, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.act_batch_size, shuffle=True, drop_last=True)
    optimizer = cfg.get_optimizer_preset().build(policy.get_optim_params())
    accelerator = Accelerator(cpu=True)
    meters = {k: AverageMeter(k, ":.3f") for k in ("loss", "grad_norm", "lr", "update_s", "dataloading_s")}
    tracker = MetricsTracker(args.act_batch_size, ds.num_frames, ds.num_episodes, meters)
    threads, steps, losses = torch.get_num_threads(), 0, []
    torch.set_num_threads(args.threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        while steps < args.act_max_steps and time.perf_counter() - t0 < 60 * args.minutes:
            for batch in loader:
                tracker, _ = update_policy(tracker, policy, pre(batch), optimizer, 10.0, accelerator)
                steps, losses = steps + 1, [*losses, tracker.loss.val]
                if steps >= args.act_max_steps or time.perf_counter() - t0 >= 60 * args.minutes:
                    break
    finally:
        torch.set_num_threads(threads)
    figures = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0, "steps": steps,
               "final_loss": float(sum(losses[-20:]) / max(1, len(losses[-20:]))),
               "num_parameters": sum(p.numel() for p in policy.parameters())}  # fmt: skip
    for thing in (policy, pre, post):
        thing.save_pretrained(out)
    return policy.eval(), pre, post, figures


def evaluate(policy: Any, pre: Any, post: Any, task: str, args: argparse.Namespace) -> dict[str, Any]:
    """LeRobot's ``eval_policy`` in our env on seeds ``--seed`` + i, one env at a time."""
    import torch
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import close_envs
    from lerobot.scripts.lerobot_eval import eval_policy

    from sim.lerobot_env_config import ENV_TYPE, LatentVLAEnv

    env_cfg = LatentVLAEnv(task=task, episode_length=args.episode_length, render_mode=None)
    env_pre, env_post = make_env_pre_post_processors(env_cfg, policy.config)
    envs = make_env(env_cfg, n_envs=1)
    torch.set_num_threads(1)  # planning-sized ops: one thread is fastest (docs/planning.md)
    try:
        with torch.no_grad():
            info = eval_policy(envs[ENV_TYPE][0], policy, env_pre, env_post, pre, post, n_episodes=args.episodes,
                               start_seed=args.seed)  # fmt: skip
    finally:
        close_envs(envs)
    return {**info["aggregated"], "seeds": [e["seed"] for e in info["per_episode"]]}


def run_task(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Dataset, both trainings and the three evaluations of one task: one row per policy."""
    from hardware.lerobot_policy import LatentVLAConfig, LatentVLAPolicy, make_latent_vla_pre_post_processors

    data, data_fig = dataset(task, args)
    run, ours_fig = train_ours(task, data, args)
    act, act_pre, act_post, act_fig = train_act(data, Path(args.work) / task / "act", args)
    rows = [{"task": task, "policy": "ACT (LeRobot)", "train": act_fig, **evaluate(act, act_pre, act_post, task, args)}]
    for mode, name in (("policy", "ours: policy head"), ("grad", "ours: gradient planner")):
        cfg = LatentVLAConfig(brain=str(run), mode=mode)
        pre, post = make_latent_vla_pre_post_processors(cfg)
        rows.append({"task": task, "policy": name, "train": ours_fig,
                     **evaluate(LatentVLAPolicy(cfg), pre, post, task, args)})  # fmt: skip
    for row in rows:
        row.update(dataset=str(data), dataset_info=data_fig, run=str(run))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown table: success, training budget and steps, evaluation seconds per episode."""
    print("| task | policy | success | train CPU-min | train wall-min | train steps | eval s/episode |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["train"]
        cpu = f"{t['cpu_s'] / 60:.1f}" if "cpu_s" in t else "given"
        wall = f"{t['wall_s'] / 60:.1f}" if "wall_s" in t else "given"
        print(f"| {r['task']} | {r['policy']} | {r['pc_success']:.0f} % | {cpu} | {wall} | {t.get('steps', '-')} "
              f"| {r['eval_ep_s']:.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and writes to ``--out``) every figure."""
    args = parse_args(argv)
    rows = [row for task in args.tasks for row in run_task(task, args)]
    print_table(rows)
    settings = {k: ({t: str(p) for t, p in v.items()} if isinstance(v, dict) else v) for k, v in vars(args).items()}
    figures = {
        "settings": settings,
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "platform": platform.platform()},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, default=str))
    print(f"wrote {out}")
    return figures


if __name__ == "__main__":
    main()
