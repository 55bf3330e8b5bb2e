"""An export bundle as a planning backend (``planners.backend.PlanningBackend``), numpy + onnxruntime.

The planning algorithms of ``planners/`` run on it unchanged: ``rollout_cost.onnx`` gives the weighted
per-step model costs, ``cost_grad.onnx`` their gradient w.r.t. the actions, ``policy.onnx`` the
proposal. When the bundle carries the fused kernel's tensors and numba is installed, the costs and
gradients come from the fused kernel instead (:mod:`latent_vla.base.fused_rollout`, checked against
PyTorch at export; about 3x faster per gradient iteration than ``cost_grad.onnx``), and a model with
several dynamics heads plans with all of them (the objective's ``disagreement`` term) only there.

The weights are the ones baked in at export, recorded in the manifest's
``planner.objective``; a planner asking for other model-term weights is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export.runtime.bundle import Bundle
from export.runtime.errors import BundleError
from latent_vla.base.fused_rollout import FusedRollout
from planners.backend import check_head
from planners.objectives import TrajectoryObjective


@dataclass
class BundleStart:
    """One planning call's start: ``z0 (1, Z)`` and ``task (1, T)`` float32 arrays; with the fused
    kernel also the cost head's task projection ``(C,)``."""

    z0: np.ndarray
    task: np.ndarray
    task_proj: np.ndarray | None = None


class BundleBackend:
    """A :class:`Bundle`'s graphs behind the planning-backend protocol.

    Args:
        bundle: an opened bundle.
        fused: use the fused kernel (``True``: required; ``False``: the ONNX graphs; ``None``: when the
            bundle has it and numba is installed).

    Attributes:
        fused: the :class:`FusedRollout` of dynamics head 0 in use, or ``None`` (ONNX graphs).
        heads: the dynamics heads it can roll out: every head of the bundle with the fused kernel, 1
            with the ONNX graphs (they compute head 0).
    """

    def __init__(self, bundle: Bundle, fused: bool | None = None) -> None:
        if "objective" not in bundle.manifest.planner:
            raise BundleError(f"bundle {bundle.path}: the manifest's planner section lacks 'objective'; re-export it")
        self.bundle = bundle
        self.objective = TrajectoryObjective.from_dict(bundle.manifest.planner.get("objective"))
        self.action_dim = bundle.action_dim
        self.horizon: int | None = bundle.horizon
        self.has_policy = True
        self._kernels = None if fused is False else bundle.fused_rollouts()
        self.fused = None if self._kernels is None else self._kernels[0]
        self.heads = 1 if self._kernels is None else len(self._kernels)
        if fused and self.fused is None:
            raise BundleError(f"bundle {bundle.path}: no fused planning kernel (not exported, or numba missing)")

    def prepare(self, z0: np.ndarray, task: np.ndarray) -> BundleStart:
        """``z0 (1, Z)`` and ``task (1, T)`` as contiguous float32 arrays."""
        start = BundleStart(np.ascontiguousarray(z0, np.float32), np.ascontiguousarray(task, np.float32))
        if self.fused is not None:
            start.task_proj = self.fused.task_projection(start.task)
        return start

    def _tiled(self, start: BundleStart, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(start.z0, (n, start.z0.shape[-1])))

    def _kernel(self, start: BundleStart, head: int) -> FusedRollout | None:
        """The fused kernel of dynamics ``head`` for this start, or ``None`` (the ONNX graphs: head 0)."""
        check_head(head, self.heads)
        return None if self._kernels is None or start.task_proj is None else self._kernels[head]

    def step_costs(self, start: BundleStart, actions: np.ndarray, head: int = 0) -> np.ndarray:
        """Weighted per-step costs ``(N, H)`` by dynamics ``head`` from ``rollout_cost.onnx`` (or the fused
        kernel)."""
        kernel = self._kernel(start, head)
        if kernel is not None:
            return kernel.step_costs(start.z0, start.task_proj, actions, self.objective.step_weights(actions.shape[1]))
        _, steps = self.bundle.rollout_cost(self._tiled(start, actions.shape[0]), actions, start.task)
        return steps

    def step_costs_and_grad(
        self, start: BundleStart, actions: np.ndarray, head: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weighted per-step costs ``(N, H)`` by dynamics ``head`` and their gradient ``(N, H, A)`` from
        ``cost_grad.onnx`` (or the fused kernel)."""
        kernel = self._kernel(start, head)
        if kernel is not None:
            w = self.objective.step_weights(actions.shape[1])
            return kernel.step_costs_and_grad(start.z0, start.task_proj, actions, w)
        _, grad, steps = self.bundle.cost_and_grad(self._tiled(start, actions.shape[0]), actions, start.task)
        return steps, grad

    def policy(self, start: BundleStart) -> np.ndarray:
        """The policy graph's chunk ``(K, A)``."""
        return self.bundle.policy(start.z0, start.task)[0]
