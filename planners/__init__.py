"""Planning in a world model's latent space: gradient planner, CEM, MPPI, random shooting, policy-only,
MPC, brains and closed-loop evaluation (see docs/planning.md).

Public names are re-exported lazily, so ``import planners`` stays cheap::

    from planners import GradientPlanner, CEMPlanner, MPPIPlanner, MPC, PlannerBrain, make_planner
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, str] = {
    "WorldModelProtocol": "planners.protocol",
    "PolicyModel": "planners.protocol",
    "Planner": "planners.protocol",
    "Bounds": "planners.common",
    "shift_plan": "planners.common",
    "TrajectoryObjective": "planners.objectives",
    "GoalLatentObjective": "planners.objectives",
    "GradientPlanner": "planners.gradient",
    "CEMPlanner": "planners.sampling",
    "MPPIPlanner": "planners.sampling",
    "RandomShootingPlanner": "planners.sampling",
    "PolicyPlanner": "planners.policy",
    "MPC": "planners.mpc",
    "PlannerBrain": "planners.brains",
    "PolicyBrain": "planners.brains",
    "make_planner": "planners.registry",
    "register_planner": "planners.registry",
    "PLANNERS": "planners.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'planners' has no attribute {name!r}")
