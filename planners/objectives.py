"""Trajectory objectives: what every planner minimizes, as named, weighted terms.

``TrajectoryObjective`` turns a world model's per-state ``cost`` into the cost of an action sequence::

    J(a_1:H) = w_step * sum_t gamma^(t-1) cost(z_t)  +  w_terminal * cost(z_H)
             + w_prior * sum_t ||a_t - prior_t||^2  +  w_smooth * sum_t ||a_t - a_(t-1)||^2

where ``z_1:H = rollout(z0, a_1:H)``. Each term is returned by name (already weighted) so callers
can log them; the planner owns none of this.

``GoalLatentObjective`` adapts a world model to a goal-image task: ``task`` is the goal latent and the
cost is the latent distance to it, so planners cannot tell it from an instruction task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def flat_cost(model: Any, z: Tensor, task: Tensor) -> Tensor:
    """``model.cost`` over a trajectory batch: ``z (N, H, Z)``, ``task (1, T)`` or ``(N, T)`` -> ``(N, H)``.

    The states are flattened to ``(N*H, Z)``; a shared task stays ``(1, T)`` (the protocol's broadcast
    case, so a model can project it once), a per-plan task is repeated to ``(N*H, T)``.
    """
    n, h, zd = z.shape
    t = task.reshape(1, -1) if task.dim() == 1 else task
    if t.shape[0] == 1:
        pass
    elif t.shape[0] == n:
        t = t.repeat_interleave(h, dim=0)
    else:
        raise ValueError(f"task batch {t.shape[0]} matches neither 1 nor the {n} candidate plans")
    c = model.cost(z.reshape(n * h, zd), t)
    return c.reshape(n, h)


@dataclass
class TrajectoryObjective:
    """Weighted sum of named trajectory terms; see the module docstring for the formula.

    Attributes:
        step_weight: weight of the (discounted) sum of per-step costs ``task``.
        terminal_weight: extra weight on the last state's cost ``terminal``.
        discount: per-step discount ``gamma`` of the running cost (1 = none).
        prior_weight: weight of the squared distance to the action prior ``prior`` (the policy's chunk
            when the planner has one, else zeros, the centre of the data's action range).
        smooth_weight: weight of the squared action differences ``smooth`` (a_0 is not included).
    """

    step_weight: float = 1.0
    terminal_weight: float = 0.0
    discount: float = 1.0
    prior_weight: float = 0.0
    smooth_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("step_weight", "terminal_weight", "prior_weight", "smooth_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")

    @property
    def weights(self) -> dict[str, float]:
        """The configured weight of each named term."""
        return {
            "task": self.step_weight,
            "terminal": self.terminal_weight,
            "prior": self.prior_weight,
            "smooth": self.smooth_weight,
        }

    def __call__(
        self, model: Any, z0: Tensor, actions: Tensor, task: Tensor, prior: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cost of ``N`` candidate plans.

        Args:
            model: a world model (``rollout`` and ``cost``).
            z0: start latent ``(1, Z)`` (or ``(N, Z)``).
            actions: candidate plans ``(N, H, A)`` in model units.
            task: task tensor ``(1, T)``, passed through to ``model.cost``.
            prior: action prior ``(H, A)``; ``None`` means zeros.

        Returns:
            ``total (N,)`` and a dict of the weighted terms that have a non-zero weight, each ``(N,)``.
        """
        n, h, _ = actions.shape
        z = model.rollout(z0.expand(n, -1), actions)  # (N, H, Z)
        terms: dict[str, Tensor] = {}
        if self.step_weight or self.terminal_weight:
            c = flat_cost(model, z, task)  # (N, H)
            if self.step_weight:
                disc = self.discount ** torch.arange(h, dtype=c.dtype, device=c.device)  # (H,)
                terms["task"] = self.step_weight * (c * disc).sum(-1)
            if self.terminal_weight:
                terms["terminal"] = self.terminal_weight * c[:, -1]
        if self.prior_weight:
            diff = actions if prior is None else actions - prior
            terms["prior"] = self.prior_weight * diff.square().sum((-2, -1))
        if self.smooth_weight and h > 1:
            terms["smooth"] = self.smooth_weight * actions.diff(dim=-2).square().sum((-2, -1))
        if not terms:
            raise ValueError("every objective weight is zero: nothing to minimize")
        total = torch.stack(list(terms.values())).sum(0)  # (N,)
        return total, terms


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
