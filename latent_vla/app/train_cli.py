"""``latent-vla train``: thin wiring from the Hydra config to :func:`latent_vla.train.train`.

Prints a summary table at the end and writes ``train_summary.json`` (figures of the run) into ``out``.
Stopped by Ctrl-C or SIGTERM, training saves a checkpoint first; the command then prints one line on
stderr (where the checkpoint is, how to resume) and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.base.errors import UserError
from latent_vla.checkpoint import CheckpointError
from latent_vla.data import DatasetError
from latent_vla.train import TrainResult, settings_from_config, train


def summary_dict(result: TrainResult) -> dict[str, Any]:
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
        "interrupted": result.interrupted,
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
    try:
        settings = settings_from_config(cfg)
        rephraser = None
        if settings.train.rephrase > 0:
            from sim.phrasing import rephrase_instruction  # the phrase bank (imports MuJoCo via sim.tasks)

            rephraser = rephrase_instruction
        config = OmegaConf.to_container(cfg, resolve=True)
        result = train(settings, full_config=config, rephraser=rephraser)  # type: ignore[arg-type]
    except (UserError, DatasetError, CheckpointError) as exc:
        print(f"latent-vla train: {exc}", file=sys.stderr)
        return 2
    code = 128 + signal.Signals[result.interrupted].value if result.interrupted else 0
    if int(os.environ.get("RANK", "0")) != 0:
        return code
    summary = summary_dict(result)
    (result.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if result.interrupted:
        print(
            f"latent-vla train: stopped by {result.interrupted} at step {result.step}; checkpoint saved in "
            f"{result.run_dir}; run the same command again (resume=auto) to continue from step {result.step}",
            file=sys.stderr,
        )
    else:
        print_summary(summary)
    return code
