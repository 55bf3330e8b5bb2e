"""The safety layer: unit behaviour and property tests over arbitrary brain outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.kinematics import ArmKinematics
from hardware.safety import EmergencyStopped, SafetyConfig, SafetyLayer, SettingError
from latent_vla.base.robot_spec import KOCH, SO101

SPEC = SO101
DT = 1.0 / 30.0
FK = ArmKinematics.for_spec(SPEC)
START = np.array([0.0, -45.0, 45.0, 30.0, 0.0, 10.0])  # tip inside the workspace


def layer(**kw) -> SafetyLayer:
    s = SafetyLayer(SPEC, SafetyConfig(**kw), fk=FK)
    s.reset(START)
    return s


def test_passes_a_small_safe_move_unchanged() -> None:
    s = layer()
    target = START + np.array([1.0, -1.0, 0.5, 0.0, 2.0, 3.0])
    out = s.filter(SPEC.vector_to_action(target), DT)
    np.testing.assert_allclose(SPEC.action_to_vector(out), target)
    assert s.summary()["interventions"] == 0


def test_clamps_to_joint_limits_and_records_it() -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_step=None, velocity_scale=1.0, workspace=False))
    s.reset(SPEC.upper - 0.1)
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(SPEC.upper + 50), DT))
    np.testing.assert_allclose(out, SPEC.upper)
    assert s.counts["joint_limit"] == SPEC.num_joints
    rec = s.records[0]
    assert rec.reason == "joint_limit" and rec.joint == "shoulder_pan"
    assert rec.before == pytest.approx(SPEC.upper[0] + 50) and rec.after == pytest.approx(SPEC.upper[0])


def test_step_bound_is_min_of_max_step_and_velocity() -> None:
    s = layer(max_step=4.0, velocity_scale=0.5)
    bound, from_vel = s.step_bound(DT)
    expected = np.minimum(4.0, 0.5 * SPEC.max_velocity * DT)
    np.testing.assert_allclose(bound, expected)
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(START + 30.0), DT))
    np.testing.assert_allclose(np.abs(out - START), expected, atol=1e-9)
    assert s.counts["max_step"] + s.counts["velocity"] >= SPEC.num_joints - 1
    assert from_vel.dtype == bool


def test_non_finite_joint_holds_only_that_joint() -> None:
    s = layer()
    target = START + 1.0
    target[2] = math.nan
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(target), DT))
    assert out[2] == START[2]
    np.testing.assert_allclose(np.delete(out, 2), np.delete(START + 1.0, 2))
    assert s.counts["non_finite"] == 1 and s.records[0].joint == "elbow_flex"
    assert s.records[0].to_dict()["before"] == "nan"


def test_missing_key_holds_joint_or_arm() -> None:
    s = layer()
    action = SPEC.vector_to_action(START + 1.0)
    del action["gripper.pos"]
    out = SPEC.action_to_vector(s.filter(action, DT))
    assert out[5] == START[5] and out[0] == START[0] + 1.0
    s2 = layer(hold_on_missing_key=False)
    out2 = SPEC.action_to_vector(s2.filter(action, DT))
    np.testing.assert_allclose(out2, START)
    assert s2.counts["missing_key"] == 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"observation_age_s": 1.0}, "stale_observation"),
        ({"observation_age_s": None}, "stale_observation"),
        ({"brain_late": True}, "brain_late"),
        ({"brain_error": "RuntimeError: boom"}, "brain_error"),
    ],
)
def test_watchdog_holds_last_safe_target(kwargs: dict, reason: str) -> None:
    s = layer()
    first = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(START + 2.0), DT))
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(START + 4.0), DT, **kwargs))
    np.testing.assert_allclose(out, first)
    assert s.counts[reason] == 1


def test_workspace_shortens_a_move_that_leaves_the_box() -> None:
    # Tip near the table; pitching the arm down would push it below z = 0.
    s = SafetyLayer(SPEC, SafetyConfig(max_step=None, velocity_scale=1.0), fk=FK)
    start = np.array([0.0, 0.0, 30.0, 60.0, 0.0, 50.0])  # tip z ~ 0.02 m
    s.reset(start)
    assert FK(start)[2] > 0
    target = start.copy()
    target[1] = 40.0  # shoulder forward/down
    assert FK(target)[2] < 0
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(target), DT))
    assert FK(out)[2] >= -1e-6
    assert start[1] < out[1] < target[1]  # moved part of the way
    assert s.counts["workspace"] == 1


def test_blocked_arm_does_not_wind_up_a_far_target() -> None:
    s = layer(max_step=5.0, max_tracking_error=20.0)
    target = START.copy()
    target[0] = 100.0
    for _ in range(30):  # the arm is stuck at START (measured never moves)
        out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(target), DT, measured=START))
    assert out[0] == pytest.approx(START[0] + 20.0)
    assert s.counts["tracking_error"] > 0 and s.records[-1].reason == "tracking_error"


def test_emergency_stop_refuses_everything() -> None:
    s = layer()
    s.trigger_estop("operator pressed stop")
    with pytest.raises(EmergencyStopped, match="operator"):
        s.filter(SPEC.vector_to_action(START), DT)
    assert s.summary()["estopped"] and s.counts["emergency_stop"] == 1


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="velocity_scale"):
        SafetyConfig(velocity_scale=2.0)
    with pytest.raises(ValueError, match="max_step"):
        SafetyConfig(max_step=0.0)
    with pytest.raises(SettingError, match="unknown safety setting.*max_stpe"):
        SafetyConfig.from_mapping({"max_stpe": 1.0})
    s = SafetyLayer(SPEC)
    with pytest.raises(RuntimeError, match="reset"):
        s.filter(SPEC.vector_to_action(START), DT)
    with pytest.raises(ValueError, match="non-finite"):
        s.reset(np.full(6, np.nan))
    s.reset(START)
    with pytest.raises(ValueError, match="dt"):
        s.filter(SPEC.vector_to_action(START), 0.0)


def test_koch_spec_works_without_fk() -> None:
    s = SafetyLayer(KOCH, SafetyConfig(max_step=5.0))
    s.reset(np.zeros(6))
    out = KOCH.action_to_vector(s.filter(KOCH.vector_to_action(np.full(6, 500.0)), DT))
    assert np.all(out <= 5.0 + 1e-9) and not s.summary()["workspace_checked"]


# -- properties ---------------------------------------------------------------------------------
wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([1e308, -1e308, 1e6, -1e6, 0.0]),
)
actions = st.lists(st.lists(wild, min_size=6, max_size=6), min_size=1, max_size=25)
flags = st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=25, max_size=25)


@settings(max_examples=60, deadline=None)
@given(
    seq=actions,
    flags=flags,
    max_step=st.sampled_from([None, 0.5, 5.0, 30.0]),
    scale=st.sampled_from([0.1, 1.0]),
    measured=st.lists(st.floats(-200, 200), min_size=6, max_size=6),
)
def test_no_brain_output_escapes_limits_step_or_workspace(seq, flags, max_step, scale, measured) -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_step=max_step, velocity_scale=scale, max_tracking_error=10.0), fk=FK)
    prev = s.reset(START)
    bound, _ = s.step_bound(DT)
    for values, (late, stale, drop_key) in zip(seq, flags, strict=False):
        action = SPEC.vector_to_action(np.zeros(6)) | dict(zip(SPEC.action_keys, values, strict=True))
        if drop_key:
            action.pop("wrist_flex.pos")
        out = SPEC.action_to_vector(
            s.filter(action, DT, measured=measured, brain_late=late, observation_age_s=1.0 if stale else 0.0)
        )
        assert np.all(np.isfinite(out))
        assert np.all(out >= SPEC.lower) and np.all(out <= SPEC.upper)
        assert np.all(np.abs(out - prev) <= bound + 1e-9)
        assert FK(out)[2] >= SPEC.workspace_min[2] - 1e-6
        assert s.tip_violation(out) <= 1e-6
        prev = out


@settings(max_examples=40, deadline=None)
@given(amplitude=st.floats(1.0, 1e4), n=st.integers(2, 40))
def test_oscillating_brain_is_rate_limited(amplitude: float, n: int) -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_step=3.0), fk=FK)
    prev = s.reset(START)
    for k in range(n):
        target = START + (amplitude if k % 2 else -amplitude)
        out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(target), DT))
        assert np.all(np.abs(out - prev) <= 3.0 + 1e-9)
        prev = out
