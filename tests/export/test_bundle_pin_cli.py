"""``run`` and ``eval`` check a bundle against their robot and against a pinned manifest sha256
(``brain_sha256=``), through ``hardware.brain.load_brain`` and the real command configs."""

from __future__ import annotations

import json
import shutil

import pytest
from export_helpers import INSTRUCTION, edit_manifest

from export.runtime import IntegrityError, RobotMismatchError, sha256_file
from hardware.brain import load_brain
from latent_vla.app import eval_cli
from latent_vla.app.cli import compose, main
from latent_vla.base.errors import UserError
from latent_vla.base.robot_spec import KOCH

WRONG_PIN = "f" * 64


@pytest.fixture
def koch_bundle(bundle_dir, tmp_path):
    """The shared bundle relabelled as a (self-consistent) Koch bundle."""
    dst = tmp_path / "koch_bundle"
    shutil.copytree(bundle_dir, dst)
    edit_manifest(dst, lambda d: d.update(robot_spec=json.loads(json.dumps(KOCH.to_dict()))))
    return dst


def test_load_brain_checks_the_pin(bundle_dir):
    pin = sha256_file(bundle_dir / "manifest.json")
    brain = load_brain(str(bundle_dir), INSTRUCTION, mode="policy", brain_sha256=pin)
    assert brain.bundle.sha256 == pin
    with pytest.raises(IntegrityError, match=f"sha256 {pin}, not the pinned {WRONG_PIN}"):
        load_brain(str(bundle_dir), INSTRUCTION, mode="policy", brain_sha256=WRONG_PIN)
    with pytest.raises(ValueError, match="brain_sha256 pins an ONNX bundle"):
        load_brain("scripted", brain_sha256=pin)


def _run(bundle, out, *extra):
    """``latent-vla run`` on the twin through the command's one error path: the exit code."""
    return main(["run", "robot=twin", f"brain={bundle}", "brain_mode=policy", "steps=2", "progress=false",
                 f"out={out}", *extra])  # fmt: skip


def test_run_refuses_a_wrong_pin_and_drives_with_the_right_one(bundle_dir, tmp_path, capsys):
    assert _run(bundle_dir, tmp_path / "a", f"brain_sha256={WRONG_PIN}") == 2
    assert f"not the pinned {WRONG_PIN}" in capsys.readouterr().err
    assert _run(bundle_dir, tmp_path / "b", f"brain_sha256={sha256_file(bundle_dir / 'manifest.json')}") == 0
    assert json.loads((tmp_path / "b" / "run_report.json").read_text())["loop"]["ticks"] == 2


def test_run_refuses_a_koch_bundle_on_the_so101_twin(koch_bundle, tmp_path, capsys):
    assert _run(koch_bundle, tmp_path / "out") == 2
    assert "bundle joint limits" in capsys.readouterr().err


def _eval_cfg(bundle, out, *extra):
    return compose("eval", [f"bundle={bundle}", "planners=[policy]", "task=reach", "episodes=1", "max_steps=2",
                            "videos=0", "threads=1", "progress=false", f"out={out}", *extra])  # fmt: skip


def test_eval_checks_the_sim_robot_and_the_pin(bundle_dir, koch_bundle, tmp_path):
    with pytest.raises(RobotMismatchError, match="bundle joint limits"):
        eval_cli.main(_eval_cfg(koch_bundle, tmp_path / "koch"))
    with pytest.raises(IntegrityError, match="not the pinned"):
        eval_cli.main(_eval_cfg(bundle_dir, tmp_path / "wrong", f"brain_sha256={WRONG_PIN}"))
    pin = sha256_file(bundle_dir / "manifest.json")
    assert eval_cli.main(_eval_cfg(bundle_dir, tmp_path / "ok", f"brain_sha256={pin}")) == 0
    with pytest.raises(UserError, match="pins an ONNX bundle=, not a ckpt="):
        eval_cli.main(compose("eval", [f"ckpt={tmp_path}", f"brain_sha256={pin}", f"out={tmp_path / 'c'}"]))
