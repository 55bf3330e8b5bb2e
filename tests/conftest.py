"""Shared pytest set-up: headless rendering and offline LeRobot for every test."""

from __future__ import annotations

import os

import pytest
from synthetic_data import make_synthetic_dataset, tiny_run_settings

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------------------------------
# Synthetic LeRobotDatasets and a tiny trained world model (owned by the world-model part, issue 3).
#
# Fixtures for every part's tests:
#   tiny_dataset_dir     session-scoped LeRobotDataset (v3.0, video, cameras "front" and "wrist",
#                        SO-101 joint names, next.reward / next.success / next.done), 8 episodes x 24 frames
#   tiny_checkpoint_dir  session-scoped run directory of a WorldModel trained on it for a few seconds
#                        (load with latent_vla.checkpoint.load_checkpoint)
# `synthetic_data.make_synthetic_dataset(root, ...)` builds more (e.g. other camera names) and
# `synthetic_data.tiny_run_settings(data, out, ...)` makes more tiny runs (import them from
# `synthetic_data`, not from `conftest`: every test folder has its own conftest module).
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
    """A synthetic LeRobotDataset (see :func:`make_synthetic_dataset`): 8 episodes x 24 frames."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("datasets") / "tiny_reach")


@pytest.fixture(scope="session")
def tiny_train_result(tiny_dataset_dir, tmp_path_factory):
    """:class:`latent_vla.train.TrainResult` of an 80-step run on ``tiny_dataset_dir``."""
    from latent_vla.train import train

    return train(tiny_run_settings(tiny_dataset_dir, tmp_path_factory.mktemp("runs") / "tiny"))


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tiny_train_result):
    """Run directory of a tiny trained WorldModel (cameras front + wrist, 6 joints, Z = 32, K = 8).

    Load it with ``latent_vla.checkpoint.load_checkpoint(tiny_checkpoint_dir)``; treat it as read-only
    (copy it with ``shutil.copytree`` before changing anything).
    """
    return tiny_train_result.run_dir


@pytest.fixture(scope="session")
def sim_reach_dataset_dir(tmp_path_factory):
    """A real MuJoCo SO-101 reach dataset from ``sim.collect``: 2 expert episodes x 20 control steps."""
    from sim.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("sim_datasets") / "reach"
    collect(CollectConfig(task="reach", episodes=2, seed=0, out=out, max_episode_steps=20, progress=False))
    return out
