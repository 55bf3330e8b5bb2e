"""End to end: a real ONNX bundle (exported from a small untrained run) drives the twin via ``load_brain``.

Kept apart from ``test_brain_dispatch.py`` because exporting (with its parity checks) takes tens of seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_brain_dispatch import INSTRUCTION, drive, random_run

from hardware.brain import load_brain
from latent_vla.base.robot_spec import KOCH


@pytest.mark.slow
def test_onnx_bundle_brain_drives_the_twin(tmp_path: Path) -> None:
    import torch

    from export.exporter import ExportSettings, export_bundle

    torch.set_num_threads(1)
    run_dir = random_run(tmp_path / "run")
    bundle = tmp_path / "bundle"
    export_bundle(run_dir, bundle, ExportSettings(horizon=2, precisions=("fp32",)), progress=False)
    brain = load_brain(str(bundle), INSTRUCTION, mode="policy")
    assert type(brain).__name__ == "BundleBrain"
    report, commands = drive(tmp_path, brain)
    assert report.stop_reason == "steps" and report.brain_errors == 0 and len(commands) == 12
    with pytest.raises(Exception, match="differ from the robot"):
        load_brain(str(bundle), INSTRUCTION, robot_spec=KOCH, mode="policy")
