"""Training loop of the world model: data -> model -> losses -> checkpoints, single process or DDP.

``train(settings)`` is what ``latent-vla train`` calls (via :mod:`latent_vla.app.train_cli`). It

1. checks the settings and the ``out`` directory (writable; empty, a run of the same model to resume,
   or the leftovers of a run that never saved) before any data is decoded;
2. reads the LeRobotDataset once into memory (:mod:`latent_vla.data`), computes (or, when resuming,
   reloads) the normalization stats;
3. builds the :class:`~latent_vla.model.WorldModel` from the ``model`` settings (the fields of
   :class:`~latent_vla.model.ModelConfig`) + the dataset's dimensions;
4. optimizes :class:`~latent_vla.losses.WorldModelLoss` with AdamW until ``train.steps`` optimizer steps
   (a total, so a resumed run continues the count), ``train.minutes`` of wall-clock in this call, or
   SIGINT/SIGTERM (the current step finishes, a resumable checkpoint is saved);
5. logs every term to a tqdm bar, ``train_log.csv`` and TensorBoard (``tb/``), validates on held-out
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
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from latent_vla.base.cpus import resolve_threads
from latent_vla.base.errors import UserError
from latent_vla.base.normalize import Normalizer
from latent_vla.base.paths import check_output_dir
from latent_vla.base.robot_spec import CameraSpec, JointSpec, RobotSpec, get_robot_spec
from latent_vla.base.text import Tokenizer
from latent_vla.checkpoint import (
    MANIFEST,
    load_optimizer_state,
    load_train_state,
    load_weights,
    read_manifest,
    save_checkpoint,
)
from latent_vla.data import (
    FrameCache,
    WindowSampler,
    dataset_paths,
    env_state_statistics,
    load_datasets,
    split_episodes,
)
from latent_vla.devices import resolve_device
from latent_vla.instruction_snap import SnapTable, check_fractions, recorded_table
from latent_vla.losses import LossWeights, WorldModelLoss
from latent_vla.model import ModelConfig, WorldModel

log = logging.getLogger(__name__)

FROM_DATASET = ("state_dim", "action_dim", "vocab_size", "pretrained_text", "env_state_dim")
""":class:`ModelConfig` fields filled in at build time (dataset, tokenizer, loss weights); never in the config."""
TARGETS = ("stopgrad", "ema")
LR_SCHEDULES = ("constant", "cosine")
RESUME_MODES = ("auto", "true", "false")
RUN_LEFTOVERS = ("train_log.csv", "tb", "train_summary.json")
Rephraser = Callable[[str, np.random.Generator], str]
"""``(instruction, rng) -> reworded instruction`` (``sim.phrasing.rephrase_instruction``)."""
"""What a run that never saved a checkpoint leaves in ``out``: a re-run starts afresh over it."""


# -- settings (the schema of configs/train.yaml, configs/model/*.yaml and configs/train/*.yaml) ---------
@dataclass
class TrainSettings:
    """Optimization settings (see ``docs/training.md``); minutes and seconds are wall-clock."""

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
    rephrase: float = 0.0
    rephrase_pool: int = 0
    word_dropout: float = 0.0
    grounding: float = 0.3
    grounding_loss: float = 0.0
    grounding_max: float = 0.5
    lr_schedule: str = "constant"
    average_tau: float = 0.005
    snap: dict[str, float] | None = None
    loss: LossWeights = field(default_factory=LossWeights)

    def check(self) -> None:
        """Raise :class:`UserError` on a number or choice no run can use (NaN, inf, out of range)."""
        for name in ("minutes", "steps", "batch_size", "horizon", "lr", "log_every", "save_every_minutes"):
            _require(f"train.{name}", getattr(self, name), lambda v: v > 0, "a finite number > 0")
        for name in ("weight_decay", "warmup_steps", "grad_clip", "val_every", "num_threads"):
            _require(f"train.{name}", getattr(self, name), lambda v: v >= 0, "a finite number >= 0")
        _require("train.ema_tau", self.ema_tau, lambda v: 0 < v <= 1, "in (0, 1]")
        _require("train.average_tau", self.average_tau, lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)")
        _require("train.val_fraction", self.val_fraction, lambda v: 0 <= v < 1, "in [0, 1)")
        _require("train.motion_weighting", self.motion_weighting, lambda v: 0 <= v <= 1, "in [0, 1]")
        _require("train.rephrase", self.rephrase, lambda v: 0 <= v <= 1, "a probability in [0, 1]")
        _require("train.word_dropout", self.word_dropout, lambda v: 0 <= v < 1, "a probability in [0, 1)")
        _require("train.rephrase_pool", self.rephrase_pool, lambda v: v >= 0 and v == int(v), "an integer >= 0")
        _require("train.grounding", self.grounding, lambda v: 0 <= v < 1, "a share of the run in [0, 1)")
        _require("train.grounding_max", self.grounding_max, lambda v: 0 <= v < 1, "a share of the run in [0, 1)")
        _require("train.grounding_loss", self.grounding_loss, lambda v: v >= 0, "a finite number >= 0 (0 = off)")
        if self.loss.phrasing > 0 and self.rephrase == 0:
            raise UserError("train.loss.phrasing pulls reworded instructions: it needs train.rephrase > 0")
        if self.target not in TARGETS:
            raise UserError(f"train.target must be one of {TARGETS}, got {self.target!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for f in fields(self.loss):
            value = getattr(self.loss, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                _require(f"train.loss.{f.name}", value, lambda v: v >= 0, "a finite number >= 0")
        try:
            self.loss.check()
        except ValueError as exc:
            raise UserError(str(exc)) from None


def _require(key: str, value: float, ok: Callable[[float], bool], allowed: str) -> None:
    if not (math.isfinite(value) and ok(value)):
        raise UserError(f"{key}={value} is not allowed: it must be {allowed}")


@dataclass
class RunSettings:
    """Top level of ``configs/train.yaml``.

    ``model`` holds :class:`~latent_vla.model.ModelConfig` fields (its schema, see :func:`model_settings`)
    and ``tokenizer`` the fields of :class:`~latent_vla.base.text.Tokenizer`; both are plain dicts so a
    config can name any subset, and :func:`settings_from_config` fills in the defaults. ``data`` is
    one LeRobotDataset folder or a list of them (one training set, :func:`latent_vla.data.load_datasets`).
    """

    data: Any
    out: str = "runs/default"
    repo_id: str | None = None
    robot: str = "so101"
    resume: str = "auto"
    device: str = "auto"
    model: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)

    def check(self) -> None:
        """Validate every group; raise :class:`UserError` (one line) on the first bad setting."""
        try:
            check_fractions(self.train.snap or {}, [Path(p).name for p in dataset_paths(self.data)])
        except ValueError as exc:
            raise UserError(f"train.snap: {exc}") from None
        model_settings(self.model)
        make_tokenizer(self.tokenizer)
        self.train.check()
        if str(self.resume).lower() not in RESUME_MODES:
            raise UserError(f"resume must be one of {RESUME_MODES}, got {self.resume!r}")
        resolve_device(self.device)  # a UserError for a bad name or a CUDA device this machine lacks


def _from_schema(cls: type, *groups: Mapping[str, Any], key: str) -> Any:
    """Instantiate dataclass ``cls`` from config ``groups`` (later ones win), typed by OmegaConf.

    Raises:
        UserError: an unknown key, a value of the wrong type, or one ``cls`` refuses (one line).
    """
    schema = OmegaConf.structured(cls)
    OmegaConf.set_readonly(schema, False)
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, *groups))
    except (OmegaConfBaseException, ValueError) as exc:
        where = ".".join(p for p in (key, getattr(exc, "full_key", "")) if p)
        raise UserError(f"bad setting {where or 'in the config'}: {str(exc).splitlines()[0]}") from None


def model_settings(group: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model`` config group checked against :class:`ModelConfig`, its schema.

    Every field of ``ModelConfig`` is settable except :data:`FROM_DATASET`; ``camera_names`` may be
    None (every camera of the dataset, in its order). Values are checked by ``ModelConfig`` itself,
    on placeholder dimensions.

    Returns:
        every settable field, the defaults of ``ModelConfig`` filled in (a JSON-ready dict).

    Raises:
        UserError: an unknown key, a dimension that comes from the dataset, or a bad value.
    """
    given = {k: v for k, v in dict(group or {}).items() if k != "camera_names"}
    derived = sorted(set(given) & set(FROM_DATASET))
    if derived:
        raise UserError(
            f"model.{derived[0]} is not a setting: state_dim, action_dim and env_state_dim come from the dataset, "
            "vocab_size from tokenizer.num_buckets, pretrained_text from tokenizer.pretrained"
        )
    cameras = (group or {}).get("camera_names")
    cameras = list(cameras) if cameras else None
    placeholders = {"camera_names": cameras or ["camera"], "state_dim": 1, "action_dim": 1}
    trial = _from_schema(ModelConfig, given, placeholders, key="model").to_dict()
    return {**{k: v for k, v in trial.items() if k not in FROM_DATASET}, "camera_names": cameras}


TRAINED_TOKENIZER_FIELDS = ("known_words", "known_ids")
"""Tokenizer fields a run writes into its checkpoint's ``tokenizer.json``, never settings."""


def make_tokenizer(group: Mapping[str, Any] | None) -> Tokenizer:
    """The instruction :class:`Tokenizer` of the ``tokenizer`` config group (its fields; UserError if bad).

    ``known_words`` (and the older ``known_ids``) is what a run writes into its checkpoint's
    ``tokenizer.json``, never a setting: training reads every word."""
    tokenizer = _from_schema(Tokenizer, dict(group or {}), key="tokenizer")
    for name in TRAINED_TOKENIZER_FIELDS:
        if getattr(tokenizer, name) is not None:
            raise UserError(f"tokenizer.{name} is written by training into tokenizer.json, not set; remove it")
    return tokenizer


def settings_from_config(cfg: DictConfig | Mapping[str, Any]) -> RunSettings:
    """Validate a (Hydra) config against :class:`RunSettings`; defaults of every group filled in.

    Raises:
        UserError: an unknown key, a bad type or a value no run can use (one line).
    """
    settings: RunSettings = _from_schema(RunSettings, cfg, key="")
    settings.check()
    settings.model = model_settings(settings.model)
    tokenizer = asdict(make_tokenizer(settings.tokenizer))
    for name in TRAINED_TOKENIZER_FIELDS:
        tokenizer.pop(name)
    settings.tokenizer = tokenizer
    return settings


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
        val: validation terms at the end (empty without held-out episodes or when interrupted).
        skipped: notes about heads that could not be trained.
        num_parameters: trainable parameters of the model.
        world_size: number of DDP processes that trained it.
        interrupted: name of the signal that stopped the run early (``"SIGINT"``, ``"SIGTERM"``), else None;
            the checkpoint of ``step`` was saved and a re-run into ``run_dir`` resumes from it.
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
    interrupted: str | None = None


# -- helpers ---------------------------------------------------------------------------------------
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
    model: Mapping[str, Any], cache: FrameCache, tokenizer: Tokenizer, env_state_head: bool = True
) -> ModelConfig:
    """The ``model`` settings (:func:`model_settings`) + the dataset's cameras and dimensions.

    ``env_state_head``: build the auxiliary environment-state head when the dataset records
    ``observation.environment_state`` (off when its loss weight is 0). ``model`` is not changed.
    """
    env_dim = int(cache.env_state.shape[1]) if cache.env_state is not None and env_state_head else 0
    dims = {
        "camera_names": tuple(cache.camera_names),  # load_frames kept model["camera_names"] (or all)
        "state_dim": int(cache.state.shape[1]),
        "action_dim": int(cache.action.shape[1]),
        "vocab_size": tokenizer.vocab_size,
        "pretrained_text": tokenizer.pretrained,
        "env_state_dim": env_dim,
    }
    return ModelConfig(**{**model_settings(model), **dims})


def _lr_at(step: int, ts: TrainSettings, done: float = 0.0) -> float:
    """Learning rate at (0-based) ``step``, ``done`` the share of the run used (:func:`_run_fraction`):
    a linear warm-up, then ``train.lr`` (``constant``) or a half cosine from it to 0 at the run's end."""
    if ts.warmup_steps > 0 and step < ts.warmup_steps:
        return ts.lr * (step + 1) / ts.warmup_steps
    if ts.lr_schedule == "cosine":
        return ts.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(done, 0.0), 1.0)))
    return ts.lr


@torch.no_grad()
def _ema_update(target: WorldModel, online: WorldModel, tau: float) -> None:
    for pt, po in zip(target.parameters(), online.parameters(), strict=True):
        pt.lerp_(po, tau)


@torch.no_grad()
def _track_average(run: _Run, grounding: bool) -> None:
    """Update the weight average (``train.average_tau``) after a step: it starts as a copy of the model
    at the first full-objective step (the grounding phase trains the encoder alone) and then follows
    ``avg <- avg + tau (online - avg)``; saved buffers are copied from the online model."""
    tau = run.settings.train.average_tau
    if tau <= 0 or grounding:
        return
    if run.average is None:
        run.average = copy.deepcopy(run.model).requires_grad_(False)
        return
    _ema_update(run.average, run.model, tau)
    if run.average_buffers is None:  # frozen tables (non-persistent buffers) never change: paired once a run
        saved = run.model.state_dict(keep_vars=True).keys()
        pairs = zip(run.average.named_buffers(), run.model.named_buffers(), strict=True)
        run.average_buffers = [(ba, bo) for (name, ba), (_, bo) in pairs if name in saved]
    for ba, bo in run.average_buffers:
        ba.copy_(bo)


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


# -- the run directory: refuse a foreign one, resume our own ----------------------------------------
def _model_mismatch(saved: Mapping[str, Any], want: Mapping[str, Any]) -> str:
    """``"key: checkpoint a vs config/dataset b, ..."`` for every key of ``want`` that differs."""
    return ", ".join(
        f"{k}: checkpoint {saved.get(k)!r} vs config/dataset {v!r}" for k, v in want.items() if saved.get(k) != v
    )


def _refuse_mismatch(run_dir: Path, text: str) -> None:
    if text:
        raise UserError(
            f"cannot resume {run_dir}: it is a run of another model ({text}). "
            "Use another out= directory, or resume=false into a fresh one."
        )


def _check_out(settings: RunSettings, model: Mapping[str, Any]) -> bool:
    """Check ``out`` before any data is decoded; True when it holds a checkpoint to resume.

    Refuses (UserError) a file or unwritable path, a directory that is not a run, a checkpoint
    ``resume=false`` forbids or ``resume=true`` misses, and a run whose model settings differ.
    """
    run_dir = check_output_dir(settings.out, "out")
    has_ckpt = (run_dir / MANIFEST).exists()
    resume = str(settings.resume).lower()
    if resume == "true" and not has_ckpt:
        raise UserError(f"resume=true but {run_dir} holds no checkpoint")
    if resume == "false" and has_ckpt:
        raise UserError(f"{run_dir} already holds a checkpoint; choose another out= or resume=auto to continue it")
    if not has_ckpt and run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_LEFTOVERS and p.name[:6] != ".ckpt-")
        if foreign:
            raise UserError(
                f"out={run_dir} is not a latent-vla run (it holds {foreign[0]!r} and no {MANIFEST}); "
                "give a new or empty directory"
            )
    if has_ckpt:
        read_manifest(run_dir)  # a corrupt checkpoint is refused here, not after decoding
        saved = json.loads((run_dir / "model.json").read_text())
        want = {k: v for k, v in model.items() if not (k == "camera_names" and v is None)}
        _refuse_mismatch(run_dir, _model_mismatch(saved, want))
    return has_ckpt


def _check_resume(run_dir: Path, model_cfg: ModelConfig, normalizer_dims: tuple[int, int]) -> dict[str, Any]:
    """After decoding: the checkpoint's model and stats must match this dataset's dimensions too."""
    manifest = read_manifest(run_dir)
    saved = json.loads((run_dir / "model.json").read_text())
    _refuse_mismatch(run_dir, _model_mismatch(saved, model_cfg.to_dict()))
    stats = json.loads((run_dir / "stats.json").read_text())
    if (len(stats["state_mean"]), len(stats["action_min"])) != normalizer_dims:
        raise UserError(f"cannot resume {run_dir}: stats.json dimensions differ from the dataset's")
    return manifest


# -- logs ------------------------------------------------------------------------------------------
class _CsvLog:
    """``train_log.csv``, one row per logging window; rows after ``keep_through`` (a step) are dropped first.

    A resumed run keeps the rows up to its checkpoint's step and appends after them, so steps stay
    strictly increasing even when the previous run logged past its last checkpoint.
    """

    def __init__(self, path: Path, keep_through: int) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if not path.exists():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        kept = [r for r in rows if _row_step(r) is not None and _row_step(r) <= keep_through]
        if not kept:
            path.unlink()
            return
        self.fields = header
        if len(kept) < len(rows):
            _rewrite_csv(path, header, kept)

    def write(self, row: dict[str, float]) -> None:
        """Append one row (the first row of a new file writes the header).

        A row with columns the header lacks (the full objective after the grounding phase) rewrites
        the file once with the wider header; earlier rows leave the new columns empty.
        """
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        elif set(row) - set(self.fields):
            self._widen([*self.fields, *(k for k in row if k not in self.fields)])
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)

    def _widen(self, fields: list[str]) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        _rewrite_csv(self.path, fields, rows)
        self.fields = fields


def _rewrite_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Replace ``path`` atomically with ``fields`` as its header and ``rows`` under it."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _row_step(row: Mapping[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or "nan"))
    except ValueError:
        return None


def budget_progress(
    elapsed_s: float, budget_s: float, step: int, start_step: int, total_steps: int
) -> tuple[float, str]:
    """How far a run bounded by a time budget and a step count is, as a share and as text.

    Args:
        elapsed_s: seconds of the budget used. budget_s: the budget (``train.minutes * 60``), seconds.
        step: optimizer steps done in total; ``start_step`` of them before this call (a resumed run).
        total_steps: ``train.steps``, where the run also ends.

    Returns:
        ``(done, text)``: ``done`` in [0, 1] is the share of this call's run behind it, and ``text``
        reads ``"2.0 of 5.0 min, 3.0 min left, step 480 (4.0 steps/s)"``; the remaining time is what the
        steps still need at the rate so far when they end the run before the budget does (then the text
        ends with ``" of 500"`` after the step).
    """
    rate = (step - start_step) / elapsed_s if elapsed_s > 0 else 0.0  # steps per second
    left_s = max(budget_s - elapsed_s, 0.0)
    steps_end_it = rate > 0 and (total_steps - step) / rate < left_s
    if steps_end_it:
        left_s = (total_steps - step) / rate
    done = min(1.0, elapsed_s / max(elapsed_s + left_s, 1e-9))
    of_steps = f" of {total_steps}" if steps_end_it else ""
    text = (
        f"{elapsed_s / 60:.1f} of {budget_s / 60:.1f} min, {left_s / 60:.1f} min left, "
        f"step {step}{of_steps} ({rate:.1f} steps/s)"
    )
    return done, text


def _after_newest_event_file(tb: Path) -> None:
    """Wait (at most a second) until the clock's second is past every event file's in ``tb``: TensorBoard reads
    the files in name order, ``events.out.tfevents.<second>.<host>.<pid>.<counter>``, and within one second the
    counter sorts as text ("10" before "9"), so the purging file could be read before the one it purges."""
    stamps = [f.name.split(".")[3] for f in tb.glob("events.out.tfevents.*")]
    newest = max((int(s) for s in stamps if s.isdigit()), default=0)
    while time.time() < newest + 1:
        time.sleep(0.05)


class _Progress:
    """Loss terms averaged over logging windows -> ``train_log.csv``, TensorBoard and the tqdm bar.

    Only rank 0 writes files. TensorBoard continues the same run (``tb/``): a new event file whose
    ``purge_step`` makes TensorBoard drop what the old files logged after ``start_step``.
    """

    def __init__(
        self, run_dir: Path, start_step: int, total_steps: int, budget_s: float, is_main: bool, bar: bool
    ) -> None:
        self.start_step, self.total_steps, self.budget_s = start_step, total_steps, budget_s
        self.step, self.losses, self.drawn_at = start_step, "", -math.inf
        self.window: dict[str, list[float]] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.writer: SummaryWriter | None = None
        self.csv: _CsvLog | None = None
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            tb = run_dir / "tb"
            purge = start_step + 1 if any(tb.glob("events.out.tfevents.*")) else None
            if purge is not None:
                _after_newest_event_file(tb)
            self.writer = SummaryWriter(str(tb), purge_step=purge)
            self.csv = _CsvLog(run_dir / "train_log.csv", keep_through=start_step)
        # the bar is the share of the run done, in percent: of train.minutes, or of train.steps when those end it first
        self.bar = tqdm(total=100, desc="train", disable=not (bar and is_main))
        self.draw(0.0)

    def add(self, terms: Mapping[str, torch.Tensor], grad_norm: float, elapsed_s: float) -> None:
        """Record one optimizer step's terms; ``elapsed_s``: seconds of the budget used so far."""
        for k, v in terms.items():
            self.window.setdefault(k, []).append(float(v))
        self.window.setdefault("grad_norm", []).append(grad_norm)
        self.step += 1
        if elapsed_s - self.drawn_at >= 0.5:  # redraw at most twice a second
            self.draw(elapsed_s)

    def draw(self, elapsed_s: float) -> None:
        """Show the share of the run done, minutes used and left, the step and the latest losses."""
        self.drawn_at = elapsed_s
        done, text = budget_progress(elapsed_s, self.budget_s, self.step, self.start_step, self.total_steps)
        self.bar.n = round(100 * done)
        self.bar.bar_format = f"{{desc}} {{percentage:3.0f}}%|{{bar}}| {text}{self.losses}"  # no tqdm step counts
        self.bar.refresh()

    def flush(self, step: int, seconds: float, lr: float) -> None:
        """Close the logging window at ``step``: its means become a CSV row, scalars and the bar's postfix.

        ``seconds``: of the budget used so far; the bar is redrawn with them even when the window is empty.
        """
        if self.window:
            means = {k: float(np.mean(v)) for k, v in self.window.items()}
            self.window = {}
            self.first = self.first or means
            self.last = means
            if self.csv is not None:
                self.csv.write({"step": step, "seconds": round(seconds, 3), "lr": lr, **means})
            self.scalars("train", means, step)
            shown = ("total", "consistency", "cost", "policy")
            self.losses = "".join(f", {k}={means[k]:.3g}" for k in shown if k in means)
        self.draw(seconds)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """``prefix/key`` scalars at ``step`` to TensorBoard (rank 0)."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        """Close the bar and the event file (the CSV is closed after every row)."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


class _StopSignals:
    """While entered, SIGINT/SIGTERM set :attr:`received` instead of stopping the process.

    The loop reads it between steps, saves and returns; a second signal raises ``KeyboardInterrupt``
    at once (quit without saving). Python delivers signals to the main thread only, so elsewhere
    (a training thread) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)


# -- set-up ----------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything one :func:`train` call works with, built by :func:`_setup`."""

    settings: RunSettings
    run_dir: Path
    device: torch.device
    world: int
    rank: int
    cache: FrameCache
    tokenizer: Tokenizer
    spec: RobotSpec
    normalizer: Normalizer
    model: WorldModel
    target: WorldModel | None
    loss_fn: WorldModelLoss
    train_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: WindowSampler
    val_sampler: WindowSampler | None
    batch_size: int
    start_step: int
    config_to_save: dict[str, Any]
    average: WorldModel | None = None
    average_buffers: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (average's, online's) saved buffers
    snap_table: SnapTable | None = None  # the recorded instructions the checkpoint snaps to (train.snap)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and saves."""
        return self.rank == 0


def _setup_process(settings: RunSettings) -> tuple[torch.device, int, int]:
    """``(device, world size, rank)``; joins the DDP process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(settings.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(resolve_threads(settings.train.num_threads, "train.num_threads"))
    return device, world, rank


def _build_model(
    settings: RunSettings, model_cfg: ModelConfig, cache: FrameCache, resuming: bool
) -> tuple[WorldModel, Normalizer, int]:
    """``(model, normalizer, start step)``: fresh with the dataset's stats, or the checkpoint's weights and stats."""
    run_dir = Path(settings.out)
    torch.manual_seed(settings.train.seed)
    model = WorldModel(model_cfg)
    start_step = 0
    if resuming:
        manifest = _check_resume(run_dir, model_cfg, (cache.state.shape[1], cache.action.shape[1]))
        normalizer = Normalizer.from_dict(json.loads((run_dir / "stats.json").read_text()))
        weights = run_dir / "model.safetensors"
        load_weights(model, load_file(str(weights)), str(weights))
        start_step = int(manifest["step"])
    else:
        normalizer = cache.normalizer(model_cfg.image_size)
    model.set_proprio_map(normalizer.state_mean, normalizer.state_std, normalizer.action_min, normalizer.action_max)
    if model.env_state_dim > 0 and not resuming:  # a resumed model brings its own (saved buffers)
        assert cache.env_state is not None
        model.set_env_state_stats(*env_state_statistics(cache.env_state))
    return model, normalizer, start_step


def _build_optimization(
    settings: RunSettings, model: WorldModel, cache: FrameCache, device: torch.device, world: int, resuming: bool
) -> tuple[WorldModel | None, WorldModelLoss, torch.nn.Module, torch.optim.Optimizer]:
    """``(EMA target or None, loss, the module a step calls (DDP-wrapped under torchrun), AdamW)``."""
    ts, run_dir = settings.train, Path(settings.out)
    model.to(device).train()
    target = None
    if ts.target == "ema":
        target = copy.deepcopy(model).requires_grad_(False)
        if resuming:
            ema = {k[len("ema.") :]: v for k, v in load_train_state(run_dir).items() if k.startswith("ema.")}
            if ema:
                load_weights(target, ema, "EMA target in train_state.safetensors")
    loss_fn = WorldModelLoss(model, ts.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
    if resuming and (run_dir / "optimizer.safetensors").exists():
        load_optimizer_state(run_dir, optimizer)
    train_fn: torch.nn.Module = loss_fn
    if world > 1:
        unused = cache.reward is None or cache.success is None or ts.grounding > 0  # first-frame steps skip heads
        ids = [device.index] if device.type == "cuda" else None
        train_fn = DistributedDataParallel(loss_fn, device_ids=ids, find_unused_parameters=unused)
    return target, loss_fn, train_fn, optimizer


def _build_samplers(
    settings: RunSettings,
    cache: FrameCache,
    normalizer: Normalizer,
    tokenizer: Tokenizer,
    model: WorldModel,
    rephraser: Rephraser | None = None,
) -> tuple[WindowSampler, WindowSampler | None]:
    """Training and (when episodes are held out) validation window samplers.

    Every dataset of a merged cache keeps its share of held-out episodes; only training windows are
    reworded (``train.rephrase``), validation keeps the dataset's instructions.
    """
    ts = settings.train
    env_stats = (
        (model.env_state_mean.cpu().numpy().copy(), model.env_state_std.cpu().numpy().copy())
        if model.env_state_dim > 0
        else None
    )
    train_eps, val_eps = split_episodes(cache.num_episodes, ts.val_fraction, ts.seed, cache.episode_source)
    common = (cache, normalizer, tokenizer, ts.horizon, model.config.chunk_len)
    targets = {  # validation scores the same targets
        "env_state_stats": env_stats,
        "cost_dense": ts.loss.cost_dense,
        "cost_to_go": ts.loss.cost_to_go,
    }
    sampler = WindowSampler(
        *common,
        train_eps,
        motion_weighting=ts.motion_weighting,
        rephrase=rephraser if ts.rephrase > 0 else None,
        rephrase_prob=ts.rephrase,
        rephrase_pool=ts.rephrase_pool,
        word_dropout=ts.word_dropout,
        **targets,
    )
    val = WindowSampler(*common, val_eps, **targets) if len(val_eps) else None
    return sampler, val


def _setup(settings: RunSettings, full_config: dict[str, Any] | None, rephraser: Rephraser | None) -> _Run:
    """Check everything that needs no data, then decode the dataset and build model, optimizer and samplers."""
    settings.check()
    model_group = model_settings(settings.model)
    tokenizer = make_tokenizer(settings.tokenizer)
    resuming = _check_out(settings, model_group)
    device, world, rank = _setup_process(settings)
    ts = settings.train
    image_size = tuple(model_group["image_size"])
    cache = load_datasets(
        dataset_paths(settings.data),
        image_size,
        cameras=model_group["camera_names"],
        repo_id=settings.repo_id,
        video_backend=ts.video_backend,
        progress=ts.progress and rank == 0,
    )
    model_cfg = build_model_config(model_group, cache, tokenizer, env_state_head=ts.loss.env_state > 0)
    model, normalizer, start_step = _build_model(settings, model_cfg, cache, resuming)
    target, loss_fn, train_fn, optimizer = _build_optimization(settings, model, cache, device, world, resuming)
    sampler, val_sampler = _build_samplers(settings, cache, normalizer, tokenizer, model, rephraser)
    if resuming:  # the words the run read before it stopped stay known
        saved = Tokenizer.from_dict(json.loads((Path(settings.out) / "tokenizer.json").read_text()))
        sampler.seen_words.update(saved.known_words or ())
    average = _resume_average(settings, model) if resuming else None
    try:
        snap_table = recorded_table(cache.tasks, cache.task_sources(), ts.snap or {})
    except ValueError as exc:
        raise UserError(f"train.snap: {exc}") from None
    return _Run(
        settings=settings,
        run_dir=Path(settings.out),
        device=device,
        world=world,
        rank=rank,
        cache=cache,
        tokenizer=tokenizer,
        spec=dataset_spec(get_robot_spec(settings.robot), cache, model_cfg.image_size),
        normalizer=normalizer,
        model=model,
        target=target,
        loss_fn=loss_fn,
        train_fn=train_fn,
        optimizer=optimizer,
        sampler=sampler,
        val_sampler=val_sampler,
        batch_size=max(1, ts.batch_size // world),
        start_step=start_step,
        config_to_save=full_config if full_config is not None else asdict(settings),
        average=average,
        snap_table=snap_table,
    )


def _resume_average(settings: RunSettings, model: WorldModel) -> WorldModel | None:
    """On resume of a run that averaged its weights: the model continues from the online weights in
    ``train_state.safetensors`` (the optimizer's state is theirs); the saved (averaged) weights are the
    average again when ``train.average_tau`` is on. ``None``: no average (yet)."""
    online = {k[len("online.") :]: v for k, v in load_train_state(settings.out).items() if k.startswith("online.")}
    if not online:
        return None
    average = copy.deepcopy(model).requires_grad_(False) if settings.train.average_tau > 0 else None
    load_weights(model, online, "online weights in train_state.safetensors")  # the optimizer's state is theirs
    return average


def _announce_data(run: _Run) -> None:
    """Print what the run trains on: several datasets, dropped heads, reworded instructions."""
    cache, ts = run.cache, run.settings.train
    if len(cache.sources) > 1:
        counts = np.bincount(cache.episode_source, minlength=len(cache.sources))
        listed = ", ".join(f"{src} ({n} episodes)" for src, n in zip(cache.sources, counts, strict=True))
        print(f"latent-vla train: {len(cache.sources)} datasets as one training set: {listed}")
    for note in cache.skipped:
        print(f"latent-vla train: {note}")
    if ts.rephrase > 0:
        rng = np.random.default_rng(0)
        sampler = run.sampler
        assert sampler.rephrase is not None
        changed = sum(any(sampler.rephrase(t, rng) != t for _ in range(4)) for t in cache.tasks)
        print(
            f"latent-vla train: rewording instructions with probability {ts.rephrase}: {changed} of "
            f"{len(cache.tasks)} dataset instructions match a task template (the others stay as recorded)"
        )


def _clip_groups(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The parameters clipped together (``(model, further dynamics heads)``): the heads of
    ``model.dynamics_heads`` > 1 learn from the encoder's detached latents, and clipping them apart keeps
    the rest of the model's step what it would be without them."""
    groups: tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]] = ([], [])
    for name, p in model.named_parameters():
        groups["dynamics_ensemble." in name].append(p)
    return groups


# -- the loop --------------------------------------------------------------------------------------
def _train_step(
    run: _Run, step: int, rng: np.random.Generator, grounding: bool = False, done: float = 0.0
) -> tuple[dict[str, torch.Tensor], float]:
    """One optimizer step at (0-based) ``step``; returns the loss terms and the pre-clip grad norm.

    ``grounding``: the first-frame objective (:meth:`WorldModelLoss.first_frame`) instead of the full one;
    ``done``: the share of the run used (the learning-rate schedule's clock).
    """
    ts = run.settings.train
    for g in run.optimizer.param_groups:
        g["lr"] = _lr_at(step, ts, done)
    batch = run.sampler.sample(run.batch_size, rng).to(run.device)
    total, terms = run.train_fn(batch, run.target, first_frame=grounding)
    terms["grounding"] = torch.tensor(float(grounding))
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    clip = ts.grad_clip if ts.grad_clip > 0 else math.inf
    model_params, ensemble_params = _clip_groups(run.model)
    grad_norm = torch.nn.utils.clip_grad_norm_(model_params, clip)
    if ensemble_params:  # clipped on their own, so the further dynamics heads never rescale the model's step
        torch.nn.utils.clip_grad_norm_(ensemble_params, clip)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"loss is {float(total)} at step {step}: terms { ({k: float(v) for k, v in terms.items()}) }"
        )
    run.optimizer.step()
    if run.target is not None:
        _ema_update(run.target, run.model, ts.ema_tau)
    return terms, float(grad_norm)


def _grounding_possible(run: _Run) -> bool:
    """A grounding phase is asked for, the data record the environment state and the run is fresh."""
    return run.settings.train.grounding > 0 and run.model.env_state_dim > 0 and run.start_step == 0


class _GroundingPhase:
    """Says, step by step, whether a step belongs to the grounding phase (the first-frame objective).

    The phase is the first ``train.grounding`` share of a fresh run (of ``train.minutes`` or of
    ``train.steps``, whichever comes first). With ``train.grounding_loss > 0`` it goes on past that
    share while the mean environment-state loss of its last :attr:`WINDOW` steps is above that value, up
    to ``train.grounding_max`` of the run: the encoder learns where the named object is in a sudden
    drop whose timing varies from run to run. Once over, it stays over. A resumed run does not re-enter
    it, nor does a run whose data record no environment state. Under DDP rank 0 decides, so every rank
    runs the same objective.
    """

    WINDOW = 50

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.on = _grounding_possible(run)
        self.losses: deque[float] = deque(maxlen=self.WINDOW)

    def active(self, step: int, elapsed_s: float) -> bool:
        """Whether (0-based) ``step``, ``elapsed_s`` seconds into this call, trains the first-frame objective."""
        ts, run, was_on = self.run.settings.train, self.run, self.on
        if self.on:
            share = max(step / ts.steps, elapsed_s / (ts.minutes * 60.0))
            self.on = share < ts.grounding or (share < ts.grounding_max and self._loss_high())
        if run.world > 1:
            t = torch.tensor([1.0 if self.on else 0.0], device=run.device)
            dist.broadcast(t, src=0)
            self.on = bool(t.item() > 0)
        if was_on and not self.on and run.is_main:
            loss = f"{np.mean(self.losses):.3f}" if self.losses else "n/a"
            print(f"latent-vla train: grounding phase over at step {step} ({share:.0%} of the run; environment-state "
                  f"loss {loss} over its last {len(self.losses)} steps); the full objective from here")  # fmt: skip
        return self.on

    def record(self, terms: Mapping[str, torch.Tensor]) -> None:
        """Note a grounding step's environment-state loss."""
        if self.on and "env_state" in terms:
            self.losses.append(float(terms["env_state"]))

    def _loss_high(self) -> bool:
        ts = self.run.settings.train
        if ts.grounding_loss <= 0:
            return False
        return len(self.losses) < self.WINDOW or float(np.mean(self.losses)) > ts.grounding_loss


def _run_fraction(run: _Run, step: int, elapsed_s: float) -> float:
    """The share of this run used, ``[0, 1]``: of ``train.steps`` or of ``train.minutes``, whichever is
    further; under DDP the largest over the ranks, so every rank steps with the same learning rate."""
    ts = run.settings.train
    done = min(1.0, max(step / ts.steps, elapsed_s / (ts.minutes * 60.0)))
    if run.world > 1:
        t = torch.tensor([done], device=run.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        done = float(t.item())
    return done


def _should_stop(run: _Run, elapsed_s: float, signals: _StopSignals) -> bool:
    """Out of time, or a signal arrived; under DDP every rank stops when any one would."""
    stop = elapsed_s >= run.settings.train.minutes * 60.0 or signals.received is not None
    if run.world > 1:
        flag = torch.tensor([1.0 if stop else 0.0], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item() > 0)
    return stop


def _validate(run: _Run, progress: _Progress, step: int, batches: int) -> dict[str, float]:
    """Validation terms on the held-out episodes (rank 0; empty when there are none), logged as ``val/*``."""
    if not run.is_main or run.val_sampler is None:
        return {}
    val = evaluate(run.loss_fn, run.val_sampler, batches, run.batch_size, run.settings.train.seed, run.device)
    progress.scalars("val", val, step)
    return val


def _save(run: _Run, step: int) -> None:
    """Write a resumable checkpoint of ``step`` (rank 0): weights, stats, AdamW state, EMA target.

    With a weight average (``train.average_tau``) the checkpoint's model is the average and the online
    weights go to ``train_state.safetensors`` (``online.*``), from which a resumed run continues."""
    if not run.is_main:
        return
    extra = {f"ema.{k}": v for k, v in run.target.state_dict().items()} if run.target is not None else {}
    if run.average is not None:
        extra.update({f"online.{k}": v for k, v in run.model.state_dict().items()})
    save_checkpoint(
        run.run_dir,
        run.average if run.average is not None else run.model,
        run.normalizer,
        run.tokenizer.with_known_words(run.sampler.seen_words),
        run.spec,
        run.config_to_save,
        step,
        run.optimizer,
        train_state=extra or None,
        snap_table=run.snap_table,
    )


def _optimize(run: _Run, progress: _Progress, signals: _StopSignals) -> tuple[int, float]:
    """Step until ``train.steps``, ``train.minutes`` or a signal; returns ``(step, seconds)``."""
    ts = run.settings.train
    rng = np.random.default_rng([ts.seed, run.rank, run.start_step])
    t_start = last_save = time.monotonic()
    step = run.start_step
    phase = _GroundingPhase(run)
    while step < ts.steps and not _should_stop(run, time.monotonic() - t_start, signals):
        elapsed = time.monotonic() - t_start
        done = _run_fraction(run, step, elapsed) if ts.lr_schedule != "constant" else 0.0
        grounding = phase.active(step, elapsed)
        terms, grad_norm = _train_step(run, step, rng, grounding, done)
        phase.record(terms)
        _track_average(run, grounding)
        step += 1
        progress.add(terms, grad_norm, time.monotonic() - t_start)
        if step % ts.log_every == 0 or step == ts.steps:
            progress.flush(step, time.monotonic() - t_start, run.optimizer.param_groups[0]["lr"])
        if ts.val_every > 0 and step % ts.val_every == 0:
            _validate(run, progress, step, batches=2)
        if time.monotonic() - last_save >= ts.save_every_minutes * 60.0:
            _save(run, step)
            last_save = time.monotonic()
    return step, time.monotonic() - t_start


def train(
    settings: RunSettings, full_config: dict[str, Any] | None = None, rephraser: Rephraser | None = None
) -> TrainResult:
    """Train (or resume) a world model; see the module docstring.

    SIGINT/SIGTERM during the loop stop it after the current step: the checkpoint is saved, the logs
    closed, and the result says so (``interrupted``); a second signal quits at once.

    Args:
        settings: validated settings (:func:`settings_from_config`).
        full_config: the resolved configuration to save as ``config.yaml`` (default: ``settings``).
        rephraser: ``(instruction, rng) -> reworded instruction`` for ``train.rephrase > 0``
            (``latent-vla train`` passes ``sim.phrasing.rephrase_instruction``; this floor cannot import sim).

    Raises:
        UserError: a bad setting, an unusable ``out``, or a checkpoint there of another model (all
            before any data is decoded, except dimensions only the dataset tells).
        latent_vla.data.DatasetError: unusable dataset.
        latent_vla.checkpoint.CheckpointError: a corrupt checkpoint in ``out``.
    """
    if settings.train.rephrase > 0 and rephraser is None:
        raise UserError(
            f"train.rephrase={settings.train.rephrase} needs a rephraser: latent-vla train passes sim.phrasing's; "
            "from Python call train(settings, rephraser=sim.phrasing.rephrase_instruction)"
        )
    run = _setup(settings, full_config, rephraser)
    if run.is_main:
        _announce_data(run)
        if run.model.env_state_dim > 0:
            print(
                f"latent-vla train: auxiliary head on observation.environment_state ({run.model.env_state_dim} "
                f"values, weight {settings.train.loss.env_state}); it is for training and inspection only"
            )
        if settings.train.grounding > 0:
            print(
                f"latent-vla train: grounding phase: the first {settings.train.grounding:.0%} of the run trains the "
                "encoder on single frames (where the named object is)"
                + (
                    f", longer while the environment-state loss is above {settings.train.grounding_loss} (at most "
                    f"{settings.train.grounding_max:.0%} of the run)"
                    if settings.train.grounding_loss > 0
                    else ""
                )
                if _grounding_possible(run)
                else "latent-vla train: no grounding phase (it needs observation.environment_state and a fresh run)"
            )
    ts = settings.train
    progress = _Progress(run.run_dir, run.start_step, ts.steps, ts.minutes * 60.0, run.is_main, ts.progress)
    with _StopSignals() as signals:
        try:
            step, seconds = _optimize(run, progress, signals)
            progress.flush(step, seconds, run.optimizer.param_groups[0]["lr"])
            val = _validate(run, progress, step, batches=4) if signals.received is None else {}
            _save(run, step)
        finally:
            progress.close()
    if run.world > 1:
        dist.barrier()
    return TrainResult(
        run_dir=run.run_dir,
        step=step,
        steps_this_call=step - run.start_step,
        seconds=seconds,
        first=progress.first,
        last=progress.last,
        val=val,
        skipped=list(run.cache.skipped),
        num_parameters=run.model.num_parameters(),
        world_size=run.world,
        interrupted=signals.received.name if signals.received is not None else None,
    )
