"""LeRobot's real SO-101 follower class, mocked only at the motor bus, under our safety layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lerobot.robots.so_follower import SOFollower

from hardware.brain import ScriptedBrain
from hardware.control_loop import ControlLoop
from hardware.kinematics import ArmKinematics
from hardware.robots import check_robot_matches_spec, make_robot, make_robot_config, spec_for
from hardware.safety import SafetyConfig, SafetyLayer
from latent_vla.base.robot_spec import KOCH, SO101


def node(calibration_dir: Path, **kw) -> dict:
    return {
        "type": "so101_follower",
        "spec": "so101",
        "port": "/dev/ttyFAKE0",
        "id": "follower",
        "calibration_dir": str(calibration_dir),
        "use_degrees": True,
        "cameras": {},
        **kw,
    }


def test_connect_read_write_disconnect(mock_bus, calibration_dir: Path) -> None:
    robot = make_robot(node(calibration_dir))
    assert isinstance(robot, SOFollower) and robot.config.use_degrees is True
    check_robot_matches_spec(robot, SO101)
    robot.connect()
    bus = mock_bus.instances[-1]
    assert robot.is_connected and all(bus.torque.values())
    assert ("P_Coefficient", "gripper", 16) in bus.writes  # LeRobot's configure() ran
    bus.set_degrees("elbow_flex", 30.0)
    obs = robot.get_observation()
    assert list(obs) == SO101.action_keys
    assert obs["elbow_flex.pos"] == pytest.approx(30.0, abs=0.1)
    sent = robot.send_action(SO101.vector_to_action([5.0, -10.0, 30.0, 0.0, 0.0, 40.0]))
    assert sent["shoulder_pan.pos"] == 5.0
    assert robot.get_observation()["gripper.pos"] == pytest.approx(40.0, abs=0.1)
    robot.disconnect()
    assert not bus.is_connected and not any(bus.torque.values())


def test_uncalibrated_motors_get_the_calibration_file(mock_bus, calibration_dir: Path, monkeypatch) -> None:
    original = mock_bus.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.motor_calibration = {}  # fresh motors: EEPROM differs from the file

    monkeypatch.setattr(mock_bus, "__init__", init)
    monkeypatch.setattr("builtins.input", lambda *_: "")  # "use the provided calibration file"
    robot = make_robot(node(calibration_dir))
    robot.connect()
    bus = mock_bus.instances[-1]
    assert bus.is_calibrated and bus.motor_calibration["gripper"].range_max == 3072
    robot.disconnect()


def test_control_loop_drives_the_follower_safely(mock_bus, calibration_dir: Path) -> None:
    robot = make_robot(node(calibration_dir))
    robot.connect()
    bus = mock_bus.instances[-1]
    for name, deg in zip(SO101.joint_names, [0.0, -45.0, 45.0, 30.0, 0.0], strict=False):
        bus.set_degrees(name, deg)
    config = SafetyConfig(max_step=2.0)
    safety = SafetyLayer(SO101, config, fk=ArmKinematics.for_spec(SO101))
    far = np.array([[100.0, 90.0, -90.0, 90.0, 150.0, 100.0]])  # fast, far, partly out of the workspace
    brain = ScriptedBrain(SO101, waypoints=far, speed=1000.0, fps=200.0)
    report = ControlLoop(robot, brain, safety, fps=200.0).run(steps=40)
    assert report.stop_reason == "steps" and report.commands_sent == 40
    goals = np.array([[w[n] for n in SO101.joint_names] for w in bus.sync_writes])
    assert np.all(np.abs(np.diff(goals, axis=0)) <= 2.0 + 0.2)  # + rounding to motor ticks
    assert np.all(goals >= SO101.lower - 0.2) and np.all(goals <= SO101.upper + 0.2)
    by_reason = report.safety["by_reason"]
    assert by_reason.get("max_step", 0) + by_reason.get("velocity", 0) > 0
    assert not bus.is_connected and not any(bus.torque.values())  # loop shut down, torque off


def test_serial_timeouts_hold_then_stop_with_torque_off(mock_bus, calibration_dir: Path) -> None:
    robot = make_robot(node(calibration_dir))
    robot.connect()
    bus = mock_bus.instances[-1]
    safety = SafetyLayer(SO101, SafetyConfig(), fk=None)
    loop = ControlLoop(robot, ScriptedBrain(SO101, fps=200.0), safety, fps=200.0, max_consecutive_faults=5)
    n_writes = len(bus.sync_writes)
    bus.fail_reads = 0

    def fail_after_first(tick, obs, cmd):
        if tick == 3:
            bus.fail_reads = 3  # three timeouts: held, then recovers
        if tick == 10:
            bus.fail_reads = 100  # the cable is gone: stop

    loop.on_tick = fail_after_first
    report = loop.run(steps=50)
    assert report.observation_errors >= 3 + 5
    assert report.stop_reason == "faults"
    assert report.safety["by_reason"]["stale_observation"] >= 3
    assert len(bus.sync_writes) > n_writes
    held = bus.sync_writes[4:7]
    assert all(w == held[0] for w in held)  # holding the same target during the timeouts
    assert not bus.is_connected and not any(bus.torque.values())


def test_lerobot_max_relative_target_applies_on_top(mock_bus, calibration_dir: Path) -> None:
    robot = make_robot(node(calibration_dir, max_relative_target=1.0))
    robot.connect()
    sent = robot.send_action(SO101.vector_to_action([10.0, 0.0, 0.0, 0.0, 0.0, 50.0]))
    assert abs(sent["shoulder_pan.pos"]) <= 1.0 + 0.1
    robot.disconnect()


def test_config_errors_are_clear(calibration_dir: Path) -> None:
    with pytest.raises(ValueError, match="use_degrees"):
        make_robot_config(node(calibration_dir, use_degrees=False))
    with pytest.raises(ValueError, match="unknown robot type"):
        make_robot_config({"type": "so999_follower"})
    with pytest.raises(ValueError, match="no_such_field"):
        make_robot_config(node(calibration_dir, no_such_field=1))
    with pytest.raises(ValueError, match="unknown type"):
        make_robot_config(node(calibration_dir, cameras={"front": {"type": "nope"}}))


def test_cameras_and_koch_configs_build() -> None:
    cfg = make_robot_config(
        {
            "type": "so100_follower",
            "port": "/dev/ttyACM0",
            "use_degrees": True,
            "cameras": {"front": {"type": "opencv", "index_or_path": 0, "width": 640, "height": 480, "fps": 30}},
        }
    )
    assert cfg.cameras["front"].width == 640 and cfg.type == "so100_follower"
    koch = {"type": "koch_follower", "spec": "koch", "port": "/dev/ttyACM1", "use_degrees": False}
    assert make_robot_config(koch).use_degrees is False
    assert spec_for(koch) is KOCH



def test_koch_follower_with_mocked_dynamixel_bus(calibration_dir: Path, mock_bus, monkeypatch) -> None:
    from lerobot.robots.koch_follower import KochFollower

    monkeypatch.setattr("lerobot.robots.koch_follower.koch_follower.DynamixelMotorsBus", mock_bus)
    koch = {"type": "koch_follower", "spec": "koch", "port": "/dev/ttyFAKE1", "id": "follower",
            "calibration_dir": str(calibration_dir), "use_degrees": False}  # fmt: skip
    robot = make_robot(koch)
    assert isinstance(robot, KochFollower)
    check_robot_matches_spec(robot, KOCH)
    robot.connect()
    bus = mock_bus.instances[-1]
    safety = SafetyLayer(KOCH, SafetyConfig(max_step=5.0), fk=None)
    brain = ScriptedBrain(KOCH, waypoints=[[80.0, -80.0, 50.0, 0.0, 0.0, 90.0]], speed=500.0, fps=200.0)
    report = ControlLoop(robot, brain, safety, fps=200.0).run(steps=20)
    assert report.stop_reason == "steps" and report.commands_sent == 20
    goals = np.array([[w[n] for n in KOCH.joint_names] for w in bus.sync_writes])
    assert np.all(np.abs(np.diff(goals, axis=0)) <= 5.0 + 0.2)
    assert np.all(goals[:, :5] >= -100.0) and np.all(goals[:, :5] <= 100.0)
    assert not bus.is_connected and not any(bus.torque.values())


def test_hydra_overrides_reach_lerobot_camera_configs() -> None:
    from latent_vla.app.cli import compose

    cfg = compose(
        "run",
        [
            "robot=so101",
            "robot.port=/dev/ttyACM3",
            "robot.id=lab_arm",
            "robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}",
        ],
    )
    lr = make_robot_config(cfg.robot)
    assert lr.port == "/dev/ttyACM3" and lr.id == "lab_arm" and lr.use_degrees is True
    assert lr.cameras["front"].height == 480 and lr.cameras["front"].index_or_path == 0
    assert spec_for(cfg.robot) is SO101
