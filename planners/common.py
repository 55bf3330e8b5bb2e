"""Small helpers shared by every planner: action bounds, deadlines, plan shifting, chunk fitting."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Bounds:
    """A per-dimension action box ``[low, high]`` in model units (default ``[-1, 1]``).

    Attributes:
        low: lower bound, a float or one value per action dimension.
        high: upper bound, a float or one value per action dimension.
    """

    low: float | Sequence[float] = -1.0
    high: float | Sequence[float] = 1.0

    def tensors(self, action_dim: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """``(low (A,), high (A,))`` tensors; raises ``ValueError`` on a wrong size or an empty box."""
        low = torch.as_tensor(self.low, dtype=dtype).reshape(-1).expand(action_dim).clone()
        high = torch.as_tensor(self.high, dtype=dtype).reshape(-1).expand(action_dim).clone()
        if not bool((high > low).all()):
            raise ValueError(f"action bounds need high > low everywhere, got low={low} high={high}")
        return low, high


class Deadline:
    """A wall-clock deadline for anytime planning.

    Args:
        budget_ms: milliseconds from now; ``None`` means no deadline.
    """

    def __init__(self, budget_ms: float | None) -> None:
        if budget_ms is not None and budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive or None, got {budget_ms}")
        self.start = time.perf_counter()
        self.budget_ms = budget_ms

    def elapsed_ms(self) -> float:
        """Milliseconds since construction."""
        return (time.perf_counter() - self.start) * 1e3

    def expired(self, reserve_ms: float = 0.0) -> bool:
        """True when fewer than ``reserve_ms`` milliseconds are left (never with no budget)."""
        return self.budget_ms is not None and self.elapsed_ms() + reserve_ms >= self.budget_ms


def shift_plan(plan: Tensor, n: int = 1) -> Tensor:
    """Drop the first ``n`` steps of ``plan (H, A)`` and repeat the last one: the next warm start."""
    if n <= 0:
        return plan.clone()
    n = min(n, plan.shape[0])
    tail = plan[-1:].expand(n, -1)
    return torch.cat([plan[n:], tail], dim=0)


def fit_horizon(chunk: Tensor, horizon: int) -> Tensor:
    """Truncate or pad (repeating the last action) ``chunk (..., K, A)`` to ``(..., horizon, A)``."""
    k = chunk.shape[-2]
    if k >= horizon:
        return chunk[..., :horizon, :]
    pad = chunk[..., -1:, :].expand(*chunk.shape[:-2], horizon - k, chunk.shape[-1])
    return torch.cat([chunk, pad], dim=-2)


def policy_chunk(model: object, z0: Tensor, task: Tensor) -> Tensor:
    """The policy head's chunk for ``z0 (1, Z)`` as ``(K, A)``, computed without autograd."""
    with torch.no_grad():
        chunk = model.policy(z0, task)  # type: ignore[attr-defined]  # (1, K, A)
    if chunk.dim() != 3 or chunk.shape[0] != 1:
        raise ValueError(f"policy must return (1, K, A) for one latent, got {tuple(chunk.shape)}")
    return chunk[0]


def check_inputs(z0: Tensor, warm_start: Tensor | None, horizon: int, action_dim: int) -> None:
    """Raise ``ValueError`` on a ``z0`` that is not ``(1, Z)`` or a warm start that is not ``(H, A)``."""
    if z0.dim() != 2 or z0.shape[0] != 1:
        raise ValueError(f"z0 must be one latent of shape (1, Z), got {tuple(z0.shape)}")
    if warm_start is not None and tuple(warm_start.shape) != (horizon, action_dim):
        raise ValueError(f"warm_start must be ({horizon}, {action_dim}), got {tuple(warm_start.shape)}")
