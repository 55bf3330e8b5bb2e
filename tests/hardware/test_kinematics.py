"""The safety layer's numpy forward kinematics matches MuJoCo's on the simulator's own scene."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.kinematics import ArmKinematics, SerialChain, default_scene_path
from latent_vla.base.robot_spec import KOCH, SO100, SO101


def test_numpy_fk_matches_mujoco_scene() -> None:
    from sim.scene import SO101Scene

    scene = SO101Scene(SO101)
    fk = ArmKinematics.for_spec(SO101)
    rng = np.random.default_rng(0)
    q = rng.uniform(SO101.lower, SO101.upper, size=(200, 6))
    np.testing.assert_allclose(fk(q), scene.forward_kinematics(q), atol=1e-9)
    np.testing.assert_allclose(fk(q[0]), scene.forward_kinematics(q[0]), atol=1e-9)
    scene.close()


def test_fk_availability_and_errors() -> None:
    assert ArmKinematics.for_spec(SO100) is not None
    assert ArmKinematics.for_spec(KOCH) is None  # no Koch model: the workspace check is off
    with pytest.raises(ValueError, match="no joint"):
        SerialChain.from_mjcf(default_scene_path(), ["shoulder_pan", "nope"])
    with pytest.raises(ValueError, match="no site"):
        SerialChain.from_mjcf(default_scene_path(), ["shoulder_pan"], tip_site="nope")
    with pytest.raises(ValueError, match="does not list"):
        SerialChain.from_mjcf(default_scene_path(), ["shoulder_pan", "shoulder_lift"])
    with pytest.raises(ValueError, match="one chain"):
        SerialChain.from_mjcf(default_scene_path(), ["shoulder_pan", "elbow_flex"])
    chain = ArmKinematics.for_spec(SO101).chain
    with pytest.raises(ValueError, match="expected 5"):
        chain.forward(np.zeros(3))
