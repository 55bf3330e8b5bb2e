"""Checkpoint directories: safetensors weights + JSON/YAML, written atomically, verified on load.

A run directory holds (no pickle anywhere)::

    model.safetensors        WorldModel weights
    model.json               ModelConfig (architecture and dimensions)
    config.yaml              the resolved training configuration
    stats.json               Normalizer (dataset statistics)
    tokenizer.json           Tokenizer settings
    spec.json                RobotSpec
    optimizer.safetensors    optimizer tensors (optional, for resuming)
    train_state.safetensors  other training tensors, e.g. an EMA target encoder (optional)
    instructions.json        recorded instructions to snap to (optional; latent_vla.instruction_snap)
    checkpoint.json          format version, step, optimizer hyper-parameters, sha256 of every file

Every file is written to a temporary directory first and moved into place with ``os.replace``;
``checkpoint.json`` goes last and lists each file's sha256, so a half-written or corrupted checkpoint
is refused on load with a message instead of being silently mixed.

Loading trusts none of it: every problem (a missing or malformed ``checkpoint.json``, a hash mismatch,
a JSON/YAML file that is not UTF-8, not parseable or absurdly nested, statistics whose sizes do not fit
the model or whose bounds lie outside the robot's joint limits, weights that do not fit ``model.json``)
is a :class:`CheckpointError` naming the file, at load time rather than at the first ``act()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latent_vla.base.errors import UserError
from latent_vla.base.files import read_json, read_small_file
from latent_vla.base.normalize import Normalizer, limit_problems
from latent_vla.base.robot_spec import RobotSpec
from latent_vla.base.text import Tokenizer
from latent_vla.instruction_snap import SNAP_FILE, InstructionSnap, SnapTable, build_snap
from latent_vla.model import ModelConfig, WorldModel

FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
REQUIRED_FILES = ("model.safetensors", "model.json", "config.yaml", "stats.json", "tokenizer.json", "spec.json")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint directory is missing, incomplete, corrupt or does not match the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the world model, in eval mode, on ``map_location``.
        normalizer: dataset statistics.
        tokenizer: instruction tokenizer.
        spec: the robot spec it was trained for.
        config: the resolved training configuration (plain dict).
        step: optimizer steps taken.
        run_dir: where it was loaded from.
        snap_table: the recorded instructions :meth:`embed_instruction` snaps to (``instructions.json``),
            or None (no snapping).
        snap: the :class:`InstructionSnap` built from ``snap_table`` on this model, or None.
    """

    model: WorldModel
    normalizer: Normalizer
    tokenizer: Tokenizer
    spec: RobotSpec
    config: dict[str, Any]
    step: int
    run_dir: Path
    snap_table: SnapTable | None = None
    snap: InstructionSnap | None = None

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_instruction(self, texts: list[str] | str) -> torch.Tensor:
        """Instructions -> task embeddings ``(B, T)`` (no autograd), snapped to a recorded instruction's
        where the checkpoint has ``instructions.json`` and the instruction lies within its radius."""
        task = self.raw_embedding(texts)
        return task if self.snap is None else self.snap(task)

    @torch.no_grad()
    def raw_embedding(self, texts: list[str] | str) -> torch.Tensor:
        """Instructions -> the text encoder's task embeddings ``(B, T)``, never snapped."""
        tokens = torch.from_numpy(self.tokenizer.encode(texts)).to(self.device)
        return self.model.embed_task(tokens)

    def observation_to_model(self, observation: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A LeRobot robot observation dict -> model inputs for one frame.

        Args:
            observation: ``"<joint>.pos"`` floats in robot units (``spec.action_keys``) and one uint8
                ``(H, W, 3)`` image per camera of the model.

        Returns:
            ``({camera: (1, 3, h, w)}, state (1, S))`` float32 tensors on the model's device.
        """
        missing = [c for c in self.model.camera_names if c not in observation]
        if missing:
            raise KeyError(f"observation lacks cameras {missing}; the model reads {self.model.camera_names}")
        state = self.spec.action_to_vector(observation)
        images = {
            c: torch.from_numpy(self.normalizer.image_to_model(np.asarray(observation[c])))[None].to(self.device)
            for c in self.model.camera_names
        }
        state_t = torch.from_numpy(self.normalizer.state_to_model(state))[None].to(self.device)
        return images, state_t

    @torch.no_grad()
    def encode_observation(self, observation: Mapping[str, Any], task: torch.Tensor) -> torch.Tensor:
        """Robot observation dict + task ``(1, T)`` -> latent ``(1, Z)`` (no autograd)."""
        images, state = self.observation_to_model(observation)
        return self.model.encode(images, state, task)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    # JSON turns tuples (e.g. Adam's betas) into lists; the optimizer expects them back as tuples.
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: str | os.PathLike,
    model: WorldModel,
    normalizer: Normalizer,
    tokenizer: Tokenizer,
    spec: RobotSpec,
    config: Mapping[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    train_state: Mapping[str, torch.Tensor] | None = None,
    snap_table: SnapTable | None = None,
) -> None:
    """Write a checkpoint into ``run_dir`` atomically (see the module docstring).

    Args:
        run_dir: run directory (created if needed); other files in it are left alone.
        model: the world model (its ``config`` is saved as ``model.json``).
        normalizer: dataset statistics.
        tokenizer: instruction tokenizer.
        spec: robot spec.
        config: resolved training configuration, a plain (JSON/YAML-able) mapping.
        step: optimizer steps taken so far.
        optimizer: when given, its state goes to ``optimizer.safetensors`` for resuming.
        train_state: other named tensors to resume from (e.g. an EMA target encoder).
        snap_table: recorded instructions to snap to, saved as ``instructions.json`` (None: no snapping).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=run_dir))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": str(FORMAT_VERSION)})
        _write_json(tmp / "model.json", model.config.to_dict())
        (tmp / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        _write_json(tmp / "stats.json", normalizer.to_dict())
        _write_json(tmp / "tokenizer.json", tokenizer.to_dict())
        _write_json(tmp / "spec.json", spec.to_dict())
        manifest: dict[str, Any] = {"format": FORMAT_VERSION, "step": int(step), "files": {}}
        if optimizer is not None:
            tensors, meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            manifest["optimizer"] = {"class": type(optimizer).__name__, **meta}
        if train_state:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in train_state.items()}, str(tmp / "train_state.safetensors")
            )
        if snap_table is not None:
            _write_json(tmp / SNAP_FILE, snap_table.to_dict())
        for f in sorted(tmp.iterdir()):
            manifest["files"][f.name] = _sha256(f)
        _write_json(tmp / MANIFEST, manifest)
        # Stale optional files from an older checkpoint must not survive next to the new manifest.
        for optional in ("optimizer.safetensors", "train_state.safetensors", SNAP_FILE):
            if not (tmp / optional).exists() and (run_dir / optional).exists():
                (run_dir / optional).unlink()
        for name in [*manifest["files"], MANIFEST]:
            os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_manifest(manifest: Any, path: Path) -> None:
    """The structure of a parsed ``checkpoint.json``: format, step and a ``files`` table of plain names -> sha256."""
    if not isinstance(manifest, Mapping):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {manifest.get('format')} but this version reads {FORMAT_VERSION}"
        )
    step = manifest.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: step must be a non-negative integer, got {step!r}")
    files = manifest.get("files")
    if not isinstance(files, Mapping):
        raise CheckpointError(f"{path} has no 'files' table of file name -> sha256 (not written by save_checkpoint)")
    for name, digest in files.items():
        if Path(name).name != name or name in {"", ".", ".."}:
            raise CheckpointError(f"{path}: files entry {name!r} is not a plain file name inside the run directory")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CheckpointError(f"{path}: sha256 of {name} must be 64 lower-case hex digits, got {digest!r}")
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise CheckpointError(f"{path}: files table lacks {missing}")


def read_manifest(run_dir: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read ``checkpoint.json``, check its structure and (optionally) every file's sha256.

    Raises:
        CheckpointError: when the directory is not a checkpoint, the manifest is malformed, a file is
            missing or a hash differs.
    """
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; expected a latent-vla run directory")
    if not path.exists():
        raise CheckpointError(
            f"{run_dir} holds no {MANIFEST}: not a latent-vla checkpoint (or one still being written)"
        )
    manifest = read_json(path, CheckpointError)
    _check_manifest(manifest, path)
    if verify:
        for name, digest in manifest["files"].items():
            f = run_dir / name
            if not f.is_file():
                raise CheckpointError(f"checkpoint {run_dir} is incomplete: {name} is missing")
            if _sha256(f) != digest:
                raise CheckpointError(
                    f"checkpoint {run_dir}: {name} is corrupt or was changed after saving (sha256 mismatch)"
                )
    return dict(manifest)


def _load_tensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def load_weights(model: WorldModel, weights: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``weights`` into ``model`` strictly, explaining every mismatch.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [
        f"{k}: {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in weights and weights[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(weights, strict=True)


def _parse_json(run_dir: Path, name: str, parse: Any) -> Any:
    """``parse(content of run_dir/name)``, every failure a :class:`CheckpointError` naming the file."""
    data = read_json(run_dir / name, CheckpointError)
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {run_dir}: {name} is malformed: {exc}") from None


def _read_config(run_dir: Path) -> dict[str, Any]:
    """``config.yaml`` as a dict; YAML errors (one line) and non-mappings are :class:`CheckpointError`."""
    path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(read_small_file(path, CheckpointError).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a training configuration") from None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path} must hold a mapping of settings, not {type(config).__name__}")
    return dict(config)


def _fit_problems(cfg: ModelConfig, normalizer: Normalizer, tokenizer: Tokenizer, spec: RobotSpec) -> list[str]:
    """Where ``stats.json``, ``tokenizer.json`` and ``spec.json`` do not fit ``model.json`` or the arm."""
    problems = []
    if (normalizer.state_dim, normalizer.action_dim) != (cfg.state_dim, cfg.action_dim):
        problems.append(
            f"stats.json has {normalizer.state_dim} state / {normalizer.action_dim} action values, "
            f"model.json {cfg.state_dim} / {cfg.action_dim}"
        )
    if tuple(normalizer.camera_names) != tuple(cfg.camera_names):
        problems.append(f"stats.json cameras {list(normalizer.camera_names)} != model.json's {list(cfg.camera_names)}")
    if tuple(normalizer.image_size) != tuple(cfg.image_size):
        problems.append(f"stats.json image size {list(normalizer.image_size)} != model.json's {list(cfg.image_size)}")
    if tokenizer.vocab_size > cfg.vocab_size:
        problems.append(
            f"tokenizer.json yields ids up to {tokenizer.num_buckets}, model.json has {cfg.vocab_size} rows"
        )
    if tokenizer.pretrained != cfg.pretrained_text:
        problems.append(f"tokenizer.json pretrained {tokenizer.pretrained!r} != model.json's {cfg.pretrained_text!r}")
    elif tokenizer.pretrained is not None and tokenizer.vocab_size != cfg.vocab_size:
        problems.append(f"tokenizer.json's subword ids start at {tokenizer.vocab_size}, model.json at {cfg.vocab_size}")
    if cfg.action_dim != spec.num_joints:
        problems.append(f"model.json action_dim {cfg.action_dim} != robot {spec.name!r}'s {spec.num_joints} joints")
    return problems or limit_problems(normalizer, spec)


def load_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory written by :func:`save_checkpoint`.

    Returns:
        A :class:`Checkpoint` whose model is in eval mode on ``map_location``.

    Raises:
        CheckpointError: not a checkpoint, incomplete, corrupt, unreadable metadata, statistics that do not
            fit the model or the robot's joint limits, or weights that do not fit ``model.json``.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    model_cfg = _parse_json(run_dir, "model.json", ModelConfig.from_dict)
    normalizer = _parse_json(run_dir, "stats.json", Normalizer.from_dict)
    tokenizer = _parse_json(run_dir, "tokenizer.json", Tokenizer.from_dict)
    spec = _parse_json(run_dir, "spec.json", RobotSpec.from_dict)
    config = _read_config(run_dir)
    try:  # first, so that model.json's values are known to be sizes
        model = WorldModel(model_cfg)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {run_dir}: model.json describes no buildable model: {exc}") from None
    problems = _fit_problems(model_cfg, normalizer, tokenizer, spec)
    if problems:
        raise CheckpointError(f"checkpoint {run_dir} does not fit together: " + "; ".join(problems[:4]))
    load_weights(model, _load_tensors(run_dir / "model.safetensors", "cpu"), f"{run_dir / 'model.safetensors'}")
    model.to(map_location).eval()
    ckpt = Checkpoint(model, normalizer, tokenizer, spec, config, int(manifest["step"]), run_dir)
    if SNAP_FILE in manifest["files"]:
        ckpt.snap_table = _parse_json(run_dir, SNAP_FILE, SnapTable.from_dict)
        ckpt.snap = build_snap(ckpt.snap_table, ckpt.raw_embedding).to(map_location)
    return ckpt


def load_optimizer_state(run_dir: str | os.PathLike, optimizer: torch.optim.Optimizer) -> None:
    """Restore ``optimizer`` from ``optimizer.safetensors`` in ``run_dir``.

    Raises:
        CheckpointError: when the checkpoint holds no optimizer state or it belongs to another optimizer.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, verify=False)
    meta = manifest.get("optimizer")
    if meta is None or not (run_dir / "optimizer.safetensors").exists():
        raise CheckpointError(f"checkpoint {run_dir} holds no optimizer state")
    if not isinstance(meta, Mapping) or "class" not in meta or "param_groups" not in meta:
        raise CheckpointError(f"{run_dir / MANIFEST}: optimizer entry lacks class or param_groups")
    if meta["class"] != type(optimizer).__name__:
        raise CheckpointError(f"checkpoint optimizer is {meta['class']}, not {type(optimizer).__name__}")
    tensors = _load_tensors(run_dir / "optimizer.safetensors", "cpu")
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"optimizer state in {run_dir} does not fit this model: {exc}") from exc


def load_train_state(run_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The extra training tensors of a checkpoint (empty when there are none)."""
    path = Path(run_dir) / "train_state.safetensors"
    return _load_tensors(path, "cpu") if path.exists() else {}
