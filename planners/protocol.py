"""The protocols planners are written against (docs/architecture.md): the world model and the planner.

``WorldModelProtocol`` is what a PyTorch model must offer to be planned over (through
``planners.torch_backend.TorchBackend``); ``planners.backend.PlanningBackend`` is what every planning
algorithm actually calls, with numpy arrays at the boundary, so the torch-free runtime runs the same
algorithms on onnxruntime graphs. ``B`` batch, ``H`` horizon, ``Z`` latent size, ``A`` action size,
``K`` chunk length, ``T`` task-embedding size. This module imports no torch at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # annotations only: the runtime imports this module without torch
    from torch import Tensor


@runtime_checkable
class WorldModelProtocol(Protocol):
    """A differentiable latent dynamics model with a task-conditioned cost (PyTorch).

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
    """What every planner implements. Pure: no logger, env or evaluator."""

    horizon: int | None

    def plan(
        self, z0: Any, task: Any, warm_start: np.ndarray | None = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Plan from ``z0 (1, Z)`` (a numpy array or the backend's tensor): returns ``actions (H, A)``
        float32 numpy and ``info`` with at least ``iterations`` (int), ``cost`` (float, the objective of
        the returned plan) and ``plan_ms``."""
        ...


def has_policy(model: Any) -> bool:
    """True when ``model`` has a callable ``policy`` head."""
    return callable(getattr(model, "policy", None))


def check_model(model: Any) -> None:
    """Raise ``TypeError`` naming what is missing when ``model`` does not satisfy the protocol."""
    missing = [n for n in ("step", "rollout", "cost") if not callable(getattr(model, n, None))]
    if not isinstance(getattr(model, "action_dim", None), int):
        missing.append("action_dim (int)")
    if missing:
        raise TypeError(f"{type(model).__name__} is not a world model for planning: missing {missing}")
