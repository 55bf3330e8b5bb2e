"""The shared plumbing of every planner: the backend, bounds, the action prior, seeded noise, info.

numpy only. A planner is built over a PyTorch world model (wrapped in ``TorchBackend``) or over any
:class:`planners.backend.PlanningBackend` (an export bundle's ``BundleBackend``); the algorithm code is
the same for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planners.backend import PlanningBackend, as_backend, check_ensemble, evaluate_objective
from planners.common import Bounds, Deadline, check_inputs, fit_horizon, to_numpy
from planners.objectives import TrajectoryObjective


class BasePlanner:
    """Holds the backend, horizon, objective, bounds and a seeded noise generator.

    Args:
        model: a world model satisfying ``planners.protocol.WorldModelProtocol``, or a planning backend.
        horizon: plan length ``H`` (control ticks); ``None`` = the backend's fixed horizon (a bundle's),
            else :attr:`default_horizon` (``None`` for the policy: its own chunk length).
        objective: trajectory objective; default ``TrajectoryObjective()`` (sum of per-step costs).
        bounds: action box in model units; default ``[-1, 1]``.
        use_policy: use the policy head (when there is one) as a warm start and action prior.
        seed: seed of the planner's own noise generator (plans are reproducible for a given seed).
    """

    name = "base"
    default_horizon: int | None = 16
    """Plan length when neither the caller nor the backend (a bundle's graphs) fixes one."""

    def __init__(
        self,
        model: Any,
        horizon: int | None = None,
        objective: TrajectoryObjective | None = None,
        bounds: Bounds | None = None,
        use_policy: bool = True,
        seed: int = 0,
    ) -> None:
        self.objective = objective if objective is not None else TrajectoryObjective()
        self.backend: PlanningBackend = as_backend(model, self.objective)
        check_ensemble(self.backend, self.objective)  # refused when built, not at the first plan
        fixed = self.backend.horizon
        if horizon is None and self.default_horizon is not None:  # a planner that needs a plan length
            horizon = fixed if fixed is not None else self.default_horizon
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if fixed is not None and horizon is not None and horizon != fixed:
            raise ValueError(f"this backend plans over exactly {fixed} steps (its graphs' horizon), not {horizon}")
        self.horizon = horizon
        self.bounds = bounds if bounds is not None else Bounds()
        self.low, self.high = self.bounds.arrays(self.backend.action_dim)  # (A,), (A,)
        self.use_policy = bool(use_policy) and self.backend.has_policy
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @property
    def action_dim(self) -> int:
        """``A``, the action size of the model."""
        return int(self.backend.action_dim)

    @property
    def model(self) -> Any:
        """The wrapped world model (PyTorch backends) or the backend itself."""
        return getattr(self.backend, "model", self.backend)

    def _start(
        self, z0: Any, task: Any, warm_start: Any, budget_ms: float | None
    ) -> tuple[Any, np.ndarray | None, Deadline]:
        """Validate the inputs, start the clock (``budget_ms``: this call's wall-clock budget, ms, or ``None``)
        and the backend; returns ``(start, warm (H, A), deadline)``."""
        assert self.horizon is not None
        warm = None if warm_start is None else to_numpy(warm_start)
        check_inputs(z0, warm, self.horizon, self.action_dim)
        deadline = Deadline(budget_ms)
        return self.backend.prepare(z0, task), warm, deadline

    @property
    def mid_half(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre and half-width ``(A,)`` of the action box."""
        return 0.5 * (self.low + self.high), 0.5 * (self.high - self.low)

    def _policy_plan(self, start: Any) -> np.ndarray | None:
        """The policy's chunk fitted to the horizon ``(H, A)`` and clamped to the box, or ``None``."""
        if not self.use_policy:
            return None
        assert self.horizon is not None
        chunk = self.backend.policy(start)
        return None if chunk is None else np.clip(fit_horizon(chunk, self.horizon), self.low, self.high)

    def evaluate(
        self, start: Any, actions: np.ndarray, prior: np.ndarray | None, grad: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """This planner's objective of ``actions (N, H, A)`` (see :func:`planners.backend.evaluate_objective`)."""
        return evaluate_objective(self.backend, self.objective, start, actions, prior, grad)

    def _randn(self, *shape: int) -> np.ndarray:
        """Standard normal float32 noise from the planner's generator."""
        return self.rng.standard_normal(shape, dtype=np.float32)

    def _rand(self, *shape: int) -> np.ndarray:
        """Uniform ``[0, 1)`` float32 noise from the planner's generator."""
        return self.rng.random(shape, dtype=np.float32)

    @staticmethod
    def _info(
        iterations: int,
        cost: float,
        deadline: Deadline,
        terms: dict[str, np.ndarray] | None = None,
        index: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        """The ``info`` dict every planner returns (``iterations``, ``cost``, ``plan_ms``, ``terms``);
        ``terms`` are taken at row ``index`` of each ``(N,)`` term."""
        info: dict[str, Any] = {"iterations": int(iterations), "cost": float(cost)}
        info["terms"] = {k: float(v[index]) for k, v in (terms or {}).items()}
        info.update(extra)
        info["plan_ms"] = deadline.elapsed_ms()
        return info
