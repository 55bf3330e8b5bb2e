"""Policy-only "planner": the policy head's action chunk, no search. The reference the planners must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from planners.base import BasePlanner
from planners.common import Deadline, check_inputs, fit_horizon


class PolicyPlanner(BasePlanner):
    """Returns the policy's chunk for ``z0``: ``(K, A)`` as is, or fitted to ``horizon`` when set.

    Its ``info["cost"]`` is the objective of the returned chunk (one batched rollout; over the backend's
    fixed horizon when it has one), so its plans can be compared with the searching planners' on the
    same scale. The warm start is ignored.

    Args:
        model: a world model with a ``policy`` head, or a planning backend with a policy.
        horizon: ``None`` (the policy's own chunk length) or ``H`` to truncate / pad the chunk.
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``seed``).

    Raises:
        TypeError: when there is no policy head.
    """

    name = "policy"
    default_horizon = None  # the policy's own chunk length

    def __init__(self, model: Any, horizon: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("use_policy", None)
        super().__init__(model, horizon, use_policy=True, **kwargs)
        if not self.backend.has_policy:
            raise TypeError(f"{type(self.model).__name__} has no policy head: policy-only planning needs one")

    def plan(
        self, z0: Any, task: Any, warm_start: Any = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The policy's chunk for ``z0 (1, Z)``: ``(K, A)`` or ``(H, A)``; ``warm_start`` is unused."""
        check_inputs(z0, None, 1, self.action_dim)
        deadline = Deadline(None)
        start = self.backend.prepare(z0, task)
        chunk = self.backend.policy(start)  # (K, A)
        assert chunk is not None
        if self.horizon is not None:
            chunk = fit_horizon(chunk, self.horizon)
        scored = chunk if self.backend.horizon is None else fit_horizon(chunk, self.backend.horizon)
        cost, terms, _ = self.evaluate(start, scored[None], scored)
        return chunk.astype(np.float32), self._info(0, float(cost[0]), deadline, terms)
