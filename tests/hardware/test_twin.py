"""The MuJoCo twin under the control loop: features, physics, fault injection, clean shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from lerobot.robots import make_robot_from_config
from lerobot.robots.so_follower import SO101FollowerConfig, SOFollower

from hardware.brain import ScriptedBrain
from hardware.config_twin import LatentVLATwinConfig
from hardware.control_loop import ControlLoop
from hardware.kinematics import ArmKinematics
from hardware.safety import SafetyConfig, SafetyLayer
from hardware.twin import LatentVLATwin
from latent_vla.base.robot_spec import SO101

SPEC = SO101
FPS = 60.0


def twin(tmp_path: Path, **kw) -> LatentVLATwin:
    cfg = LatentVLATwinConfig(calibration_dir=tmp_path / "cal", realtime=False, **kw)
    robot = make_robot_from_config(cfg)
    assert isinstance(robot, LatentVLATwin)
    robot.connect()
    return robot


def loop(robot, brain=None, fps: float = FPS, **kw) -> ControlLoop:
    safety = SafetyLayer(SPEC, SafetyConfig(), fk=ArmKinematics.for_spec(SPEC))
    return ControlLoop(robot, brain or ScriptedBrain(SPEC, fps=fps), safety, fps=fps, **kw)


def test_same_features_as_the_real_so101(tmp_path: Path) -> None:
    real = SOFollower(SO101FollowerConfig(port="/dev/null", calibration_dir=tmp_path / "real"))
    cfg = LatentVLATwinConfig(calibration_dir=tmp_path / "cal")
    sim = LatentVLATwin(cfg)
    assert sim.action_features == real.action_features
    joints = {k: v for k, v in sim.observation_features.items() if v is float}
    assert joints == real.observation_features  # the real one has no cameras configured here
    assert sim.observation_features["front"] == (64, 64, 3)


def test_observation_and_physics_follow_targets(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    obs = robot.get_observation()
    assert set(robot.observation_features) == set(obs)
    assert obs["front"].dtype == np.uint8 and obs["front"].shape == (64, 64, 3)
    target = SPEC.action_to_vector(obs)
    target[0] += 20.0
    for _ in range(60):
        robot.send_action(SPEC.vector_to_action(target))
    q = SPEC.action_to_vector(robot.get_observation())
    assert abs(q[0] - target[0]) < 2.0
    robot.disconnect()


def test_disable_torque_makes_the_arm_limp(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    robot.send_action(SPEC.vector_to_action([0.0, 0.0, 0.0, 0.0, 0.0, 20.0]))
    for _ in range(40):
        robot.send_action({})
    held = SPEC.action_to_vector(robot.get_observation())
    robot.bus.disable_torque()
    for _ in range(40):
        robot.send_action({})
    limp = SPEC.action_to_vector(robot.get_observation())
    assert np.max(np.abs(limp[:4] - held[:4])) > 5.0  # gravity wins without the servos
    robot.disconnect()


def test_short_realtime_run_keeps_rate(tmp_path: Path) -> None:
    cfg = LatentVLATwinConfig(calibration_dir=tmp_path / "cal", realtime=True, task="reach", seed=3)
    robot = make_robot_from_config(cfg)
    robot.connect()
    assert robot.instruction
    start = SPEC.action_to_vector(robot.get_observation())
    report = loop(robot, fps=30.0).run(duration_s=2.0)
    assert report.stop_reason == "duration"
    assert 50 <= report.ticks <= 61
    assert report.deadline_misses <= report.ticks // 5  # shared CI machine: tolerate some misses
    assert report.jitter_ms["p50"] < 5.0
    assert not robot.is_connected and not robot.bus.torque_enabled
    assert report.safety["workspace_checked"]
    del start


@pytest.mark.parametrize(
    ("fault", "count", "counter"),
    [
        ("camera_dropout", 4, "observation_errors"),
        ("serial_timeout", 4, "observation_errors"),
        ("missing_key", 4, "observation_errors"),
        ("send_timeout", 4, "send_errors"),
    ],
)
def test_injected_faults_hold_and_are_reported(tmp_path: Path, fault: str, count: int, counter: str) -> None:
    robot = twin(tmp_path)
    commands: list[dict | None] = []

    def on_tick(tick, obs, cmd):
        commands.append(cmd)
        if tick == 5:
            robot.inject_fault(fault, count)

    report = loop(robot, on_tick=on_tick).run(steps=20)
    assert report.stop_reason == "steps" and report.ticks == 20
    assert getattr(report, counter) == count
    assert robot.fault_counts[fault] == count
    assert any(e["kind"].startswith(counter.split("_")[0]) for e in report.events)
    if counter == "observation_errors":
        held = commands[6 : 6 + count]
        assert all(c == commands[5] for c in held)  # held the last safe target
        assert report.safety["by_reason"]["stale_observation"] == count
    assert not robot.is_connected


class ExplodingBrain(ScriptedBrain):
    def __init__(self, fail_ticks: set[int], **kw) -> None:
        super().__init__(SPEC, **kw)
        self.fail_ticks, self.calls = fail_ticks, 0

    def act(self, observation):
        self.calls += 1
        if self.calls - 1 in self.fail_ticks:
            raise RuntimeError("model diverged")
        return super().act(observation)


def test_brain_exception_holds_and_reports(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    report = loop(robot, ExplodingBrain({3, 4}, fps=FPS)).run(steps=15)
    assert report.stop_reason == "steps" and report.brain_errors == 2
    assert report.safety["by_reason"]["brain_error"] == 2
    assert "model diverged" in report.events[0]["detail"]


def test_brain_that_always_fails_stops_the_run(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    report = loop(robot, ExplodingBrain(set(range(1000)), fps=FPS), max_consecutive_faults=5).run(steps=50)
    assert report.stop_reason == "faults" and report.ticks == 5
    assert not robot.is_connected and not robot.bus.torque_enabled


class SlowBrain(ScriptedBrain):
    def __init__(self, slow_calls: set[int], delay_s: float, **kw) -> None:
        super().__init__(SPEC, **kw)
        self.slow_calls, self.delay_s, self.calls = slow_calls, delay_s, 0

    def act(self, observation):
        self.calls += 1
        if self.calls - 1 in self.slow_calls:
            time.sleep(self.delay_s)
        return super().act(observation)


def test_slow_brain_misses_deadline_and_loop_keeps_rate(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    commands = []
    ctl = loop(robot, SlowBrain({5}, 0.25, fps=30.0), fps=30.0, on_tick=lambda t, o, c: commands.append(c))
    report = ctl.run(steps=20)
    assert report.stop_reason == "steps"
    # 250 ms at 30 Hz: the tick that called it and ~6 more hold while it thinks.
    assert 5 <= report.brain_late <= 10
    assert report.safety["by_reason"]["brain_late"] == report.brain_late
    assert all(c == commands[4] for c in commands[5 : 5 + report.brain_late])
    assert report.deadline_misses <= 3


def test_emergency_stop_from_another_thread(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    ctl = loop(robot)
    ctl.on_tick = lambda tick, obs, cmd: ctl.safety.trigger_estop("e-stop key") if tick == 7 else None
    report = ctl.run(steps=100)
    assert report.stop_reason == "emergency_stop" and report.ticks == 8
    assert report.safety["estopped"] and report.safety["estop_reason"] == "e-stop key"
    assert not robot.is_connected and not robot.bus.torque_enabled


def test_keyboard_interrupt_is_a_clean_stop(tmp_path: Path) -> None:
    robot = twin(tmp_path)

    def interrupt(tick, obs, cmd):
        if tick == 3:
            raise KeyboardInterrupt

    report = loop(robot, on_tick=interrupt).run(steps=100)
    assert report.stop_reason == "interrupted"
    assert not robot.is_connected and not robot.bus.torque_enabled


def test_other_errors_propagate_after_cleanup(tmp_path: Path) -> None:
    robot = twin(tmp_path)

    def crash(tick, obs, cmd):
        if tick == 2:
            raise OSError("disk full")

    ctl = loop(robot, on_tick=crash)
    with pytest.raises(OSError, match="disk full"):
        ctl.run(steps=100)
    assert ctl.report.stop_reason.startswith("error: OSError")
    assert not robot.is_connected and not robot.bus.torque_enabled


def test_random_faults_from_config_never_crash(tmp_path: Path) -> None:
    robot = twin(
        tmp_path, drop_frame_prob=0.1, serial_timeout_prob=0.1, joint_noise_std=0.5, image_noise_std=3.0, seed=1
    )
    report = loop(robot, max_consecutive_faults=50).run(steps=60)
    assert report.stop_reason == "steps"
    assert report.observation_errors + report.send_errors == sum(robot.fault_counts.values()) > 0
    assert report.commands_sent == 60 - report.send_errors


def test_runs_until_stopped_without_a_budget(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    ctl = loop(robot)
    ctl.on_tick = lambda tick, obs, cmd: ctl.request_stop("operator done") if tick == 9 else None
    report = ctl.run()
    assert report.stop_reason == "operator done" and report.ticks == 10
    assert not robot.is_connected


def test_consistently_slow_brain_still_drives_with_checked_late_answers(tmp_path: Path) -> None:
    robot = twin(tmp_path)
    commands = []
    brain = SlowBrain(set(range(1000)), 0.045, fps=30.0)  # every call takes longer than a 33 ms tick
    ctl = loop(robot, brain, fps=30.0, on_tick=lambda t, o, c: commands.append(c))
    report = ctl.run(steps=30)
    assert report.stop_reason == "steps"
    assert report.brain_late_results_used >= 5  # answers one tick late still move the arm
    assert report.brain_late >= 5  # and the ticks in between hold
    distinct = {tuple(c.values()) for c in commands}
    assert len(distinct) >= 5
    assert report.safety["by_reason"].get("stale_observation", 0) == 0  # ~70 ms old < 200 ms
