"""Helpers for planner tests (importable as ``planner_helpers``): the objective of plans, in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

from planners.backend import evaluate_objective
from planners.objectives import TrajectoryObjective
from planners.torch_backend import TorchBackend


def objective_of(
    obj: TrajectoryObjective, model: Any, z0: Any, actions: Any, task: Any, prior: Any = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(total (N,), terms)`` of ``actions (N, H, A)`` from ``z0 (1, Z)`` through the PyTorch backend."""
    backend = TorchBackend(model, obj)
    p = None if prior is None else np.asarray(prior, np.float32)
    a = np.asarray(actions, np.float32)
    total, terms, _ = evaluate_objective(backend, obj, backend.prepare(z0, task), a, p)
    return total, terms
