"""Build planners by name from a plain config (the Hydra group ``configs/planner/``).

A planner config is a mapping with ``name`` (a registered name such as ``grad``, or an import path
``"package.module:Class"`` for planners outside this repository), an optional ``objective`` mapping
(``TrajectoryObjective`` fields), optional ``bounds`` (``low``/``high``), and the planner's own
constructor arguments (``horizon``, ``iterations``...). Keys in :data:`MPC_KEYS` configure the MPC
loop around the planner (``planners.brains.PlannerBrain`` reads them); ``make_planner`` skips them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

from planners.common import Bounds
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.policy import PolicyPlanner
from planners.protocol import Planner
from planners.sampling import CEMPlanner, MPPIPlanner, RandomShootingPlanner

PLANNERS: dict[str, Callable[..., Planner]] = {
    "grad": GradientPlanner,
    "cem": CEMPlanner,
    "mppi": MPPIPlanner,
    "random": RandomShootingPlanner,
    "policy": PolicyPlanner,
}
"""Registered planner constructors: ``cls(model, **kwargs)``."""


MPC_KEYS = ("temporal_ensemble",)
"""Planner-config keys that belong to the MPC loop, not to the planner's constructor."""


def register_planner(name: str, factory: Callable[..., Planner]) -> None:
    """Register ``factory(model, **kwargs) -> Planner`` under ``name`` (refuses to overwrite)."""
    if name in PLANNERS and PLANNERS[name] is not factory:
        raise ValueError(f"planner {name!r} is already registered as {PLANNERS[name]}")
    PLANNERS[name] = factory


def _resolve(name: str) -> Callable[..., Planner]:
    if name in PLANNERS:
        return PLANNERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import planner {name!r}: {exc}") from exc
    raise ValueError(f"unknown planner {name!r}; registered: {sorted(PLANNERS)} (or use 'module:Class')")


def make_planner(cfg: Mapping[str, Any], model: Any, **overrides: Any) -> Planner:
    """Build a planner for ``model`` from a config mapping; ``overrides`` win over ``cfg``.

    Raises:
        ValueError: unknown planner name.
        TypeError: an argument the planner does not take (the message names it).
    """
    kwargs = {**dict(cfg), **overrides}
    for key in MPC_KEYS:
        kwargs.pop(key, None)
    name = str(kwargs.pop("name", ""))
    factory = _resolve(name)
    if isinstance(kwargs.get("objective"), Mapping):
        kwargs["objective"] = TrajectoryObjective(**dict(kwargs["objective"]))
    if isinstance(kwargs.get("bounds"), Mapping):
        b = dict(kwargs["bounds"])
        kwargs["bounds"] = Bounds(b.get("low", -1.0), b.get("high", 1.0))
    try:
        return factory(model, **kwargs)
    except TypeError as exc:
        raise TypeError(f"planner {name!r}: {exc}") from exc
