"""Fixtures of the export tests: a small randomly initialized checkpoint and one bundle exported from it.

A random WorldModel is honest for parity tests (ONNX vs PyTorch of the same weights); calibration
observations come from the shared synthetic LeRobotDataset (``tiny_dataset_dir``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.robot_spec import SO101

CAMERAS = ("front", "wrist")
INSTRUCTION = "reach the red target"
HORIZON = 4


def make_checkpoint(run_dir, seed: int = 0):
    """Save a small random WorldModel (32x32 images, Z=32) with SO-101 stats; returns ``run_dir``."""
    from latent_vla.checkpoint import save_checkpoint
    from latent_vla.model import ModelConfig, WorldModel
    from latent_vla.normalize import Normalizer
    from latent_vla.text import Tokenizer

    torch.manual_seed(seed)
    cfg = ModelConfig(
        camera_names=CAMERAS, state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=32, chunk_len=4,
        vocab_size=257, task_dim=16, word_dim=16, channels=(8, 16), image_feat=32, state_feat=16, hidden=64,
        head_hidden=32,
    )  # fmt: skip
    model = WorldModel(cfg)
    rng = np.random.default_rng(seed)
    states = rng.uniform(-45, 45, (200, 6))
    actions = rng.uniform(-50, 50, (200, 6))
    normalizer = Normalizer.from_arrays(states, actions, image_size=(32, 32), camera_names=CAMERAS)
    save_checkpoint(run_dir, model, normalizer, Tokenizer(num_buckets=256, max_len=12), SO101, {"seed": seed}, 7)
    return run_dir


def random_observation(seed: int, size: int = 48) -> dict:
    """A Brain-style observation: SO-101 joints in robot units and two uint8 images."""
    rng = np.random.default_rng(seed)
    obs = SO101.vector_to_action(rng.uniform(-40, 40, 6))
    for cam in CAMERAS:
        obs[cam] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return obs


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
    """12 (observation, instruction) pairs read from the synthetic LeRobotDataset."""
    from export.calibration import dataset_observations

    return dataset_observations(tiny_dataset_dir, SO101, CAMERAS, frames=12)


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
