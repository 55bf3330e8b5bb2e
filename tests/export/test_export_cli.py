"""``latent-vla export``: end to end on the shared tiny trained checkpoint, and its error exits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.runtime import load_bundle_brain, read_manifest
from latent_vla.app.cli import main as cli_main


def test_export_cli_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert cli_main(["export", f"ckpt={tmp_path / 'nope'}", f"out={tmp_path / 'b'}"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli_main(["export", f"out={tmp_path / 'b'}"]) == 2
    assert "ckpt=<run dir> is required" in capsys.readouterr().err
    assert cli_main(["export", "ckpt=x", "export.horizonn=3"]) == 2  # unknown key: Hydra refuses


@pytest.mark.slow
def test_export_cli_end_to_end(tiny_checkpoint_dir, tmp_path, capsys):
    out = tmp_path / "bundle"
    code = cli_main(
        ["export", f"ckpt={tiny_checkpoint_dir}", f"out={out}", "export=fast", "export.precisions=[fp32,int8]",
         "export.horizon=4", "calibration.frames=8", "progress=false"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "ONNX export" in captured.out and "cost_grad" in captured.out
    report = json.loads((out / "export_report.json").read_text())
    rows = {(r["graph"], r["precision"]): r for r in report["files"]}
    assert rows[("encoder", "int8")]["ok"]  # calibrated on the run's training data (config.yaml `data`)
    assert all(r["max_abs_err"] <= r["tol"] for r in rows.values())
    assert set(report["smoke_action"]) == {f"{j}.pos" for j in
                                           ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
                                            "gripper")}  # fmt: skip
    manifest = read_manifest(out)
    assert manifest.model["horizon"] == 4 and manifest.planner["grad"]["horizon"] == 4
    assert manifest.planner["grad"]["budget_ms"] == 40.0  # configs/planner/grad.yaml, recorded for the runtime
    brain = load_bundle_brain(out, mode="grad", instruction="reach the red target", planner={"iterations": 2})
    obs = {k: 0.0 for k in brain.spec.action_keys}
    obs.update(front=np.zeros((64, 64, 3), np.uint8), wrist=np.zeros((64, 64, 3), np.uint8))
    assert set(brain.act(obs)) == set(brain.spec.action_keys)
