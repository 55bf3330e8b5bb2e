"""``latent-vla run`` end to end: the twin, a mocked real SO-101, confirmation, recording, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from file_import import import_file

from latent_vla.app.cli import main


def run(tmp_path: Path, *overrides: str) -> int:
    return main(["run", f"out={tmp_path / 'out'}", "progress=false", *overrides])


def test_twin_run_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(tmp_path, "robot=twin", "steps=30", f"robot.calibration_dir={tmp_path / 'cal'}", "robot.task=reach")
    assert code == 0
    out = capsys.readouterr().out
    assert "deadline misses" in out and "safety interventions" in out
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert report["loop"]["ticks"] == 30 and report["loop"]["stop_reason"] == "steps"
    assert set(report["loop"]["jitter_ms"]) >= {"p50", "p99"}
    assert "is_success" in report and report["robot"]["cameras"] == ["front", "wrist"]


def test_real_arm_needs_confirmation_without_tty(
    tmp_path: Path, mock_bus, calibration_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["robot=so101", "robot.port=/dev/ttyFAKE", f"robot.calibration_dir={calibration_dir}", "steps=10"]
    assert run(tmp_path, *args) == 1
    assert "refusing to move a real arm" in capsys.readouterr().err
    assert mock_bus.instances == [] or not mock_bus.instances[-1].sync_writes  # nothing moved


def test_real_arm_runs_with_yes(tmp_path: Path, mock_bus, calibration_dir: Path) -> None:
    args = ["robot=so101", "robot.port=/dev/ttyFAKE", f"robot.calibration_dir={calibration_dir}", "steps=10", "fps=100"]
    assert run(tmp_path, *args, "yes=true") == 0
    bus = mock_bus.instances[-1]
    assert len(bus.sync_writes) == 10 and not bus.is_connected and not any(bus.torque.values())
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert report["robot"]["type"] == "so101_follower" and report["loop"]["commands_sent"] == 10


def test_bad_brain_and_bad_settings_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, f"brain={tmp_path / 'nope'}") == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run(tmp_path, f"brain={tmp_path / 'empty'}") == 2
    assert "neither manifest.json" in capsys.readouterr().err
    assert run(tmp_path, "robot=so101", "robot.use_degrees=false", "yes=true") == 2
    assert "use_degrees" in capsys.readouterr().err


@pytest.mark.slow
def test_twin_run_records_a_lerobot_dataset(tmp_path: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    code = run(tmp_path, "robot=twin", "steps=20", f"robot.calibration_dir={tmp_path / 'cal'}", "record=true")
    assert code == 0
    ds = LeRobotDataset("local/latent_vla_run", root=tmp_path / "out" / "dataset")
    assert ds.num_episodes == 1 and ds.num_frames == 20
    frame = ds[5]
    assert frame["observation.state"].shape == (6,) and frame["action"].shape == (6,)
    assert frame["observation.images.front"].shape == (3, 64, 64)
    assert frame["task"] == "push the red cube into the green zone"
    assert run(tmp_path, "robot=twin", "steps=5", "record=true") == 2  # refuses to overwrite


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("y", 0)])
def test_real_arm_asks_on_a_terminal(
    tmp_path: Path, mock_bus, calibration_dir: Path, monkeypatch: pytest.MonkeyPatch, answer: str, code: int
) -> None:
    import latent_vla.app.run_cli as run_cli

    monkeypatch.setattr(run_cli.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(run_cli, "_estop_key_listener", lambda safety, loop: None)  # no stdin thread in tests
    questions = []
    monkeypatch.setattr("builtins.input", lambda q="": questions.append(q) or answer)
    args = ["robot=so101", "robot.port=/dev/ttyFAKE", f"robot.calibration_dir={calibration_dir}", "steps=5", "fps=100"]
    assert run(tmp_path, *args) == code
    assert questions and "Move the arm?" in questions[0]
    moved = bool(mock_bus.instances) and bool(mock_bus.instances[-1].sync_writes)
    assert moved == (answer == "y")


def test_signals_trigger_estop_and_stop(tmp_path: Path) -> None:
    import os
    import signal

    from hardware.brain import ScriptedBrain
    from hardware.control_loop import ControlLoop
    from hardware.safety import SafetyLayer
    from latent_vla.app.run_cli import _install_signals
    from latent_vla.base.robot_spec import SO101

    safety = SafetyLayer(SO101)
    loop = ControlLoop(object(), ScriptedBrain(SO101), safety)
    previous = _install_signals(safety, loop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert loop._stop.is_set() and loop._stop_reason == "SIGTERM"
        os.kill(os.getpid(), signal.SIGUSR1)
        assert safety.estopped and safety.estop_reason == "SIGUSR1"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_missing_serial_port_is_reported(tmp_path: Path, calibration_dir: Path, capsys) -> None:
    # LeRobot's real Feetech bus, a port that does not exist.
    args = ["robot=so101", f"robot.port={tmp_path / 'ttyNOPE'}", f"robot.calibration_dir={calibration_dir}", "yes=true"]
    assert run(tmp_path, *args) == 1
    assert "could not connect to so101_follower" in capsys.readouterr().err


def test_task_null_takes_the_twin_instruction_and_is_refused_on_a_real_arm(tmp_path: Path, capsys) -> None:
    code = run(tmp_path, "robot=twin", "robot.task=reach", "task=null", "steps=3", f"robot.calibration_dir={tmp_path}")
    assert code == 0
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert report["task"] not in ("None", "") and "instruction from the twin" in capsys.readouterr().out
    assert run(tmp_path, "robot=so101", "task=null", "yes=true") == 2
    assert "required for a real arm" in capsys.readouterr().err


def test_unwritable_out_is_refused_before_the_arm_is_built(
    mock_bus, calibration_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run report would be lost after the arm moved: `out=` is checked before anything is built."""
    args = ["run", "robot=so101", "robot.port=/dev/ttyFAKE", f"robot.calibration_dir={calibration_dir}"]
    assert main([*args, "steps=5", "yes=true", "out=/proc/latent_vla/run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out=/proc/latent_vla/run is not writable" in err
    assert mock_bus.instances == []  # no bus was even made, let alone connected


@pytest.mark.parametrize(("override", "fault"), [("steps=-5", "steps"), ("fps=0", "fps"), ("fps=-30", "fps")])
def test_nonsense_budgets_never_reach_the_arm(
    tmp_path: Path, mock_bus, calibration_dir: Path, capsys: pytest.CaptureFixture[str], override: str, fault: str
) -> None:
    args = ["robot=so101", "robot.port=/dev/ttyFAKE", f"robot.calibration_dir={calibration_dir}", "yes=true"]
    assert run(tmp_path, *args, override) == 2  # was: 0 ticks and exit 0 (steps=-5), 30 Hz (fps=0)
    assert capsys.readouterr().err.startswith(f"latent-vla run: {fault} must be")
    assert mock_bus.instances == []


def test_instruction_warning_names_the_token_limit() -> None:
    from latent_vla.app.run_cli import instruction_warning
    from latent_vla.base.text import Tokenizer

    tokenizer = Tokenizer(max_len=24)
    assert instruction_warning(tokenizer, "push the red cube into the green zone") is None  # 8 words + 7 pairs
    assert instruction_warning(None, "word " * 2000) is None  # the scripted brain reads no instruction
    warning = instruction_warning(tokenizer, "push the red cube " * 500)
    assert warning is not None and "3999 tokens" in warning and "first 24" in warning


def _random_checkpoint(run_dir: Path) -> Path:
    """The planner tests' random-weight checkpoint (tests/planners/conftest.py), for plumbing only."""
    module = import_file(Path(__file__).parents[1] / "planners" / "conftest.py", "planners_conftest")
    return module.make_random_checkpoint(run_dir)


def test_long_instruction_is_run_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _random_checkpoint(tmp_path / "ckpt")  # a tokenizer of max_len 12
    long_task = ("push the red cube into the green zone " * 264)[:10_000].strip()
    args = [f"brain={ckpt}", "brain_mode=policy", f"task={long_task}", "steps=2", f"robot.calibration_dir={tmp_path}"]
    assert run(tmp_path, "robot=twin", *args) == 0
    err = capsys.readouterr().err
    assert "latent-vla run: warning: the instruction has" in err and "reads only the first 12" in err
