"""Calibration observations for int8 export: robot-style observations read from a LeRobotDataset.

Static int8 quantization of the encoder needs activations from realistic inputs. The observations
come from the dataset the model was trained on (or any LeRobotDataset with the same cameras), as
``(observation dict, instruction)`` pairs in the Brain format (docs/architecture.md, section 6):
``"<joint>.pos"`` floats in robot units and one uint8 ``(H, W, 3)`` image per camera.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec


def dataset_observations(
    root: str | os.PathLike[str], spec: RobotSpec, cameras: Sequence[str], frames: int = 32
) -> list[tuple[dict[str, Any], str]]:
    """``frames`` observations spread evenly over a LeRobotDataset.

    Args:
        root: dataset directory (LeRobot v3.0 layout).
        spec: robot spec; its ``action_keys`` name the joint entries.
        cameras: camera names the model reads (``observation.images.<camera>`` features).
        frames: how many frames to take.

    Returns:
        ``[(observation, instruction), ...]``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        KeyError: the dataset lacks a camera or ``observation.state``.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration dataset {root} does not exist")
    ds = LeRobotDataset(f"local/{root.name}", root=root)
    keys = [f"observation.images.{c}" for c in cameras] + ["observation.state"]
    missing = [k for k in keys if k not in ds.features]
    if missing:
        raise KeyError(f"calibration dataset {root} lacks features {missing}; it has {sorted(ds.features)}")
    n = len(ds)
    if n == 0:
        raise ValueError(f"calibration dataset {root} is empty")
    out = []
    for i in np.linspace(0, n - 1, num=min(frames, n)).round().astype(int):
        item = ds[int(i)]
        obs: dict[str, Any] = spec.vector_to_action(np.asarray(item["observation.state"], dtype=np.float64))
        for c in cameras:
            img = np.asarray(item[f"observation.images.{c}"], dtype=np.float32)  # (3, H, W) in [0, 1]
            obs[c] = np.clip(np.rint(np.moveaxis(img, 0, -1) * 255.0), 0, 255).astype(np.uint8)
        out.append((obs, str(item.get("task", ""))))
    return out
