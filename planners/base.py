"""The shared plumbing of every planner: model checks, bounds, the action prior, seeded noise, info."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from planners.common import Bounds, Deadline, check_inputs, fit_horizon, policy_chunk
from planners.objectives import TrajectoryObjective
from planners.protocol import check_model, freeze, has_policy


class BasePlanner:
    """Holds the model, horizon, objective, bounds and a seeded noise generator.

    The model's parameters are frozen at construction (``requires_grad_(False)``): planners only ever
    optimize actions.

    Args:
        model: a world model satisfying ``planners.protocol.WorldModelProtocol``.
        horizon: plan length ``H`` (control ticks).
        objective: trajectory objective; default ``TrajectoryObjective()`` (sum of per-step costs).
        bounds: action box in model units; default ``[-1, 1]``.
        use_policy: use the model's policy head (when it has one) as a warm start and action prior.
        budget_ms: default wall-clock budget per ``plan`` call in milliseconds (``None``: none).
        seed: seed of the planner's own noise generator (plans are reproducible for a given seed).
    """

    name = "base"

    def __init__(
        self,
        model: Any,
        horizon: int | None = 16,
        objective: TrajectoryObjective | None = None,
        bounds: Bounds | None = None,
        use_policy: bool = True,
        budget_ms: float | None = None,
        seed: int = 0,
    ) -> None:
        check_model(model)
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.model = freeze(model)
        self.horizon = horizon
        self.objective = objective if objective is not None else TrajectoryObjective()
        self.bounds = bounds if bounds is not None else Bounds()
        self.low, self.high = self.bounds.tensors(int(model.action_dim))  # (A,), (A,)
        self.use_policy = bool(use_policy) and has_policy(model)
        self.budget_ms = budget_ms
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def action_dim(self) -> int:
        """``A``, the action size of the model."""
        return int(self.model.action_dim)

    def _start(self, z0: Tensor, warm_start: Tensor | None, budget_ms: float | None) -> Deadline:
        """Validate the inputs and start the clock (``budget_ms`` overrides the default budget)."""
        assert self.horizon is not None
        check_inputs(z0, warm_start, self.horizon, self.action_dim)
        return Deadline(budget_ms if budget_ms is not None else self.budget_ms)

    def _box(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(low (A,), high (A,))`` on ``like``'s device and dtype."""
        return self.low.to(like), self.high.to(like)

    def _policy_plan(self, z0: Tensor, task: Tensor) -> Tensor | None:
        """The policy's chunk fitted to the horizon ``(H, A)`` and clamped to the box, or ``None``."""
        if not self.use_policy:
            return None
        assert self.horizon is not None
        low, high = self._box(z0)
        return fit_horizon(policy_chunk(self.model, z0, task), self.horizon).clamp(low, high)

    def _randn(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise from the planner's generator, on ``like``'s device and dtype."""
        return torch.randn(*shape, generator=self.generator).to(like)

    def _rand(self, *shape: int, like: Tensor) -> Tensor:
        """Uniform ``[0, 1)`` noise from the planner's generator."""
        return torch.rand(*shape, generator=self.generator).to(like)

    @staticmethod
    def _info(
        iterations: int, cost: float, deadline: Deadline, terms: dict[str, Tensor] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """The ``info`` dict every planner returns (``iterations``, ``cost``, ``plan_ms``, ``terms``)."""
        info: dict[str, Any] = {"iterations": int(iterations), "cost": float(cost)}
        info["terms"] = {k: float(v) for k, v in (terms or {}).items()}
        info.update(extra)
        info["plan_ms"] = deadline.elapsed_ms()
        return info
