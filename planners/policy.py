"""Policy-only "planner": the policy head's action chunk, no search. The reference the planners must beat."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from planners.base import BasePlanner
from planners.common import Deadline, fit_horizon, policy_chunk
from planners.protocol import has_policy


class PolicyPlanner(BasePlanner):
    """Returns ``model.policy(z0, task)``: the chunk ``(K, A)`` as is, or fitted to ``horizon`` when set.

    Its ``info["cost"]`` is the objective of the returned chunk (one batched rollout), so its plans can
    be compared with the searching planners' on the same scale. The warm start is ignored.

    Args:
        model: a world model with a ``policy`` head.
        horizon: ``None`` (the policy's own chunk length) or ``H`` to truncate / pad the chunk.
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``seed``).

    Raises:
        TypeError: when the model has no policy head.
    """

    name = "policy"

    def __init__(self, model: Any, horizon: int | None = None, **kwargs: Any) -> None:
        if not has_policy(model):
            raise TypeError(f"{type(model).__name__} has no policy head: policy-only planning needs one")
        kwargs.pop("use_policy", None)
        super().__init__(model, horizon, use_policy=True, **kwargs)

    def plan(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None = None, budget_ms: float | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """The policy's chunk for ``z0 (1, Z)``: ``(K, A)`` or ``(H, A)``; ``warm_start`` is unused."""
        if z0.dim() != 2 or z0.shape[0] != 1:
            raise ValueError(f"z0 must be one latent of shape (1, Z), got {tuple(z0.shape)}")
        deadline = Deadline(None)
        chunk = policy_chunk(self.model, z0, task)  # (K, A)
        if self.horizon is not None:
            chunk = fit_horizon(chunk, self.horizon)
        with torch.no_grad():
            cost, terms = self.objective(self.model, z0, chunk[None], task, chunk)
        return chunk, self._info(0, float(cost[0]), deadline, {k: v[0] for k, v in terms.items()})
