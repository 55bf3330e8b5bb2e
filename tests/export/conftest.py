"""Fixtures of the export tests: a small randomly initialized checkpoint and one bundle exported from it.

A random WorldModel is honest for parity tests (ONNX vs PyTorch of the same weights); calibration
observations come from the shared synthetic LeRobotDataset (``tiny_dataset_dir``).
"""

from __future__ import annotations

import shutil

import pytest
import torch
from export_helpers import CAMERAS, HORIZON, make_checkpoint

from latent_vla.base.robot_spec import SO101


@pytest.fixture(scope="session")
def export_ckpt_dir(tmp_path_factory):
    """Run directory of a small random WorldModel."""
    return make_checkpoint(tmp_path_factory.mktemp("export_ckpt") / "run")


@pytest.fixture(scope="session")
def export_ckpt(export_ckpt_dir):
    """The loaded :class:`latent_vla.checkpoint.Checkpoint`."""
    from latent_vla.checkpoint import load_checkpoint

    return load_checkpoint(export_ckpt_dir)


@pytest.fixture(scope="session")
def calib_obs(tiny_dataset_dir):
    """24 (observation, instruction) pairs read from the synthetic LeRobotDataset."""
    from export.calibration import dataset_observations

    return dataset_observations(tiny_dataset_dir, SO101, CAMERAS, frames=24)


@pytest.fixture(scope="session")
def export_settings():
    """Export settings of the shared bundle (H=4; all precisions; action terms switched on)."""
    from export.exporter import ExportSettings

    return ExportSettings(
        horizon=HORIZON,
        objective={"discount": 0.9, "terminal_weight": 0.5, "prior_weight": 0.05, "smooth_weight": 0.1},
        default_instruction=None,
    )


@pytest.fixture(scope="session")
def exported(export_ckpt, calib_obs, export_settings, tmp_path_factory):
    """:class:`export.exporter.ExportResult` of the shared bundle."""
    from export.exporter import export_bundle

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    return export_bundle(export_ckpt, out, export_settings, calibration=calib_obs, progress=False)


@pytest.fixture(scope="session")
def bundle_dir(exported):
    """Directory of the shared bundle (do not modify: copy it first)."""
    return exported.path


@pytest.fixture
def copy(bundle_dir, tmp_path):
    """A copy of the shared bundle that a test may tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst
