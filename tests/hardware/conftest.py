"""Fixtures for hardware tests: a Feetech motor bus mocked at LeRobot's bus boundary.

``MockFeetechBus`` replaces ``lerobot.robots.so_follower.so_follower.FeetechMotorsBus``; the
``SOFollower`` above it is LeRobot's real class. The mock stores raw motor ticks (0..4095) and
the calibration written to the motors' EEPROM, and normalizes like LeRobot's bus (degrees about
the range midpoint for the arm, 0..100 % of the range for the gripper), so calibration files,
``use_degrees``, ``max_relative_target`` and torque handling all run through LeRobot's code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lerobot.motors import MotorCalibration, MotorNormMode

RESOLUTION = 4096  # STS3215 ticks per turn


class MockFeetechBus:
    """Stands in for ``FeetechMotorsBus``: same constructor and the methods SOFollower calls."""

    instances: list[MockFeetechBus] = []

    def __init__(self, port: str, motors: dict[str, Any], calibration: dict[str, MotorCalibration] | None = None):
        self.port = port
        self.motors = motors
        self.calibration = dict(calibration or {})
        # What the motors' EEPROM holds: a calibrated arm, unless a test changes it.
        self.motor_calibration: dict[str, MotorCalibration] = dict(self.calibration)
        self.present = {m: 2048 for m in motors}  # raw ticks
        self.goal = dict(self.present)
        self.torque = dict.fromkeys(motors, False)
        self.writes: list[tuple[str, str, Any]] = []
        self.sync_writes: list[dict[str, float]] = []
        self.fail_reads = 0  # raise on the next N sync_reads, like a serial timeout
        self.track = 1.0  # fraction of the way to the goal the motors move per read
        self._connected = False
        MockFeetechBus.instances.append(self)

    # -- connection ----------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, handshake: bool = True) -> None:
        if self._connected:
            raise RuntimeError(f"{self.port} already connected")
        self._connected = True

    def disconnect(self, disable_torque: bool = True) -> None:
        if not self._connected:
            raise RuntimeError(f"{self.port} is not connected")
        if disable_torque:
            self.disable_torque()
        self._connected = False

    # -- calibration ---------------------------------------------------------------------------
    @property
    def is_calibrated(self) -> bool:
        return bool(self.calibration) and self.motor_calibration == self.calibration

    def write_calibration(self, calibration: dict[str, MotorCalibration], cache: bool = True) -> None:
        self.motor_calibration = dict(calibration)
        if cache:
            self.calibration = dict(calibration)

    def read_calibration(self) -> dict[str, MotorCalibration]:
        return dict(self.motor_calibration)

    # -- torque and configuration --------------------------------------------------------------
    def enable_torque(self, motors: str | list[str] | None = None, num_retry: int = 0) -> None:
        for m in self._names(motors):
            self.torque[m] = True

    def disable_torque(self, motors: str | list[str] | None = None, num_retry: int = 0) -> None:
        for m in self._names(motors):
            self.torque[m] = False

    @contextlib.contextmanager
    def torque_disabled(self, motors: str | list[str] | None = None) -> Iterator[None]:
        self.disable_torque(motors)
        try:
            yield
        finally:
            self.enable_torque(motors)

    def configure_motors(self, return_delay_time: int = 0, maximum_acceleration: int = 254) -> None:
        self.writes.append(("configure_motors", "*", return_delay_time))

    def write(self, data_name: str, motor: str, value: Any, **_: Any) -> None:
        self._check()
        self.writes.append((data_name, motor, value))

    # -- positions -----------------------------------------------------------------------------
    def sync_read(self, data_name: str, motors: str | list[str] | None = None, **_: Any) -> dict[str, float]:
        self._check()
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise ConnectionError(f"Failed to sync read '{data_name}' on ids=[1, 2, 3, 4, 5, 6] after 1 tries.")
        if data_name != "Present_Position":
            raise NotImplementedError(data_name)
        for m in self.motors:  # motors with torque on move toward their goal
            if self.torque[m]:
                self.present[m] = round(self.present[m] + self.track * (self.goal[m] - self.present[m]))
        return {m: self._normalize(m, self.present[m]) for m in self._names(motors)}

    def sync_write(self, data_name: str, values: dict[str, float], **_: Any) -> None:
        self._check()
        if data_name != "Goal_Position":
            raise NotImplementedError(data_name)
        self.sync_writes.append(dict(values))
        for m, v in values.items():
            self.goal[m] = self._unnormalize(m, v)

    # -- helpers -------------------------------------------------------------------------------
    def _names(self, motors: str | list[str] | None) -> list[str]:
        if motors is None:
            return list(self.motors)
        return [motors] if isinstance(motors, str) else list(motors)

    def _check(self) -> None:
        if not self._connected:
            raise RuntimeError(f"{self.port}: bus not connected")

    def _normalize(self, motor: str, raw: int) -> float:
        cal = self.calibration[motor]
        if self.motors[motor].norm_mode is MotorNormMode.DEGREES:
            return (raw - (cal.range_min + cal.range_max) / 2) * 360 / (RESOLUTION - 1)
        bounded = min(cal.range_max, max(cal.range_min, raw))
        frac = (bounded - cal.range_min) / (cal.range_max - cal.range_min)
        return frac * 100 if self.motors[motor].norm_mode is MotorNormMode.RANGE_0_100 else frac * 200 - 100

    def _unnormalize(self, motor: str, value: float) -> int:
        cal = self.calibration[motor]
        if self.motors[motor].norm_mode is MotorNormMode.DEGREES:
            return int(round(value * (RESOLUTION - 1) / 360 + (cal.range_min + cal.range_max) / 2))
        lo = 0.0 if self.motors[motor].norm_mode is MotorNormMode.RANGE_0_100 else -100.0
        frac = (min(100.0, max(lo, value)) - lo) / (100.0 - lo)
        return int(round(frac * (cal.range_max - cal.range_min) + cal.range_min))

    def set_degrees(self, motor: str, degrees: float) -> None:
        """Test helper: place a motor at a position in normalized units."""
        self.present[motor] = self.goal[motor] = self._unnormalize(motor, degrees)


MOTOR_IDS = {"shoulder_pan": 1, "shoulder_lift": 2, "elbow_flex": 3, "wrist_flex": 4, "wrist_roll": 5, "gripper": 6}


def write_calibration_file(directory: Path, robot_id: str) -> Path:
    """A LeRobot calibration file (the format ``lerobot-calibrate`` writes) for a centred arm."""
    cal = {
        name: {"id": mid, "drive_mode": 0, "homing_offset": 0, "range_min": 1024, "range_max": 3072}
        for name, mid in MOTOR_IDS.items()
    }
    cal["wrist_roll"].update(range_min=0, range_max=4095)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{robot_id}.json"
    path.write_text(json.dumps(cal, indent=4))
    return path


@pytest.fixture
def mock_bus(monkeypatch: pytest.MonkeyPatch) -> type[MockFeetechBus]:
    """Patch LeRobot's SO follower to build a MockFeetechBus; returns the class (see ``.instances``)."""
    MockFeetechBus.instances = []
    monkeypatch.setattr("lerobot.robots.so_follower.so_follower.FeetechMotorsBus", MockFeetechBus)
    return MockFeetechBus


@pytest.fixture
def calibration_dir(tmp_path: Path) -> Path:
    """A calibration directory holding ``follower.json``."""
    d = tmp_path / "calibration"
    write_calibration_file(d, "follower")
    return d
