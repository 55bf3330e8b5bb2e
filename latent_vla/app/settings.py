"""Checks of single settings of a composed config, with one wording for every subcommand.

Each reads ``key`` (dotted keys reach into groups, e.g. ``safety.velocity_scale``) and returns it
with the right Python type, or raises :class:`~latent_vla.base.errors.UserError` whose message
names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.base.errors import UserError


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def int_setting(cfg: DictConfig, key: str, minimum: int, *, optional: bool = False) -> int | None:
    """``cfg[key]`` as an integer ``>= minimum`` (``None`` allowed when ``optional``).

    Whole floats (``5.0``) are accepted; booleans, fractions and text are not.
    """
    value = _value(cfg, key)
    if value is None and optional:
        return None
    allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
    whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if isinstance(value, bool) or not whole or int(value) < minimum:
        raise UserError(f"{key} must be {allowed}, got {value!r}")
    return int(value)


def positive_number(cfg: DictConfig, key: str, *, optional: bool = False, unit: str = "") -> float | None:
    """``cfg[key]`` as a finite number ``> 0`` (``None`` allowed when ``optional``); ``unit`` goes in the message."""
    value = _value(cfg, key)
    if value is None and optional:
        return None
    allowed = "a finite number > 0" + (f" {unit}" if unit else "") + (" or null" if optional else "")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key} must be {allowed}, got {value!r}")
    return float(value)


def choice_setting(cfg: DictConfig, key: str, choices: Iterable[str]) -> str:
    """``cfg[key]``, which must be one of ``choices``."""
    choices = list(choices)
    value = _value(cfg, key)
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def choice_list(cfg: DictConfig, key: str, choices: Iterable[str]) -> list[str]:
    """``cfg[key]``, a non-empty list whose items are all in ``choices`` (a single name is a list of one)."""
    choices = list(choices)
    value = _value(cfg, key)
    names = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        got = f"unknown {', '.join(map(repr, unknown))}" if unknown else "an empty list"
        raise UserError(f"{key} must list some of {', '.join(choices)}; got {got}")
    return [str(n) for n in names]
