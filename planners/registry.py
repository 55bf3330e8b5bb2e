"""Build planners by name from a plain config (the Hydra group ``configs/planner/``).

A planner config is a mapping with ``name`` (a registered name such as ``grad``; code outside this
repository adds its own with :func:`register_planner`), an optional ``objective`` mapping
(``TrajectoryObjective`` fields), optional ``bounds`` (``low``/``high``), and the planner's own
constructor arguments (``horizon``, ``iterations``...). Keys in :data:`MPC_KEYS` configure the MPC
loop around the planner (the brain reads them with :func:`split_mpc_settings`); ``make_planner``
refuses none of them and passes none of them on. numpy only: the runtime builds its planners here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


MPC_KEYS = ("temporal_ensemble", "temporal_window", "budget_ms")
"""Planner-config keys that belong to the MPC loop around the planner, not to its constructor."""


def register_planner(name: str, factory: Callable[..., Planner]) -> None:
    """Register ``factory(model, **kwargs) -> Planner`` under ``name`` (refuses to overwrite)."""
    if name in PLANNERS and PLANNERS[name] is not factory:
        raise ValueError(f"planner {name!r} is already registered as {PLANNERS[name]}")
    PLANNERS[name] = factory


def split_mpc_settings(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(planner settings, MPC settings)`` of a planner config: the keys of :data:`MPC_KEYS` go to the MPC."""
    planner = {k: v for k, v in cfg.items() if k not in MPC_KEYS}
    mpc = {k: cfg[k] for k in MPC_KEYS if k in cfg}
    return planner, mpc


def make_planner(cfg: Mapping[str, Any], model: Any, **overrides: Any) -> Planner:
    """Build a planner for ``model`` (a world model or a planning backend) from a config mapping;
    ``overrides`` win over ``cfg``; MPC keys are ignored here.

    Raises:
        ValueError: unknown planner name, or a bad objective / bounds setting.
        TypeError: an argument the planner does not take (the message names it).
    """
    kwargs, _ = split_mpc_settings({**dict(cfg), **overrides})
    name = str(kwargs.pop("name", ""))
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; registered: {sorted(PLANNERS)}")
    if isinstance(kwargs.get("objective"), Mapping):
        kwargs["objective"] = TrajectoryObjective.from_dict(dict(kwargs["objective"]))
    if isinstance(kwargs.get("bounds"), Mapping):
        b = dict(kwargs["bounds"])
        kwargs["bounds"] = Bounds(b.get("low", -1.0), b.get("high", 1.0))
    try:
        return PLANNERS[name](model, **kwargs)
    except TypeError as exc:
        raise TypeError(f"planner {name!r}: {exc}") from exc
