"""The safety layer against hostile settings and hostile brain outputs (issue 19, items 1, 2, 4, 8).

Property tests: every float setting of :class:`SafetyConfig` is refused at construction with a
one-line message naming it, or accepted and then behaves; a brain output of any Python type never
makes :meth:`SafetyLayer.filter` raise or emit a non-finite or out-of-limit command.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hostile_outputs import MALFORMED, FloatRaises, brain_output, in_documented_range, well_formed
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.kinematics import ArmKinematics
from hardware.safety import SafetyConfig, SafetyLayer, SettingError
from latent_vla.base.errors import UserError
from latent_vla.base.robot_spec import SO101

SPEC = SO101
DT = 1.0 / 30.0
FK = ArmKinematics.for_spec(SPEC)
START = np.array([0.0, -45.0, 45.0, 30.0, 0.0, 10.0])  # tip inside the workspace

# -- settings -------------------------------------------------------------------------------------
# name -> (low, low allowed, high, None allowed): the documented range of each float setting.
RANGES = {
    "max_step": (0.0, False, math.inf, True),
    "velocity_scale": (0.0, False, 1.0, False),
    "limit_margin": (0.0, True, math.inf, False),
    "max_tracking_error": (0.0, False, math.inf, True),
    "workspace_margin": (0.0, True, math.inf, False),
    "max_observation_age_s": (0.0, False, math.inf, False),
}
HALF_NARROWEST_JOINT_RANGE = float(np.min(SPEC.upper - SPEC.lower)) / 2  # 50 (the gripper's 0..100 %)
HALF_SMALLEST_BOX_SIDE = float(np.min(np.subtract(SPEC.workspace_max, SPEC.workspace_min))) / 2  # 0.25 m

setting_values = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, -1.0, 0.0, -0.0, 5e-324, 1e-3, 0.2, 0.5, 1.0, 2.0, 10.0, 30.0, 49.9, 50.0]
        + [1e6, 1e308, None, True, False, "1.0", " 25 ", b"1", 10**400, 3, np.float32(0.3), np.int64(5)]
        + [np.float64(np.nan), np.bool_(True), Decimal("0.5"), complex(1, 0), [1.0]]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)


def allowed(name: str, value: Any) -> bool:
    """The documented rule, written independently of the code under test."""
    return in_documented_range(value, *RANGES[name])


def assert_one_line_naming(exc: BaseException, name: str) -> None:
    msg = str(exc)
    assert isinstance(exc, UserError) and isinstance(exc, ValueError)
    assert name in msg and "got " in msg and "must be" in msg, msg
    assert "\n" not in msg and len(msg) < 200, msg


@settings(max_examples=300, deadline=None)
@given(
    kw=st.fixed_dictionaries({}, optional=dict.fromkeys(RANGES, setting_values)),
    actions=st.lists(st.lists(st.floats(-500, 500), min_size=6, max_size=6), min_size=1, max_size=6),
)
def test_every_float_setting_is_refused_or_behaves(kw: dict[str, Any], actions: list[list[float]]) -> None:
    bad = [name for name in RANGES if name in kw and not allowed(name, kw[name])]
    if bad:
        with pytest.raises(SettingError) as info:
            SafetyConfig(**kw)
        assert_one_line_naming(info.value, "safety.")
        assert any(f"safety.{name} " in str(info.value) for name in bad), str(info.value)
        return
    config = SafetyConfig(**kw)
    for name in RANGES:  # stored as plain finite floats
        value = getattr(config, name)
        assert value is None or (type(value) is float and math.isfinite(value))
    if config.limit_margin >= HALF_NARROWEST_JOINT_RANGE or config.workspace_margin >= HALF_SMALLEST_BOX_SIDE:
        name = "limit_margin" if config.limit_margin >= HALF_NARROWEST_JOINT_RANGE else "workspace_margin"
        with pytest.raises(SettingError) as info:
            SafetyLayer(SPEC, config, fk=FK)
        assert_one_line_naming(info.value, f"safety.{name} ")
        return
    s = SafetyLayer(SPEC, config, fk=FK)
    prev = s.reset(np.clip(START, s.lower, s.upper))
    bound, _ = s.step_bound(DT)
    for values in actions:
        out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(values), DT, measured=prev))
        assert np.all(np.isfinite(out))
        assert np.all(out >= s.lower) and np.all(out <= s.upper)
        assert np.all(np.abs(out - prev) <= bound + 1e-9)
        assert s.tip_violation(out) <= s.tip_violation(prev) + 1e-6
        prev = out


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"limit_margin": math.nan}, "safety.limit_margin"),  # issue 19's reproducer: the limits became NaN
        ({"workspace_margin": math.nan}, "safety.workspace_margin"),  # froze the arm
        ({"max_observation_age_s": math.inf}, "safety.max_observation_age_s"),
        ({"velocity_scale": -math.inf}, "safety.velocity_scale"),
        ({"max_step": math.nan}, "safety.max_step"),
        ({"max_tracking_error": 0.0}, "safety.max_tracking_error"),
        ({"workspace": "false"}, "safety.workspace"),  # a truthy string would switch the check on
        ({"hold_on_missing_key": 1}, "safety.hold_on_missing_key"),
    ],
)
def test_bad_setting_is_refused_at_construction(kw: dict[str, Any], name: str) -> None:
    with pytest.raises(SettingError) as info:
        SafetyConfig(**kw)
    assert str(info.value).startswith(f"{name} must be")
    assert "\n" not in str(info.value)


def test_margins_that_empty_a_range_name_the_largest_allowed_value() -> None:
    with pytest.raises(SettingError, match=r"safety\.limit_margin must be < 50 robot units .*gripper.*got 50"):
        SafetyLayer(SPEC, SafetyConfig(limit_margin=50))
    with pytest.raises(SettingError, match=r"safety\.workspace_margin must be < 0\.25 m"):
        SafetyLayer(SPEC, SafetyConfig(workspace_margin=0.3), fk=FK)
    SafetyLayer(SPEC, SafetyConfig(workspace=False, workspace_margin=0.3))  # not checked when off
    with pytest.raises(SettingError, match="max_records"):
        SafetyLayer(SPEC, max_records=-1)


# -- brain outputs of every type ------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(outputs=st.lists(brain_output, min_size=1, max_size=5), max_step=st.sampled_from([None, 3.0, 10.0]))
def test_brain_output_of_any_type_never_escapes(outputs: list[Any], max_step: float | None) -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_step=max_step, max_tracking_error=30.0), fk=FK)
    prev = s.reset(START)
    bound, _ = s.step_bound(DT)
    for output in outputs:
        out = SPEC.action_to_vector(s.filter(output, DT, measured=START))  # must not raise
        assert np.all(np.isfinite(out))
        assert np.all(out >= SPEC.lower) and np.all(out <= SPEC.upper)
        assert np.all(np.abs(out - prev) <= bound + 1e-9)
        reasons = {r.reason for r in s.last_tick}
        ok = well_formed(output)
        if ok is None:  # not a mapping: the whole arm holds, as a brain error
            np.testing.assert_array_equal(out, prev)
            assert "brain_error" in reasons
        elif not all(ok):  # the joints it could not read hold; the others may move
            assert reasons & MALFORMED
            np.testing.assert_array_equal(out[~np.asarray(ok)], prev[~np.asarray(ok)])
        prev = out


@pytest.mark.parametrize(
    "output", [1.5, 3, b"\x00", 10**400, FloatRaises(), None, "shoulder_pan.pos", [1.0] * 6, np.zeros(6)]
)
def test_non_mapping_output_holds_the_arm_as_a_brain_error(output: Any) -> None:
    s = SafetyLayer(SPEC, fk=FK)
    s.reset(START)
    out = SPEC.action_to_vector(s.filter(output, DT))
    np.testing.assert_array_equal(out, START)
    assert [r.reason for r in s.last_tick] == ["brain_error"]
    assert type(output).__name__ in s.last_tick[0].detail


@pytest.mark.parametrize(
    "value", [" 25 ", "25", b"25", True, np.bool_(True), 10**400, FloatRaises(), np.array(25.0), Decimal("25"), None]
)
def test_only_real_numbers_are_joint_targets(value: Any) -> None:
    s = SafetyLayer(SPEC, fk=FK)
    s.reset(START)
    action = SPEC.vector_to_action(START + 1.0) | {"shoulder_pan.pos": value}
    out = SPEC.action_to_vector(s.filter(action, DT))
    assert out[0] == START[0]  # held
    np.testing.assert_allclose(out[1:], START[1:] + 1.0)  # the rest moved
    rec = s.last_tick[0]
    assert rec.reason == "non_finite" and rec.joint == "shoulder_pan" and "hold joint" in rec.detail
    assert rec.to_dict()["after"] == START[0]


@pytest.mark.parametrize("value", [np.float32(25.0), np.int16(25), 25, 25.0, Fraction(25), np.float64(25.0)])
def test_numpy_and_python_numbers_are_accepted(value: Any) -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_step=None, velocity_scale=1.0), fk=FK)
    s.reset(START)
    out = s.filter(SPEC.vector_to_action(START) | {"shoulder_pan.pos": value}, 0.1)  # bound 57 degrees
    assert out["shoulder_pan.pos"] == 25.0 and not s.last_tick


# -- observation age (issue 19, item 8) -----------------------------------------------------------
@pytest.mark.parametrize("age", [math.nan, np.float64(np.nan), math.inf, -0.01, "0.0", None, 0.5])
def test_nan_negative_or_non_number_observation_age_is_stale(age: Any) -> None:
    s = SafetyLayer(SPEC, fk=FK)
    s.reset(START)
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(START + 2.0), DT, observation_age_s=age))
    np.testing.assert_array_equal(out, START)
    assert [r.reason for r in s.last_tick] == ["stale_observation"]


def test_fresh_observation_age_passes() -> None:
    s = SafetyLayer(SPEC, fk=FK)
    s.reset(START)
    out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(START + 2.0), DT, observation_age_s=np.float32(0.01)))
    np.testing.assert_allclose(out, START + 2.0)


# -- starting outside the limits (issue 19, item 4) -----------------------------------------------
@given(
    excess=st.lists(st.floats(0.0, 400.0), min_size=6, max_size=6),
    signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=6, max_size=6),
    targets=st.lists(st.lists(st.floats(-500, 500), min_size=6, max_size=6), min_size=1, max_size=40),
    via_filter=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_start_outside_the_limits_walks_back_at_the_step_bound(
    excess: list[float], signs: list[float], targets: list[list[float]], via_filter: bool
) -> None:
    s = SafetyLayer(SPEC, SafetyConfig(max_tracking_error=None, workspace=False))
    measured = np.where(np.asarray(signs) > 0, SPEC.upper, SPEC.lower) + np.asarray(signs) * np.asarray(excess)
    prev = measured if via_filter else s.reset(measured)
    np.testing.assert_array_equal(prev, measured)  # the start is where the arm is, not snapped
    outside = (measured < SPEC.lower) | (measured > SPEC.upper)
    bound, _ = s.step_bound(DT)
    for k, values in enumerate(targets):
        kw = {"measured": measured} if via_filter and k == 0 else {}
        out = SPEC.action_to_vector(s.filter(SPEC.vector_to_action(values), DT, **kw))
        assert np.all(np.isfinite(out))
        assert np.all(np.abs(out - prev) <= bound + 1e-9)  # never a jump, not even the first command
        gap = np.maximum(SPEC.lower - out, 0) + np.maximum(out - SPEC.upper, 0)
        prev_gap = np.maximum(SPEC.lower - prev, 0) + np.maximum(prev - SPEC.upper, 0)
        assert np.all(gap <= prev_gap + 1e-9)  # never further out
        np.testing.assert_allclose(gap, np.maximum(prev_gap - bound, 0), atol=1e-9)  # back in at the bound
        prev = out
    starts = [r for r in s.records if r.reason == "joint_limit" and r.after is None]
    assert [r.joint for r in starts] == [n for n, o in zip(SPEC.joint_names, outside, strict=True) if o]


def test_pan_read_at_180_degrees_moves_at_most_one_bound() -> None:
    """Issue 19's reproducer: pan reads 180, the limit is 110; the first command was 110 (70 degrees)."""
    s = SafetyLayer(SPEC, fk=FK)
    measured = START.copy()
    measured[0] = 180.0
    s.reset(measured)
    bound = s.step_bound(DT)[0][0]  # 9.55 degrees at 30 Hz and velocity_scale 0.5
    out = s.filter(SPEC.vector_to_action(measured), DT, measured=measured)
    assert out["shoulder_pan.pos"] == pytest.approx(180.0 - bound)
    assert s.records[0].reason == "joint_limit" and s.records[0].joint == "shoulder_pan"
    assert "walking back" in s.records[0].detail
