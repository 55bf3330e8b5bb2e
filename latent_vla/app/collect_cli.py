"""``latent-vla collect``: run scripted experts in MuJoCo and write a LeRobotDataset.

Thin wiring: the resolved Hydra config (``configs/collect.yaml``) becomes a
:class:`sim.collect.CollectConfig`; :func:`sim.collect.collect` does the work and writes
``<out>/collect.json``; this module prints the summary table.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.base.robot_spec import RobotSpec
from sim.collect import CollectConfig, CollectError, CollectResult, collect


def _workers(value: Any) -> int:
    if str(value).strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CollectError(f"workers must be an integer or 'auto', got {value!r}") from None


def config_from_hydra(cfg: DictConfig) -> CollectConfig:
    """Turn the composed ``collect`` config into a :class:`CollectConfig`.

    Raises:
        CollectError: on a value of the wrong type.
    """
    try:
        return CollectConfig(
            task=str(cfg.task),
            episodes=int(cfg.episodes),
            seed=int(cfg.seed),
            out=Path(str(cfg.out)),
            repo_id=str(cfg.repo_id),
            workers=_workers(cfg.workers),
            policy=str(cfg.policy),
            noise=None if cfg.get("noise") is None else float(cfg.noise),
            noise_tau=float(cfg.get("noise_tau", 0.3)),
            brain=None if cfg.get("brain") is None else str(cfg.brain),
            brain_mode=str(cfg.get("brain_mode", "policy")),
            brain_planner=_brain_planner(cfg.get("brain_planner")),
            mode=str(cfg.mode),
            image_hw=(int(cfg.image_height), int(cfg.image_width)),
            cameras=_camera_names(cfg.get("cameras")),
            max_episode_steps=None if cfg.max_episode_steps is None else int(cfg.max_episode_steps),
            reset_noise=None if cfg.get("reset_noise") is None else float(cfg.reset_noise),
            robot=str(cfg.robot),
            vcodec=str(cfg.vcodec),
            pix_fmt=str(cfg.get("pix_fmt", "yuv444p")),
            crf=int(cfg.get("crf", 0)),
            image_writer_threads=int(cfg.image_writer_threads),
            streaming_encoding=bool(cfg.streaming_encoding),
            video_file_mb=float(cfg.video_file_mb),
            progress=bool(cfg.progress),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CollectError):
            raise
        raise CollectError(f"bad collect setting: {exc}") from None


def _brain_planner(value: Any) -> dict[str, Any]:
    """``brain_planner`` as a plain dict of planner settings (``{}`` when unset)."""
    if value is None:
        return {}
    if not OmegaConf.is_dict(value):
        raise CollectError(
            f"brain_planner must be a mapping of planner settings (+brain_planner.min_gain=0), got {value!r}"
        )
    return dict(OmegaConf.to_container(value, resolve=True))  # type: ignore[arg-type]


def _camera_names(value: Any) -> tuple[str, ...] | None:
    """``cameras=`` as a tuple of names: ``null`` (all), one name or a list of names."""
    if value is None:
        return None
    return (str(value),) if isinstance(value, str) else tuple(str(c) for c in value)


def load_collect_brain(cfg: CollectConfig, spec: RobotSpec) -> Any:
    """The brain of ``policy=brain``: ``hardware.brain.load_brain(cfg.brain, mode=cfg.brain_mode)`` for ``spec``,
    with ``cfg.brain_planner`` over its planner settings.

    A top-level function, so collection workers receive it pickled by reference (each worker then
    loads its own brain; workers run PyTorch on one thread).
    """
    from hardware.brain import load_brain  # floor 4: sim/ may not import it, this layer may

    if cfg.brain == "scripted":
        return load_brain("scripted", robot_spec=spec)
    return load_brain(str(cfg.brain), robot_spec=spec, mode=cfg.brain_mode, planner=dict(cfg.brain_planner))


def summary_table(result: CollectResult, out: Path) -> str:
    """The end-of-run table as plain text (rich renders it when available)."""
    s = result.summary()

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:,.2f}"
        return str(v)

    rows = [
        ("task", s["task"]),
        ("episodes", f"{s['episodes']} / {s['episodes_requested']}" + (" (interrupted)" if s["interrupted"] else "")),
        ("frames", s["frames"]),
        ("policy", s["policy"]),
        ("pc_success (%)", s["pc_success"]),
        ("avg_sum_reward", s["avg_sum_reward"]),
        ("frames/s (end to end)", s["frames_per_s"]),
        ("frames/s (steady, no start-up)", s["steady_frames_per_s"]),
        ("CPU ms per frame (sim + write)", s["cpu_ms_per_frame"]),
        ("wall time (s)", s["wall_s"]),
        ("  of which merge (s)", s["merge_s"]),
        ("workers", s["workers"]),
        ("dataset episodes / frames", f"{s['dataset_total_episodes']} / {s['dataset_total_frames']}"),
        ("dataset", str(out)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in rows)


def main(cfg: DictConfig) -> int:
    """Run ``latent-vla collect``; returns 0, or 130 when interrupted.

    Raises:
        CollectError: a bad request (a :class:`~latent_vla.base.errors.UserError`: one line from the CLI).
    """
    ccfg = config_from_hydra(cfg)
    result = collect(ccfg, brain_factory=load_collect_brain)
    print(summary_table(result, ccfg.out))
    if result.episodes:
        print(f"figures: {Path(ccfg.out) / 'collect.json'}")
    else:
        print("no episode finished; nothing was written.", file=sys.stderr)
    return 130 if result.interrupted else 0
