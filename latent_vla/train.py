"""Training loop of the world model: data -> model -> losses -> checkpoints, single process or DDP.

``train(settings)`` is what ``latent-vla train`` calls (via :mod:`latent_vla.app.train_cli`). It

1. reads the LeRobotDataset once into memory (:mod:`latent_vla.data`), computes (or, when resuming,
   reloads) the normalization stats;
2. builds the :class:`~latent_vla.model.WorldModel` from ``model`` settings + dataset dimensions;
3. optimizes :class:`~latent_vla.losses.WorldModelLoss` with AdamW until ``train.steps`` optimizer steps
   (a total, so a resumed run continues the count) or ``train.minutes`` of wall-clock in this call;
4. logs every term to a tqdm bar, ``train_log.csv`` and TensorBoard (``tb/``), validates on held-out
   episodes, and writes checkpoints atomically (:mod:`latent_vla.checkpoint`).

Under ``torchrun`` (``WORLD_SIZE > 1``) the loss module is wrapped in
``torch.nn.parallel.DistributedDataParallel`` (gloo on the CPU, NCCL on GPUs); every rank samples its
own windows, rank 0 logs and saves.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import CameraSpec, JointSpec, RobotSpec, get_robot_spec
from latent_vla.base.text import Tokenizer
from latent_vla.checkpoint import (
    CheckpointError,
    load_optimizer_state,
    load_train_state,
    load_weights,
    read_manifest,
    save_checkpoint,
)
from latent_vla.data import FrameCache, WindowSampler, env_state_statistics, load_frames, split_episodes
from latent_vla.losses import LossWeights, WorldModelLoss
from latent_vla.model import ModelConfig, WorldModel

log = logging.getLogger(__name__)


# -- settings (the schema of configs/model/*.yaml and configs/train/*.yaml) -------------------------
@dataclass
class ModelSettings:
    """User-facing architecture settings; dimensions (cameras, S, A) come from the dataset."""

    image_size: list[int] = field(default_factory=lambda: [64, 64])
    latent_dim: int = 64
    chunk_len: int = 8
    task_dim: int = 32
    text_encoder: str = "bag"
    word_dim: int = 32
    vocab_buckets: int = 4096
    max_tokens: int = 24
    bigrams: bool = True
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    image_feat: int = 128
    keypoints: int = 8
    film: bool = True
    proprio_latent: bool = True
    state_feat: int = 64
    hidden: int = 256
    head_hidden: int = 128
    norm: str = "simnorm"
    simnorm_dim: int = 8
    cameras: list[str] | None = None


@dataclass
class TrainSettings:
    """Optimization settings (see ``docs/training.md``)."""

    minutes: float = 10.0
    steps: int = 100_000
    batch_size: int = 64
    horizon: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 10.0
    seed: int = 0
    target: str = "stopgrad"
    ema_tau: float = 0.01
    val_fraction: float = 0.1
    val_every: int = 200
    log_every: int = 10
    save_every_minutes: float = 2.0
    num_threads: int = 0
    video_backend: str | None = None
    progress: bool = True
    motion_weighting: float = 0.0
    loss: LossWeights = field(default_factory=LossWeights)


@dataclass
class RunSettings:
    """Top level of ``configs/train.yaml``."""

    data: str
    out: str = "runs/default"
    repo_id: str | None = None
    robot: str = "so101"
    resume: str = "auto"
    device: str = "auto"
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


def settings_from_config(cfg: DictConfig | dict[str, Any]) -> RunSettings:
    """Validate a (Hydra) config against :class:`RunSettings`; unknown keys or bad types raise."""
    schema = OmegaConf.structured(RunSettings)
    merged = OmegaConf.merge(schema, cfg)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


@dataclass
class TrainResult:
    """What a :func:`train` call did.

    Attributes:
        run_dir: the run directory.
        step: optimizer steps taken in total (including resumed ones).
        steps_this_call: steps taken by this call.
        seconds: wall-clock of the optimization loop, seconds.
        first: mean of each logged term over the first logging window of this call.
        last: mean of each logged term over the last logging window.
        val: validation terms at the end (empty without held-out episodes).
        skipped: notes about heads that could not be trained.
        num_parameters: trainable parameters of the model.
        world_size: number of DDP processes that trained it.
    """

    run_dir: Path
    step: int
    steps_this_call: int
    seconds: float
    first: dict[str, float]
    last: dict[str, float]
    val: dict[str, float]
    skipped: list[str]
    num_parameters: int
    world_size: int = 1


# -- helpers ---------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dataset_spec(base: RobotSpec, cache: FrameCache, image_size: tuple[int, int]) -> RobotSpec:
    """The robot spec a model trained on ``cache`` speaks: ``base`` with the dataset's cameras.

    When the dataset's joint count differs from ``base`` (another arm), a spec is derived from the
    dataset itself: joint names from the state feature names, limits from the data range.
    """
    cams = tuple(CameraSpec(c, image_size[0], image_size[1]) for c in cache.camera_names)
    if cache.action.shape[1] == base.num_joints and cache.state.shape[1] == base.num_joints:
        return RobotSpec(**{**_spec_fields(base), "cameras": cams})
    names = cache.state_names or [f"joint{i}" for i in range(cache.action.shape[1])]
    names = [n[: -len(".pos")] if n.endswith(".pos") else n for n in names]
    lo = np.minimum(cache.state.min(0), cache.action.min(0))
    hi = np.maximum(cache.state.max(0), cache.action.max(0))
    joints = tuple(
        JointSpec(n, float(a), float(b), float(a), float(b), 1e6) for n, a, b in zip(names, lo, hi, strict=True)
    )
    log.warning(
        "dataset has %d joints, spec %s has %d: using a spec derived from the data",
        len(joints),
        base.name,
        base.num_joints,
    )
    return RobotSpec(name="dataset", joints=joints, cameras=cams, fps=cache.fps)


def _spec_fields(spec: RobotSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__dataclass_fields__}


def build_model_config(
    ms: ModelSettings, cache: FrameCache, tokenizer: Tokenizer, env_state_head: bool = True
) -> ModelConfig:
    """ModelConfig from user settings + the dataset's cameras and dimensions.

    ``env_state_head``: build the auxiliary environment-state head when the dataset records
    ``observation.environment_state`` (off when its loss weight is 0).
    """
    env_dim = int(cache.env_state.shape[1]) if cache.env_state is not None and env_state_head else 0
    return ModelConfig(
        camera_names=tuple(cache.camera_names),
        state_dim=int(cache.state.shape[1]),
        action_dim=int(cache.action.shape[1]),
        image_size=tuple(ms.image_size),
        latent_dim=ms.latent_dim,
        chunk_len=ms.chunk_len,
        vocab_size=tokenizer.vocab_size,
        task_dim=ms.task_dim,
        text_encoder=ms.text_encoder,
        word_dim=ms.word_dim,
        channels=tuple(ms.channels),
        image_feat=ms.image_feat,
        keypoints=ms.keypoints,
        film=ms.film,
        proprio_latent=ms.proprio_latent,
        state_feat=ms.state_feat,
        hidden=ms.hidden,
        head_hidden=ms.head_hidden,
        norm=ms.norm,
        simnorm_dim=ms.simnorm_dim,
        env_state_dim=env_dim,
    )


def _lr_at(step: int, ts: TrainSettings) -> float:
    if ts.warmup_steps > 0 and step < ts.warmup_steps:
        return ts.lr * (step + 1) / ts.warmup_steps
    return ts.lr


@torch.no_grad()
def _ema_update(target: WorldModel, online: WorldModel, tau: float) -> None:
    for pt, po in zip(target.parameters(), online.parameters(), strict=True):
        pt.lerp_(po, tau)


@torch.no_grad()
def evaluate(
    loss_fn: WorldModelLoss, sampler: WindowSampler, batches: int, batch_size: int, seed: int, device
) -> dict[str, float]:
    """Mean loss terms over ``batches`` fixed-seed batches (no gradient, model in eval mode)."""
    was_training = loss_fn.training
    loss_fn.eval()
    rng = np.random.default_rng(seed)
    sums: dict[str, float] = {}
    for _ in range(batches):
        _, terms = loss_fn(sampler.sample(batch_size, rng).to(device))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    loss_fn.train(was_training)
    return {k: v / batches for k, v in sums.items()}


def _check_resume(run_dir: Path, model_cfg: ModelConfig, normalizer_dims: tuple[int, int]) -> dict[str, Any]:
    manifest = read_manifest(run_dir)
    saved = json.loads((run_dir / "model.json").read_text())
    want = model_cfg.to_dict()
    diff = {k: (saved.get(k), want[k]) for k in want if saved.get(k) != want[k]}
    if diff:
        text = ", ".join(f"{k}: checkpoint {a!r} vs config/dataset {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"cannot resume {run_dir}: the checkpoint does not match this config and dataset ({text}). "
            "Use another out= directory, or resume=false into a fresh one."
        )
    stats = json.loads((run_dir / "stats.json").read_text())
    if (len(stats["state_mean"]), len(stats["action_min"])) != normalizer_dims:
        raise CheckpointError(f"cannot resume {run_dir}: stats.json dimensions differ from the dataset's")
    return manifest


class _CsvLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with open(path) as f:
                header = f.readline().strip()
            self.fields = header.split(",") if header else None

    def write(self, row: dict[str, float]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


# -- the loop --------------------------------------------------------------------------------------
def train(settings: RunSettings, full_config: dict[str, Any] | None = None) -> TrainResult:
    """Train (or resume) a world model; see the module docstring.

    Args:
        settings: validated settings (:func:`settings_from_config`).
        full_config: the resolved configuration to save as ``config.yaml`` (default: ``settings``).

    Raises:
        latent_vla.data.DatasetError: unusable dataset.
        CheckpointError: resuming from a checkpoint that does not match, or a corrupt one.
    """
    ms, ts = settings.model, settings.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    device = resolve_device(settings.device)
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if ts.num_threads > 0:
        torch.set_num_threads(ts.num_threads)
    is_main = rank == 0
    run_dir = Path(settings.out)
    if ts.target not in ("stopgrad", "ema"):
        raise ValueError(f"train.target must be 'stopgrad' or 'ema', got {ts.target!r}")
    ts.loss.check()

    # data
    image_size = (int(ms.image_size[0]), int(ms.image_size[1]))
    cache = load_frames(
        settings.data,
        image_size,
        cameras=ms.cameras,
        repo_id=settings.repo_id,
        video_backend=ts.video_backend,
        progress=ts.progress and is_main,
    )
    tokenizer = Tokenizer(ms.vocab_buckets, ms.max_tokens, ms.bigrams)
    model_cfg = build_model_config(ms, cache, tokenizer, env_state_head=ts.loss.env_state > 0)
    spec = dataset_spec(get_robot_spec(settings.robot), cache, image_size)

    has_ckpt = (run_dir / "checkpoint.json").exists()
    resume = str(settings.resume).lower()
    if resume not in ("auto", "true", "false"):
        raise ValueError(f"resume must be auto, true or false, got {settings.resume!r}")
    if resume == "true" and not has_ckpt:
        raise CheckpointError(f"resume=true but {run_dir} holds no checkpoint")
    if resume == "false" and has_ckpt:
        raise CheckpointError(
            f"{run_dir} already holds a checkpoint; choose another out= or resume=auto to continue it"
        )
    resuming = has_ckpt and resume != "false"

    torch.manual_seed(ts.seed)
    model = WorldModel(model_cfg)
    start_step = 0
    if resuming:
        manifest = _check_resume(run_dir, model_cfg, (cache.state.shape[1], cache.action.shape[1]))
        normalizer = Normalizer.from_dict(json.loads((run_dir / "stats.json").read_text()))
        from safetensors.torch import load_file

        load_weights(model, load_file(str(run_dir / "model.safetensors")), str(run_dir / "model.safetensors"))
        start_step = int(manifest["step"])
    else:
        normalizer = cache.normalizer(image_size)
    model.set_proprio_map(normalizer.state_mean, normalizer.state_std, normalizer.action_min, normalizer.action_max)
    if model.env_state_dim > 0 and not resuming:  # a resumed model brings its own (saved buffers)
        assert cache.env_state is not None
        model.set_env_state_stats(*env_state_statistics(cache.env_state))
    env_stats = (
        (model.env_state_mean.numpy().copy(), model.env_state_std.numpy().copy()) if model.env_state_dim > 0 else None
    )
    model.to(device).train()
    target = None
    if ts.target == "ema":
        target = copy.deepcopy(model).requires_grad_(False)
        if resuming:
            state = load_train_state(run_dir)
            ema = {k[len("ema.") :]: v for k, v in state.items() if k.startswith("ema.")}
            if ema:
                load_weights(target, ema, "EMA target in train_state.safetensors")
    loss_fn = WorldModelLoss(model, ts.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
    if resuming and (run_dir / "optimizer.safetensors").exists():
        load_optimizer_state(run_dir, optimizer)
    train_fn: torch.nn.Module = loss_fn
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        unused = cache.reward is None or cache.success is None
        train_fn = DistributedDataParallel(
            loss_fn, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )

    train_eps, val_eps = split_episodes(cache.num_episodes, ts.val_fraction, ts.seed)
    sampler = WindowSampler(
        cache,
        normalizer,
        tokenizer,
        ts.horizon,
        ms.chunk_len,
        train_eps,
        motion_weighting=ts.motion_weighting,
        env_state_stats=env_stats,
    )
    val_sampler = (
        WindowSampler(cache, normalizer, tokenizer, ts.horizon, ms.chunk_len, val_eps, env_state_stats=env_stats)
        if len(val_eps)
        else None
    )
    rng = np.random.default_rng([ts.seed, rank, start_step])
    per_rank_batch = max(1, ts.batch_size // world)

    config_to_save = full_config if full_config is not None else asdict(settings)
    writer = None
    csv_log = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if resuming else None)
        csv_log = _CsvLog(run_dir / "train_log.csv")
        for note in cache.skipped:
            print(f"latent-vla train: {note}")
        if model.env_state_dim > 0:
            print(
                f"latent-vla train: auxiliary head on observation.environment_state ({model.env_state_dim} values, "
                f"weight {ts.loss.env_state}); it is for training and inspection only"
            )

    def save(step: int) -> None:
        if not is_main:
            return
        extra = {f"ema.{k}": v for k, v in target.state_dict().items()} if target is not None else None
        save_checkpoint(run_dir, model, normalizer, tokenizer, spec, config_to_save, step, optimizer, train_state=extra)

    budget_s = ts.minutes * 60.0
    t_start = time.monotonic()
    last_save = t_start
    step = start_step
    window: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    val: dict[str, float] = {}
    bar = tqdm(total=max(ts.steps - start_step, 0), desc="train", disable=not (ts.progress and is_main), unit="step")
    while step < ts.steps:
        stop = time.monotonic() - t_start >= budget_s
        if distributed:
            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
        if stop:
            break
        for g in optimizer.param_groups:
            g["lr"] = _lr_at(step, ts)
        batch = sampler.sample(per_rank_batch, rng).to(device)
        total, terms = train_fn(batch, target)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip if ts.grad_clip > 0 else math.inf)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss is {float(total)} at step {step}: terms { ({k: float(v) for k, v in terms.items()}) }"
            )
        optimizer.step()
        if target is not None:
            _ema_update(target, model, ts.ema_tau)
        step += 1
        bar.update(1)
        for k, v in terms.items():
            window.setdefault(k, []).append(float(v))
        window.setdefault("grad_norm", []).append(float(grad_norm))
        if step % ts.log_every == 0 or step == ts.steps:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            if not first:
                first = means
            last = means
            if is_main:
                elapsed = time.monotonic() - t_start
                row = {"step": step, "seconds": round(elapsed, 3), "lr": optimizer.param_groups[0]["lr"], **means}
                csv_log.write(row)
                for k, v in means.items():
                    writer.add_scalar(f"train/{k}", v, step)
                bar.set_postfix(
                    {k: f"{means[k]:.3g}" for k in ("total", "consistency", "cost", "policy") if k in means}
                )
        if is_main and val_sampler is not None and ts.val_every > 0 and step % ts.val_every == 0:
            val = evaluate(loss_fn, val_sampler, 2, per_rank_batch, ts.seed, device)
            for k, v in val.items():
                writer.add_scalar(f"val/{k}", v, step)
        if is_main and time.monotonic() - last_save >= ts.save_every_minutes * 60.0:
            save(step)
            last_save = time.monotonic()
    bar.close()
    seconds = time.monotonic() - t_start
    if window:
        means = {k: float(np.mean(v)) for k, v in window.items()}
        first = first or means
        last = means
    if is_main and val_sampler is not None:
        val = evaluate(loss_fn, val_sampler, 4, per_rank_batch, ts.seed, device)
        for k, v in val.items():
            writer.add_scalar(f"val/{k}", v, step)
    save(step)
    if writer is not None:
        writer.close()
    if distributed:
        dist.barrier()
    return TrainResult(
        run_dir=run_dir,
        step=step,
        steps_this_call=step - start_step,
        seconds=seconds,
        first=first,
        last=last,
        val=val,
        skipped=list(cache.skipped),
        num_parameters=model.num_parameters(),
        world_size=world,
    )
