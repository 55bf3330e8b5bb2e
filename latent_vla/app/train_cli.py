"""``latent-vla train``: thin wiring from the Hydra config to :func:`latent_vla.train.train`.

Prints a summary table at the end and writes ``train_summary.json`` (figures of the run) into ``out``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.checkpoint import CheckpointError
from latent_vla.data import DatasetError


def summary_dict(result) -> dict[str, Any]:
    """JSON-ready figures of a :class:`~latent_vla.train.TrainResult`."""
    return {
        "run_dir": str(result.run_dir),
        "step": result.step,
        "steps_this_call": result.steps_this_call,
        "seconds": round(result.seconds, 3),
        "steps_per_second": round(result.steps_this_call / max(result.seconds, 1e-9), 3),
        "num_parameters": result.num_parameters,
        "world_size": result.world_size,
        "first": result.first,
        "last": result.last,
        "val": result.val,
        "skipped": result.skipped,
    }


def print_summary(summary: dict[str, Any]) -> None:
    """A rich table of the first/last/validation loss terms."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"latent-vla train: {summary['run_dir']} (step {summary['step']})")
    table.add_column("term")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    table.add_column("val", justify="right")
    for key in summary["last"]:
        first, last, val = summary["first"].get(key), summary["last"].get(key), summary["val"].get(key)
        table.add_row(key, *(f"{v:.4g}" if v is not None else "-" for v in (first, last, val)))
    console = Console()
    console.print(table)
    console.print(
        f"{summary['steps_this_call']} steps in {summary['seconds']:.1f} s "
        f"({summary['steps_per_second']:.2f} steps/s), {summary['num_parameters']:,} parameters"
    )


def main(cfg: DictConfig) -> int:
    """Run ``latent-vla train`` with a composed config; returns the exit code."""
    from latent_vla.train import settings_from_config, train

    try:
        settings = settings_from_config(cfg)
    except Exception as exc:  # OmegaConf validation errors have many types
        print(f"latent-vla train: bad configuration: {exc}", file=sys.stderr)
        return 2
    full = OmegaConf.to_container(cfg, resolve=True)
    try:
        result = train(settings, full_config=full)  # type: ignore[arg-type]
    except (DatasetError, CheckpointError) as exc:
        print(f"latent-vla train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        summary = summary_dict(result)
        (result.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary)
    return 0
