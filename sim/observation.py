"""Env observation -> LeRobot robot observation dict (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec


def robot_observation(obs: Mapping[str, Any], spec: RobotSpec) -> dict[str, Any]:
    """Turn an env observation into LeRobot's robot observation dict.

    Args:
        obs: an ``SO101Env`` observation: ``state`` ``(J,)`` robot units and ``images``
            (camera -> uint8 ``(H, W, 3)``).
        spec: the robot spec whose joint order ``state`` follows.

    Returns:
        ``{"<joint>.pos": float}`` for every joint (robot units) plus ``{camera: image}``, the
        dict a LeRobot ``Robot.get_observation()`` returns and every brain reads.

    Raises:
        KeyError / ValueError: when ``obs`` lacks ``state`` or its size does not match the spec.
    """
    if "state" not in obs:
        raise KeyError(f"observation has no 'state'; keys: {sorted(obs)}")
    state = np.asarray(obs["state"], dtype=np.float64).reshape(-1)
    out: dict[str, Any] = dict(spec.vector_to_action(state))
    for camera, image in dict(obs.get("images", {})).items():
        out[camera] = np.asarray(image)
    return out
