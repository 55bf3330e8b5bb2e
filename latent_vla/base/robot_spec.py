"""The one robot spec: joint names, limits, gripper range, cameras and control rate.

Every part of latent-vla reads the arm from here (DESIGN.md, contract 1): the MuJoCo scene,
the dataset features, the model's normalization, the export manifest and the hardware bridge.

Units follow LeRobot's SO-100/SO-101 follower with ``use_degrees=True``: the five arm joints are
in degrees centred on the calibration midpoint, the gripper is a 0..100 opening percentage.
Actions are absolute position targets, one ``"<joint>.pos"`` key per joint.

This module depends on numpy only, so the PyTorch-free runtime can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SO_JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)


@dataclass(frozen=True)
class JointSpec:
    """One joint of the arm.

    Attributes:
        name: LeRobot motor name, e.g. ``"shoulder_pan"``.
        lower: lower limit in robot units (degrees, or percent for a ``gripper`` joint).
        upper: upper limit in robot units.
        sim_lower: the same lower limit as a MuJoCo joint angle, radians.
        sim_upper: the same upper limit as a MuJoCo joint angle, radians.
        max_velocity: speed limit in robot units per second.
    """

    name: str
    lower: float
    upper: float
    sim_lower: float
    sim_upper: float
    max_velocity: float

    def to_sim(self, value: float | np.ndarray) -> float | np.ndarray:
        """Map robot units to the MuJoCo joint angle in radians (linear in both)."""
        frac = (np.asarray(value, dtype=np.float64) - self.lower) / (self.upper - self.lower)
        return self.sim_lower + frac * (self.sim_upper - self.sim_lower)

    def from_sim(self, angle: float | np.ndarray) -> float | np.ndarray:
        """Map a MuJoCo joint angle in radians to robot units."""
        frac = (np.asarray(angle, dtype=np.float64) - self.sim_lower) / (self.sim_upper - self.sim_lower)
        return self.lower + frac * (self.upper - self.lower)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its LeRobot name and the image size the model sees (pixels)."""

    name: str
    height: int = 64
    width: int = 64


@dataclass(frozen=True)
class RobotSpec:
    """An arm as every part of latent-vla sees it.

    Attributes:
        name: spec name, e.g. ``"so101"``.
        joints: joints in LeRobot's motor order.
        cameras: cameras the model reads, in order.
        fps: control rate, Hz.
        units: human-readable unit convention.
        workspace_min: lower corner of the allowed gripper workspace box, metres, base frame (x, y, z).
        workspace_max: upper corner of that box, metres.
        home: resting pose in robot units, one value per joint.
    """

    name: str
    joints: tuple[JointSpec, ...]
    cameras: tuple[CameraSpec, ...] = (CameraSpec("front"), CameraSpec("wrist"))
    fps: float = 30.0
    units: str = "degrees (arm), percent 0..100 (gripper)"
    workspace_min: tuple[float, float, float] = (-0.45, -0.45, 0.0)
    workspace_max: tuple[float, float, float] = (0.45, 0.45, 0.5)
    home: tuple[float, ...] = field(default=())

    # -- names ---------------------------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        """Joint names in motor order."""
        return [j.name for j in self.joints]

    @property
    def action_keys(self) -> list[str]:
        """LeRobot action/observation keys, ``"<joint>.pos"``, in motor order."""
        return [f"{j.name}.pos" for j in self.joints]

    @property
    def camera_names(self) -> list[str]:
        """Camera names in order."""
        return [c.name for c in self.cameras]

    @property
    def num_joints(self) -> int:
        """Number of joints, which is also the action and state dimension."""
        return len(self.joints)

    # -- limits --------------------------------------------------------------------------------
    @property
    def lower(self) -> np.ndarray:
        """Lower joint limits in robot units, shape ``(J,)``."""
        return np.array([j.lower for j in self.joints], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """Upper joint limits in robot units, shape ``(J,)``."""
        return np.array([j.upper for j in self.joints], dtype=np.float64)

    @property
    def max_velocity(self) -> np.ndarray:
        """Joint speed limits in robot units per second, shape ``(J,)``."""
        return np.array([j.max_velocity for j in self.joints], dtype=np.float64)

    @property
    def home_vector(self) -> np.ndarray:
        """Home pose in robot units, shape ``(J,)`` (mid-range when unset)."""
        if self.home:
            return np.asarray(self.home, dtype=np.float64)
        return 0.5 * (self.lower + self.upper)

    def to_sim(self, values: np.ndarray) -> np.ndarray:
        """Robot units ``(..., J)`` to MuJoCo joint angles in radians ``(..., J)``."""
        values = np.asarray(values, dtype=np.float64)
        return np.stack([j.to_sim(values[..., i]) for i, j in enumerate(self.joints)], axis=-1)

    def from_sim(self, angles: np.ndarray) -> np.ndarray:
        """MuJoCo joint angles in radians ``(..., J)`` to robot units ``(..., J)``."""
        angles = np.asarray(angles, dtype=np.float64)
        return np.stack([j.from_sim(angles[..., i]) for i, j in enumerate(self.joints)], axis=-1)

    # -- dict <-> vector -----------------------------------------------------------------------
    def vector_to_action(self, vector: Sequence[float] | np.ndarray) -> dict[str, float]:
        """A ``(J,)`` vector in robot units to LeRobot's ``{"<joint>.pos": value}`` dict."""
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        if vector.shape[0] != self.num_joints:
            raise ValueError(f"expected {self.num_joints} joint values for {self.name}, got {vector.shape[0]}")
        return {k: float(v) for k, v in zip(self.action_keys, vector, strict=True)}

    def action_to_vector(self, action: Mapping[str, Any]) -> np.ndarray:
        """LeRobot's ``{"<joint>.pos": value}`` dict to a ``(J,)`` float64 vector in robot units.

        Raises:
            KeyError: naming every missing key, when the dict lacks a joint.
        """
        missing = [k for k in self.action_keys if k not in action]
        if missing:
            raise KeyError(f"{self.name}: missing joint keys {missing}; expected {self.action_keys}")
        return np.array([float(action[k]) for k in self.action_keys], dtype=np.float64)

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used in checkpoints and the export manifest)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobotSpec:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["joints"] = tuple(JointSpec(**j) for j in data["joints"])
        data["cameras"] = tuple(CameraSpec(**c) for c in data["cameras"])
        for key in ("workspace_min", "workspace_max", "home"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _deg_joint(name: str, limit_deg: float, max_vel_rad: float = 10.0) -> JointSpec:
    rad = math.radians(limit_deg)
    return JointSpec(name, -limit_deg, limit_deg, -rad, rad, math.degrees(max_vel_rad))


def _so_arm(name: str) -> RobotSpec:
    # Limits from TheRobotStudio's SO-101 URDF (see NOTES.md). The gripper's 0..100 % maps onto
    # its joint range -10..100 degrees.
    joints = (
        _deg_joint("shoulder_pan", 110.0),
        _deg_joint("shoulder_lift", 100.0),
        _deg_joint("elbow_flex", 96.8),
        _deg_joint("wrist_flex", 95.0),
        _deg_joint("wrist_roll", 160.0),
        JointSpec("gripper", 0.0, 100.0, math.radians(-10.0), math.radians(100.0), 300.0),
    )
    return RobotSpec(name=name, joints=joints, home=(0.0, -20.0, 20.0, 90.0, 0.0, 20.0))


def _koch_arm() -> RobotSpec:
    # Koch follower with LeRobot's use_degrees=False: each arm joint's calibrated range of motion maps
    # to -100..100, the gripper to 0..100 %. There is no Koch MJCF here, so the sim range is nominal
    # (+-90 degrees) and the workspace check needs no FK; speed: the full range in about one second.
    arm = tuple(
        JointSpec(n, -100.0, 100.0, -math.pi / 2, math.pi / 2, 200.0) for n in SO_JOINT_NAMES[:-1]
    )
    joints = arm + (JointSpec("gripper", 0.0, 100.0, math.radians(-10.0), math.radians(100.0), 200.0),)
    return RobotSpec(name="koch", joints=joints, units="range -100..100 (arm), percent 0..100 (gripper)",
                     home=(0.0, 0.0, 0.0, 0.0, 0.0, 10.0))


SO101 = _so_arm("so101")
SO100 = _so_arm("so100")
KOCH = _koch_arm()

ROBOT_SPECS: dict[str, RobotSpec] = {"so101": SO101, "so100": SO100, "koch": KOCH}


def get_robot_spec(name: str) -> RobotSpec:
    """Look up a registered robot spec by name.

    Raises:
        ValueError: listing the valid names when ``name`` is unknown.
    """
    try:
        return ROBOT_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown robot spec {name!r}; valid: {sorted(ROBOT_SPECS)}") from None
