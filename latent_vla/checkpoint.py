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
    checkpoint.json          format version, step, optimizer hyper-parameters, sha256 of every file

Every file is written to a temporary directory first and moved into place with ``os.replace``;
``checkpoint.json`` goes last and lists each file's sha256, so a half-written or corrupted checkpoint
is refused on load with a message instead of being silently mixed.
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

from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import RobotSpec
from latent_vla.base.text import Tokenizer
from latent_vla.model import ModelConfig, WorldModel

FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"


class CheckpointError(RuntimeError):
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
    """

    model: WorldModel
    normalizer: Normalizer
    tokenizer: Tokenizer
    spec: RobotSpec
    config: dict[str, Any]
    step: int
    run_dir: Path

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_instruction(self, texts: list[str] | str) -> torch.Tensor:
        """Instructions -> task embeddings ``(B, T)`` (no autograd)."""
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
        for f in sorted(tmp.iterdir()):
            manifest["files"][f.name] = _sha256(f)
        _write_json(tmp / MANIFEST, manifest)
        # Stale optional files from an older checkpoint must not survive next to the new manifest.
        for optional in ("optimizer.safetensors", "train_state.safetensors"):
            if not (tmp / optional).exists() and (run_dir / optional).exists():
                (run_dir / optional).unlink()
        for name in [*manifest["files"], MANIFEST]:
            os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(run_dir: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read ``checkpoint.json`` and (optionally) check every file's sha256.

    Raises:
        CheckpointError: when the directory is not a checkpoint, a file is missing or a hash differs.
    """
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; expected a latent-vla run directory")
    if not path.exists():
        raise CheckpointError(
            f"{run_dir} holds no {MANIFEST}: not a latent-vla checkpoint (or one still being written)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {manifest.get('format')} but this version reads {FORMAT_VERSION}"
        )
    if verify:
        for name, digest in manifest["files"].items():
            f = run_dir / name
            if not f.exists():
                raise CheckpointError(f"checkpoint {run_dir} is incomplete: {name} is missing")
            if _sha256(f) != digest:
                raise CheckpointError(
                    f"checkpoint {run_dir}: {name} is corrupt or was changed after saving (sha256 mismatch)"
                )
    return manifest


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


def load_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory written by :func:`save_checkpoint`.

    Returns:
        A :class:`Checkpoint` whose model is in eval mode on ``map_location``.

    Raises:
        CheckpointError: not a checkpoint, incomplete, corrupt, or weights that do not fit ``model.json``.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    try:
        model_cfg = ModelConfig.from_dict(json.loads((run_dir / "model.json").read_text()))
        normalizer = Normalizer.from_dict(json.loads((run_dir / "stats.json").read_text()))
        tokenizer = Tokenizer.from_dict(json.loads((run_dir / "tokenizer.json").read_text()))
        spec = RobotSpec.from_dict(json.loads((run_dir / "spec.json").read_text()))
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {run_dir}: bad metadata: {exc}") from exc
    model = WorldModel(model_cfg)
    load_weights(model, _load_tensors(run_dir / "model.safetensors", "cpu"), f"{run_dir / 'model.safetensors'}")
    model.to(map_location).eval()
    return Checkpoint(model, normalizer, tokenizer, spec, config, int(manifest["step"]), run_dir)


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
    if meta["class"] != type(optimizer).__name__:
        raise CheckpointError(f"checkpoint optimizer is {meta['class']}, not {type(optimizer).__name__}")
    tensors = _load_tensors(run_dir / "optimizer.safetensors", "cpu")
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"optimizer state in {run_dir} does not fit this model: {exc}") from exc


def load_train_state(run_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The extra training tensors of a checkpoint (empty when there are none)."""
    path = Path(run_dir) / "train_state.safetensors"
    return _load_tensors(path, "cpu") if path.exists() else {}
