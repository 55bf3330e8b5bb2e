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


def bool_setting(cfg: DictConfig, key: str) -> bool:
    """``cfg[key]``, which must be ``true`` or ``false`` (text such as ``yes`` is not taken for either)."""
    value = _value(cfg, key)
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}")
    return value


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


def name_list(cfg: DictConfig, key: str, *, optional: bool = False) -> list[str] | None:
    """``cfg[key]``, a non-empty list of non-blank names (a single name is a list of one; ``None`` when optional)."""
    value = _value(cfg, key)
    if value is None and optional:
        return None
    names = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        allowed = "a non-empty list of names" + (" or null" if optional else "")
        raise UserError(f"{key} must be {allowed}, got {value!r}")
    return [str(n).strip() for n in names]


def model_device_settings(cfg: DictConfig, device_key: str, providers_key: str) -> tuple[str, list[str] | None]:
    """``(device, providers)``: a training run's torch device (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and an
    ONNX bundle's onnxruntime execution providers, best first (``None``: the best this onnxruntime offers).

    PyTorch is imported only for a device other than ``cpu`` and onnxruntime only for a provider list,
    so a bundle-only robot without PyTorch passes with the defaults.

    Raises:
        UserError: not a torch device, a CUDA device this machine lacks, a provider list that is empty or
            not names, or a provider this onnxruntime build does not offer (each says which setting).
    """
    device = str(_value(cfg, device_key)).strip()
    if device != "cpu":
        try:
            from latent_vla.devices import resolve_device  # PyTorch
        except ImportError as exc:
            raise UserError(f"{device_key}={device!r} needs PyTorch, which is not installed here: {exc}") from exc
        resolve_device(device, device_key)
    providers = name_list(cfg, providers_key, optional=True)
    if providers is not None:
        from export.runtime.errors import BundleError
        from export.runtime.session import select_providers  # onnxruntime

        try:
            select_providers(providers)
        except BundleError as exc:
            raise UserError(f"{providers_key}=[{','.join(providers)}]: {exc}") from None
    return device, providers
