"""Goal-image tasks: a world-model wrapper whose cost is the distance to a goal latent (PyTorch).

Planners cannot tell it from an instruction task: plan with ``task = z_goal (1, Z)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class GoalLatentObjective:
    """A world model whose ``cost`` is the distance to a goal latent (goal-image tasks).

    Plan with ``task = z_goal (1, Z)`` (the encoded goal image). ``step`` and ``rollout`` are the wrapped
    model's; ``cost(z, z_goal)`` is the mean squared latent distance (``metric="l2"``) or one minus the
    cosine similarity (``metric="cosine"``). The policy head, when the wrapped model has one, is exposed
    only if ``policy_task`` (the task embedding it was trained with, ``(1, T)``) is given.

    Args:
        model: the wrapped world model.
        metric: ``"l2"`` or ``"cosine"``.
        policy_task: task embedding for the wrapped policy head, or ``None`` to hide the policy.
    """

    def __init__(self, model: Any, metric: str = "l2", policy_task: Tensor | None = None) -> None:
        if metric not in ("l2", "cosine"):
            raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        self.model = model
        self.metric = metric
        self.action_dim: int = int(model.action_dim)
        if policy_task is not None and callable(getattr(model, "policy", None)):
            self._policy_task = policy_task
            self.policy = self._policy

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """Wrapped model's ``step``: ``(B, Z), (B, A) -> (B, Z)``."""
        return self.model.step(z, a)

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """Wrapped model's ``rollout``: ``(B, Z), (B, H, A) -> (B, H, Z)``."""
        return self.model.rollout(z0, actions)

    def cost(self, z: Tensor, task: Tensor) -> Tensor:
        """Distance of ``z (N, Z)`` to the goal latent ``task (1, Z)`` or ``(N, Z)`` -> ``(N,)``, >= 0."""
        if task.shape[-1] != z.shape[-1]:
            raise ValueError(f"goal latent has size {task.shape[-1]}, states have {z.shape[-1]}")
        if self.metric == "l2":
            return (z - task).square().mean(-1)
        return 1.0 - torch.nn.functional.cosine_similarity(z, task.expand_as(z), dim=-1)

    def _policy(self, z: Tensor, task: Tensor) -> Tensor:
        return self.model.policy(z, self._policy_task.expand(z.shape[0], -1))
