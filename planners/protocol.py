"""The world-model protocol: the only thing planners know about a model (docs/architecture.md, 4).

Any differentiable PyTorch object with these methods can be planned over, including the analytic
double integrator in ``tests/planners``. All tensors are float32; ``B`` batch, ``H`` horizon,
``Z`` latent size, ``A`` action size, ``K`` chunk length, ``T`` task-embedding size.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class WorldModelProtocol(Protocol):
    """A differentiable latent dynamics model with a task-conditioned cost.

    Attributes:
        action_dim: ``A``, the size of one action (model space, normalized to ``[-1, 1]``).
    """

    action_dim: int

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One latent transition: ``z (B, Z)``, ``a (B, A)`` -> ``z' (B, Z)``."""
        ...

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """Open-loop rollout: ``z0 (B, Z)``, ``actions (B, H, A)`` -> ``z_1..z_H (B, H, Z)``."""
        ...

    def cost(self, z: Tensor, task: Tensor) -> Tensor:
        """Per-state cost: ``z (N, Z)``, ``task (1, T)`` or ``(N, T)`` -> ``(N,)``, lower is better."""
        ...


@runtime_checkable
class PolicyModel(WorldModelProtocol, Protocol):
    """A world model that also proposes actions (the optional ``policy`` head)."""

    def policy(self, z: Tensor, task: Tensor) -> Tensor:
        """Action chunk: ``z (B, Z)``, ``task (1, T)`` or ``(B, T)`` -> ``(B, K, A)`` in ``[-1, 1]``."""
        ...


@runtime_checkable
class Planner(Protocol):
    """What every planner implements (docs/architecture.md, 5). Pure: no logger, env or evaluator."""

    horizon: int | None

    def plan(
        self,
        z0: Tensor,
        task: Tensor,
        warm_start: Tensor | None = None,
        budget_ms: float | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Plan from ``z0 (1, Z)``: returns ``actions (H, A)`` and ``info`` with at least
        ``iterations`` (int), ``cost`` (float, the objective of the returned plan) and ``plan_ms``."""
        ...


def has_policy(model: Any) -> bool:
    """True when ``model`` has a callable ``policy`` head."""
    return callable(getattr(model, "policy", None))


def freeze(model: Any) -> Any:
    """Stop gradients into the model's parameters (only actions are optimized); returns ``model``.

    Calls ``requires_grad_(False)`` on ``torch.nn.Module`` models; other objects are left as they are.
    """
    if isinstance(model, torch.nn.Module):
        model.requires_grad_(False)
    return model


def check_model(model: Any) -> None:
    """Raise ``TypeError`` naming what is missing when ``model`` does not satisfy the protocol."""
    missing = [n for n in ("step", "rollout", "cost") if not callable(getattr(model, n, None))]
    if not isinstance(getattr(model, "action_dim", None), int):
        missing.append("action_dim (int)")
    if missing:
        raise TypeError(f"{type(model).__name__} is not a world model for planning: missing {missing}")
