"""The one robot spec: names, units, conversions and serialization."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latent_vla.base.robot_spec import SO101, RobotSpec, get_robot_spec


def test_so101_joint_names_match_lerobot() -> None:
    assert SO101.joint_names == [
        "shoulder_pan",
        "shoulder_lift",
        "elbow_flex",
        "wrist_flex",
        "wrist_roll",
        "gripper",
    ]
    assert SO101.action_keys[0] == "shoulder_pan.pos"
    assert SO101.num_joints == 6


def test_limits_follow_the_urdf() -> None:
    assert SO101.upper[0] == pytest.approx(110.0)
    assert SO101.joints[0].sim_upper == pytest.approx(1.91986, abs=1e-4)
    assert SO101.joints[2].sim_upper == pytest.approx(1.69, abs=1e-3)
    # gripper percent 0..100 spans -10..100 degrees
    assert SO101.joints[5].to_sim(0.0) == pytest.approx(math.radians(-10.0))
    assert SO101.joints[5].to_sim(100.0) == pytest.approx(math.radians(100.0))


def test_sim_conversion_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(SO101.lower, SO101.upper, size=(32, 6))
    np.testing.assert_allclose(SO101.from_sim(SO101.to_sim(x)), x, atol=1e-9)


def test_action_dict_round_trip_and_missing_keys() -> None:
    v = SO101.home_vector
    d = SO101.vector_to_action(v)
    np.testing.assert_allclose(SO101.action_to_vector(d), v)
    del d["elbow_flex.pos"]
    with pytest.raises(KeyError, match="elbow_flex.pos"):
        SO101.action_to_vector(d)
    with pytest.raises(ValueError, match="expected 6"):
        SO101.vector_to_action([1.0, 2.0])


def test_serialization_round_trip() -> None:
    assert RobotSpec.from_dict(SO101.to_dict()) == SO101


def test_unknown_spec_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="so101"):
        get_robot_spec("ur5")
