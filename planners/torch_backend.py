"""The PyTorch planning backend: any differentiable world model (``planners.protocol``) as a
:class:`planners.backend.PlanningBackend`, with gradients by autograd, or by the fused kernel.

:func:`weighted_step_costs` is the one definition of the objective's model terms in PyTorch: this
backend evaluates it, and the exporter (``export.graphs``) traces it into the bundle's ONNX graphs.
Only the actions carry gradients: the model's parameters are frozen when the backend is built.

For the default :class:`latent_vla.model.WorldModel` on the CPU the backend computes the same terms
with the fused closed-form kernel (:mod:`latent_vla.base.fused_rollout`, numba) when it is installed:
about 8x faster per gradient iteration, and it scores CEM/MPPI batches too
(``benchmarks/planning_speed.py``). :func:`build_fused` checks the kernel against
:func:`weighted_step_costs` with autograd before the backend uses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latent_vla.base.fused_rollout import FusedRollout, head_kernels
from latent_vla.fused import fused_tensors, fused_unsupported
from planners.backend import check_head
from planners.objectives import TrajectoryObjective
from planners.protocol import check_model, has_policy

log = logging.getLogger(__name__)

FUSED_TOLERANCE = 1e-4
"""Largest difference between the fused kernel and autograd, relative to the largest cost or gradient
entry, that :func:`build_fused` accepts."""


def flat_cost(model: Any, z: Tensor, task: Tensor) -> Tensor:
    """``model.cost`` over a trajectory batch: ``z (N, H, Z)``, ``task (1, T)`` or ``(N, T)`` -> ``(N, H)``.

    The states are flattened to ``(N*H, Z)``; a shared task stays ``(1, T)`` (the protocol's broadcast
    case, so a model can project it once), a per-plan task is repeated to ``(N*H, T)``.
    """
    n, h, zd = z.shape
    t = task.reshape(1, -1) if task.dim() == 1 else task
    if t.shape[0] != 1:  # tested first: a shared task never compares the (possibly symbolic) batch size
        if t.shape[0] != n:
            raise ValueError(f"task batch {t.shape[0]} matches neither 1 nor the {n} candidate plans")
        t = t.repeat_interleave(h, dim=0)
    return model.cost(z.reshape(n * h, zd), t).reshape(n, h)


def weighted_step_costs(
    model: Any, z0: Tensor, actions: Tensor, task: Tensor, weights: Tensor, head: int = 0
) -> Tensor:
    """The objective's model terms per step: ``z0 (1 or B, Z)``, ``actions (B, H, A)``, ``task``,
    ``weights (H,)`` (``TrajectoryObjective.step_weights``) -> ``weights[t] * cost(z_{t+1}) (B, H)``,
    rolled out by dynamics ``head`` (``model.dynamics_heads`` > 1; 0 for any other model)."""
    z = z0.expand(actions.shape[0], -1)  # (B, Z); no branch on the batch size: the exporter traces this
    states = []
    for t in range(actions.shape[1]):
        z = model.step(z, actions[:, t]) if head == 0 else model.step(z, actions[:, t], head)
        states.append(z)
    return flat_cost(model, torch.stack(states, dim=1), task) * weights  # (B, H)


def freeze(model: Any) -> Any:
    """Stop gradients into a ``torch.nn.Module``'s parameters (only actions are optimized); returns it."""
    if isinstance(model, torch.nn.Module):
        model.requires_grad_(False)
    return model


def fused_error(
    model: Any, kernel: FusedRollout, plans: int = 3, horizon: int = 5, seed: int = 0, head: int = 0
) -> float:
    """Largest difference between the kernel of dynamics ``head`` and autograd's costs and action
    gradients on random plans ``(plans, horizon, A)`` from a random latent, relative to the largest
    entry of each."""
    g = torch.Generator().manual_seed(seed)
    z0 = model.normalize_latent(torch.randn(1, model.latent_dim, generator=g))
    task = torch.randn(1, model.task_dim, generator=g)
    actions = (torch.rand(plans, horizon, model.action_dim, generator=g) * 2 - 1).requires_grad_(True)
    weights = torch.rand(horizon, generator=g) + 0.5
    with torch.enable_grad():
        steps = weighted_step_costs(model, z0.detach(), actions, task, weights, head)
        (grad,) = torch.autograd.grad(steps.sum(), actions)
    k_steps, k_grad = kernel.step_costs_and_grad(
        z0.detach().numpy(), kernel.task_projection(task.numpy()), actions.detach().numpy(), weights.numpy()
    )

    def rel(a: np.ndarray, b: torch.Tensor) -> float:
        ref = b.detach().numpy()
        return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-12))

    return max(rel(k_steps, steps), rel(k_grad, grad))


def build_fused(model: Any, required: bool = False) -> list[FusedRollout] | None:
    """Checked kernels for ``model``, one per dynamics head (head 0 first), or ``None`` when the kernel
    cannot compute it (``required``: raise instead).

    Raises:
        ValueError: with ``required``, why there is none (unsupported model, or a mismatch with autograd
            above :data:`FUSED_TOLERANCE`).
    """
    reason = fused_unsupported(model)
    kernels = None
    if reason is None:
        kernels = head_kernels(*fused_tensors(model))
        err = max(fused_error(model, kernel, head=k) for k, kernel in enumerate(kernels))
        if err > FUSED_TOLERANCE:
            reason, kernels = f"it differs from autograd by {err:.2e} (relative; tolerance {FUSED_TOLERANCE})", None
    if reason is not None:
        if required:
            raise ValueError(f"the fused planning kernel cannot run this model: {reason}")
        log.debug("fused planning kernel off: %s", reason)
    return kernels


@dataclass
class TorchStart:
    """One planning call's start: ``z0 (1, Z)`` and ``task (1, T)`` on the model's device; with the
    fused kernel also ``z0`` as a numpy ``(Z,)`` and the cost head's task projection ``(C,)``."""

    z0: Tensor
    task: Tensor
    z0_np: np.ndarray | None = None
    task_proj: np.ndarray | None = None


class TorchBackend:
    """A PyTorch world model as a planning backend (see :class:`planners.backend.PlanningBackend`).

    Args:
        model: a world model (``step``, ``rollout``, ``cost``, ``action_dim``; optionally ``policy``).
        objective: the spec whose model-term weights :meth:`step_costs` applies.
        fused: use the fused kernel (``True``: required, an error when it cannot run this model;
            ``False``: autograd; ``None``: when it can, else autograd).

    Attributes:
        fused: the checked :class:`FusedRollout` of dynamics head 0, or ``None`` (autograd).
        heads: the model's dynamics heads (``model.dynamics_heads``; 1 for a model without the attribute).
    """

    horizon: int | None = None

    def __init__(self, model: Any, objective: TrajectoryObjective, fused: bool | None = None) -> None:
        check_model(model)
        self.model = freeze(model)
        self.objective = objective
        self.action_dim = int(model.action_dim)
        self.has_policy = has_policy(model)
        self._weights: dict[tuple[int, str, torch.dtype], Tensor] = {}
        self.heads = int(getattr(model, "dynamics_heads", 1))
        self._kernels = None if fused is False else build_fused(model, required=bool(fused))
        self.fused = None if self._kernels is None else self._kernels[0]

    def prepare(self, z0: Any, task: Any) -> TorchStart:
        """``z0 (1, Z)`` and ``task`` as detached tensors on the model's device (numpy arrays are converted)."""
        device = self._device()
        z = torch.as_tensor(z0).detach()
        t = torch.as_tensor(task).detach()
        if device is not None:
            z, t = z.to(device), t.to(device)
        if not z.is_floating_point():
            z = z.float()
        start = TorchStart(z, t.to(z.device, z.dtype) if t.is_floating_point() else t.to(z.device))
        if self.fused is not None:
            start.z0_np = z.float().cpu().numpy().reshape(-1)
            start.task_proj = self.fused.task_projection(start.task.float().cpu().numpy())
        return start

    def _device(self) -> torch.device | None:
        """The model's device (its first parameter's or buffer's), or ``None`` for a model without tensors."""
        if not isinstance(self.model, torch.nn.Module):
            return None
        tensor = next(iter(self.model.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.model.buffers()), None)
        return None if tensor is None else tensor.device

    def _step_weights(self, horizon: int, like: Tensor) -> Tensor:
        key = (horizon, str(like.device), like.dtype)
        if key not in self._weights:
            self._weights[key] = torch.as_tensor(self.objective.step_weights(horizon)).to(like)
        return self._weights[key]

    def _actions(self, start: TorchStart, actions: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(actions, dtype=np.float32)).to(start.z0)

    def _kernel(self, start: TorchStart, head: int) -> FusedRollout | None:
        """The fused kernel of dynamics ``head`` when it is on for this start, else ``None`` (autograd)."""
        check_head(head, self.heads)
        return None if self._kernels is None or start.z0_np is None else self._kernels[head]

    def step_costs(self, start: TorchStart, actions: np.ndarray, head: int = 0) -> np.ndarray:
        """Weighted per-step costs ``(N, H)`` of ``actions (N, H, A)`` by dynamics ``head``, no autograd
        (the fused kernel's forward pass when it is on)."""
        kernel = self._kernel(start, head)
        if kernel is not None:
            return kernel.step_costs(
                start.z0_np, start.task_proj, actions, self.objective.step_weights(actions.shape[1])
            )
        a = self._actions(start, actions)
        with torch.no_grad():
            c = weighted_step_costs(self.model, start.z0, a, start.task, self._step_weights(a.shape[1], a), head)
        return c.float().cpu().numpy()

    def step_costs_and_grad(
        self, start: TorchStart, actions: np.ndarray, head: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H)`` costs by dynamics ``head`` and ``d sum_t cost / d actions (N, H, A)`` (rows are
        independent rollouts)."""
        kernel = self._kernel(start, head)
        if kernel is not None:
            w = self.objective.step_weights(actions.shape[1])
            return kernel.step_costs_and_grad(start.z0_np, start.task_proj, actions, w)
        a = self._actions(start, actions).requires_grad_(True)
        with torch.enable_grad():
            c = weighted_step_costs(self.model, start.z0, a, start.task, self._step_weights(a.shape[1], a), head)
            (grad,) = torch.autograd.grad(c.sum(), a)
        return c.detach().float().cpu().numpy(), grad.float().cpu().numpy()

    def policy(self, start: TorchStart) -> np.ndarray | None:
        """The policy's chunk ``(K, A)`` for ``start``, or ``None`` when the model has no policy head."""
        if not self.has_policy:
            return None
        with torch.no_grad():
            chunk = self.model.policy(start.z0, start.task)  # (1, K, A)
        if chunk.dim() != 3 or chunk.shape[0] != 1:
            raise ValueError(f"policy must return (1, K, A) for one latent, got {tuple(chunk.shape)}")
        return chunk[0].float().cpu().numpy()
