"""``latent-vla export ckpt=<run dir> out=<bundle dir>``: write an ONNX bundle and check it loads.

Composes ``configs/export.yaml`` (group ``export/`` holds the graph and planner settings), exports
the checkpoint, opens the bundle with the PyTorch-free runtime and runs one policy action on a
calibration observation, prints a table of files, sizes and errors vs PyTorch, and writes
``export_report.json`` into the bundle directory.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.app.settings import int_setting
from latent_vla.base.errors import UserError

log = logging.getLogger("latent_vla.export")


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[export] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _calibration(cfg: DictConfig, ckpt: Any) -> list:
    from export.calibration import dataset_observations

    data = cfg.calibration.data or ckpt.config.get("data")
    if not isinstance(data, str | Path | None):  # a multi-task run's list of datasets: calibrate on the first
        data = next(iter(data), None)
    if not data or int(cfg.calibration.frames) <= 0:
        log.info("no calibration data (set calibration.data=<LeRobotDataset dir>): int8 encoder skipped")
        return []
    if not Path(str(data)).is_dir():
        if cfg.calibration.data:
            raise UserError(f"calibration.data={data} is not a directory; give a LeRobotDataset folder or null")
        log.info("training data %s not found here: int8 encoder skipped (set calibration.data=...)", data)
        return []
    obs = dataset_observations(str(data), ckpt.spec, ckpt.model.camera_names, int(cfg.calibration.frames))
    log.info("calibration: %d frames from %s", len(obs), data)
    return obs


def main(cfg: DictConfig) -> int:
    """Entry point called by ``latent_vla.app.cli``; returns the exit code.

    Raises:
        UserError: no ``ckpt=``, a bad ``export.*`` or ``calibration.*`` setting (a bad checkpoint
            raises ``CheckpointError``). A failed export or a bundle that does not load returns 1.
    """
    if cfg.ckpt is None:
        raise UserError("ckpt=<run dir> is required: the training run to export")
    int_setting(cfg, "calibration.frames", 0)
    _setup_logging()
    from export.exporter import ExportError, ExportSettings, export_bundle
    from export.runtime import BundleError, load_bundle_brain
    from latent_vla.checkpoint import load_checkpoint

    try:
        settings = ExportSettings(**OmegaConf.to_container(cfg.export, resolve=True))
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad export setting: {exc}") from exc
    ckpt = load_checkpoint(cfg.ckpt)
    calibration = _calibration(cfg, ckpt)
    try:
        result = export_bundle(ckpt, cfg.out, settings, calibration=calibration, progress=bool(cfg.progress))
    except ExportError as exc:
        print(f"latent-vla export: {exc}", file=sys.stderr)
        return 1
    figures: dict[str, Any] = result.to_dict()
    try:  # the bundle must load and act without PyTorch's help
        instruction = calibration[0][1] if calibration else (settings.default_instruction or "")
        brain = load_bundle_brain(result.path, mode="policy", instruction=instruction)
        if calibration:
            action = brain.act(calibration[0][0])
            figures["smoke_action"] = action
            log.info("bundle loads and acts: %s", {k: round(v, 2) for k, v in action.items()})
    except BundleError as exc:
        print(f"latent-vla export: the written bundle does not load: {exc}", file=sys.stderr)
        return 1
    _print_table(result.rows)
    report = Path(result.path) / "export_report.json"
    report.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"bundle: {result.path}  (report: {report})")
    return 0


def _print_table(rows: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ONNX export (max error vs PyTorch on held-out inputs)")
    for col in ("graph", "precision", "file", "KiB", "max err", "tol", "ok"):
        table.add_column(col, justify="right" if col in ("KiB", "max err", "tol") else "left")
    for r in rows:
        table.add_row(
            r.graph, r.precision, r.file, f"{r.bytes / 1024:.1f}", f"{r.max_abs_err:.2e}", f"{r.tol:g}", str(r.ok)
        )
    Console(width=120).print(table)
