"""Brain outputs of every Python type, for property tests of the safety layer and the control loop.

Importable as ``hostile_outputs`` (like ``synthetic_data``): ``brain_output`` is a hypothesis
strategy over what a broken brain might return, ``ODD`` a list of awkward values, and
``well_formed`` says which joints of an output are usable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

from hardware.safety import real_number
from latent_vla.base.robot_spec import SO101

SPEC = SO101
MALFORMED = {"brain_error", "non_finite", "missing_key"}  # the reasons a malformed output is held for


class FloatRaises:
    """An object whose ``__float__`` raises."""

    def __float__(self) -> float:
        raise RuntimeError("no float for you")


class FloatSubclassRaises(float):
    """A float whose ``__float__`` raises."""

    def __float__(self) -> float:
        raise RuntimeError("no float for you")


class ExplodingMapping(Mapping):
    """A mapping whose every lookup raises."""

    def __getitem__(self, key: Any) -> Any:
        raise RuntimeError("lookup exploded")

    def __iter__(self) -> Iterator[Any]:
        return iter(SPEC.action_keys)

    def __len__(self) -> int:
        return SPEC.num_joints


ODD = [
    None, True, False, np.bool_(False), 10**400, -(10**400), 2**1024, 10**20,
    " 25 ", "25", "nan", b"25", bytearray(b"1"),
    FloatRaises(), FloatSubclassRaises(1.0), complex(1, 0), Decimal("1.5"), Fraction(10**400, 3), Fraction(1, 3),
    np.float32(np.nan), np.float64(-np.inf), np.float16(3), np.int8(-3), np.uint64(2**63), np.longdouble(2.5),
    np.array(5.0), np.array([1.0, 2.0]), np.zeros((2, 2)), [1.0], (1.0,), {"a": 1}, object(), ExplodingMapping(),
]  # fmt: skip
joint_value = st.one_of(
    st.sampled_from(ODD),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-200, 200),
    st.integers(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.floats(width=32, allow_nan=True).map(np.float32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
)
joint_dict = st.fixed_dictionaries({}, optional=dict.fromkeys(SPEC.action_keys, joint_value))
junk_key = st.one_of(st.integers(), st.binary(max_size=3), st.none(), st.booleans(), st.tuples(st.integers()))
brain_output = st.one_of(
    st.sampled_from(ODD),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(joint_value, max_size=7),
    st.lists(joint_value, max_size=7).map(tuple),
    st.lists(st.floats(allow_nan=True), max_size=7).map(np.array),
    st.floats(allow_nan=True).map(np.float64),
    st.dictionaries(junk_key, joint_value, max_size=4),  # a dict with no str keys at all
    st.tuples(joint_dict, st.dictionaries(junk_key, joint_value, max_size=3)).map(lambda d: d[1] | d[0]),
    joint_dict,
)


def well_formed(output: Any) -> list[bool] | None:
    """Per joint, whether ``output`` gives it a finite real number; None when it is not a mapping."""
    if not isinstance(output, Mapping):
        return None
    ok = []
    for key in SPEC.action_keys:
        try:
            value = output.get(key)
        except Exception:
            value = None
        number = real_number(value)
        ok.append(number is not None and math.isfinite(number))
    return ok


def in_documented_range(value: Any, low: float, low_ok: bool, high: float, none_ok: bool, whole: bool = False) -> bool:
    """The documented rule for a numeric setting, written independently of the code under test: a real
    number (no bool), finite, ``> low`` (``>= low`` with ``low_ok``), ``<= high``, whole when ``whole``;
    ``None`` only with ``none_ok``."""
    if value is None:
        return none_ok
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    try:
        x = float(value)
    except OverflowError:
        return False
    in_range = math.isfinite(x) and (x >= low if low_ok else x > low) and x <= high
    return in_range and (not whole or x == int(x))
