"""Brains: the scripted brain, and ``load_brain`` dispatch to real torch runs and ONNX bundles on the twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.brain import Brain, ScriptedBrain, load_brain
from hardware.config_twin import LatentVLATwinConfig
from hardware.control_loop import ControlLoop
from hardware.kinematics import ArmKinematics
from hardware.safety import SafetyConfig, SafetyLayer
from hardware.twin import LatentVLATwin
from latent_vla.base.robot_spec import KOCH, SO101

INSTRUCTION = "reach the red cube"


def random_run(run_dir: Path, seed: int = 0) -> Path:
    """An untrained small WorldModel checkpoint for the SO-101 (plumbing, not skill)."""
    import torch

    from latent_vla.base.normalize import Normalizer
    from latent_vla.base.text import Tokenizer
    from latent_vla.checkpoint import save_checkpoint
    from latent_vla.model import ModelConfig, WorldModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    states = np.clip(rng.uniform(-40, 40, size=(64, 6)) + SO101.home_vector, SO101.lower, SO101.upper)
    actions = np.clip(states + rng.normal(0, 5.0, size=states.shape), SO101.lower, SO101.upper)  # checked at load
    tokenizer = Tokenizer(num_buckets=256, max_len=12)
    normalizer = Normalizer.from_arrays(states, actions, image_size=(32, 32), camera_names=("front", "wrist"))
    config = ModelConfig(
        camera_names=("front", "wrist"), state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=16,
        chunk_len=4, vocab_size=tokenizer.vocab_size, task_dim=8, word_dim=8, channels=(8, 8),
        image_feat=16, state_feat=16, hidden=32, head_hidden=16,
    )  # fmt: skip
    save_checkpoint(run_dir, WorldModel(config), normalizer, tokenizer, SO101, {"note": "test"}, step=0)
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return random_run(tmp_path_factory.mktemp("hw_run") / "run")


def drive(tmp_path: Path, brain: Brain, steps: int = 12):
    robot = LatentVLATwin(LatentVLATwinConfig(calibration_dir=tmp_path / "cal", realtime=False))
    robot.connect()
    commands = []
    safety = SafetyLayer(SO101, SafetyConfig(), fk=ArmKinematics.for_spec(SO101))
    loop = ControlLoop(robot, brain, safety, fps=30.0, brain_deadline_s=2.0, on_tick=lambda t, o, c: commands.append(c))
    report = loop.run(steps=steps)
    return report, commands


def test_scripted_brain_moves_smoothly_through_waypoints() -> None:
    wp = np.array([[10.0, -20.0, 20.0, 90.0, 0.0, 20.0], [0.0, -20.0, 20.0, 90.0, 0.0, 20.0]])
    brain = ScriptedBrain(SO101, waypoints=wp, speed=60.0, fps=30.0)
    brain.reset("wave")
    obs = SO101.vector_to_action(wp[1])
    targets = [SO101.action_to_vector(brain.act(obs)) for _ in range(20)]
    steps = np.abs(np.diff(np.vstack([wp[1], targets]), axis=0)).max(axis=1)
    assert np.all(steps <= 60.0 / 30.0 + 1e-9)
    assert np.allclose(targets[4], wp[0])  # arrived after 10 deg at 2 deg/tick
    assert np.allclose(targets[9], wp[1])
    assert np.allclose(targets[14], wp[0])  # and cycles
    assert isinstance(brain, Brain)
    with pytest.raises(ValueError, match="waypoints"):
        ScriptedBrain(SO101, waypoints=np.zeros((2, 5)))


def test_load_brain_errors_are_clear(tmp_path: Path) -> None:
    assert isinstance(load_brain("scripted", "x", robot_spec=KOCH), ScriptedBrain)
    with pytest.raises(FileNotFoundError, match="scripted"):
        load_brain(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="neither manifest.json"):
        load_brain(str(tmp_path))
    with pytest.raises(ValueError, match="brain mode"):
        load_brain(str(tmp_path), mode="magic")


@pytest.mark.parametrize("mode", ["policy", "grad"])
def test_torch_run_brains_drive_the_twin(tmp_path: Path, run_dir: Path, mode: str) -> None:
    brain = load_brain(str(run_dir), INSTRUCTION, mode=mode, budget_ms=20.0)
    assert type(brain).__name__ == "PlannerBrain"  # the one latent brain, over a training run
    assert type(brain.planner).__name__ == ("PolicyPlanner" if mode == "policy" else "GradientPlanner")
    report, commands = drive(tmp_path, brain)
    assert report.stop_reason == "steps" and report.brain_errors == 0
    q = np.array([SO101.action_to_vector(c) for c in commands if c is not None])
    assert len(q) == 12 and np.all(np.isfinite(q))
    assert np.all(q >= SO101.lower) and np.all(q <= SO101.upper)


def test_run_for_another_arm_is_refused(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="units"):
        load_brain(str(run_dir), INSTRUCTION, robot_spec=KOCH, mode="policy")
