"""Small numpy helpers shared by every planner: action bounds, deadlines, plan shifting, chunk fitting.

numpy only: the torch-free runtime plans with the same code (docs/architecture.md, floors).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bounds:
    """A per-dimension action box ``[low, high]`` in model units (default ``[-1, 1]``).

    Attributes:
        low: lower bound, a float or one value per action dimension.
        high: upper bound, a float or one value per action dimension.
    """

    low: float | Sequence[float] = -1.0
    high: float | Sequence[float] = 1.0

    def arrays(self, action_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(low (A,), high (A,))`` float32 arrays; raises ``ValueError`` on a wrong size or an empty box."""
        try:
            low = np.broadcast_to(np.asarray(self.low, np.float32).reshape(-1), (action_dim,)).copy()
            high = np.broadcast_to(np.asarray(self.high, np.float32).reshape(-1), (action_dim,)).copy()
        except ValueError:
            raise ValueError(f"action bounds must be one value or {action_dim}, got {self.low}, {self.high}") from None
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
            raise ValueError(f"action bounds need finite high > low everywhere, got low={low} high={high}")
        return low, high


class Deadline:
    """A wall-clock deadline for anytime planning.

    Args:
        budget_ms: milliseconds from now; ``None`` means no deadline.
    """

    def __init__(self, budget_ms: float | None) -> None:
        if budget_ms is not None and not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive or None, got {budget_ms}")
        self.start = time.perf_counter()
        self.budget_ms = budget_ms

    def elapsed_ms(self) -> float:
        """Milliseconds since construction."""
        return (time.perf_counter() - self.start) * 1e3

    def expired(self, reserve_ms: float = 0.0) -> bool:
        """True when fewer than ``reserve_ms`` milliseconds are left (never with no budget)."""
        return self.budget_ms is not None and self.elapsed_ms() + reserve_ms >= self.budget_ms


def to_numpy(x: Any) -> np.ndarray:
    """An array or a (CPU or GPU) torch tensor as a float32 numpy array (no copy when it already is one)."""
    if hasattr(x, "detach"):  # a torch tensor; checked by duck type so this module never imports torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def shift_plan(plan: np.ndarray, n: int = 1) -> np.ndarray:
    """Drop the first ``n`` steps of ``plan (H, A)`` and repeat the last one: the next warm start."""
    plan = np.asarray(plan)
    n = min(max(int(n), 0), plan.shape[0])
    return np.concatenate([plan[n:], np.repeat(plan[-1:], n, axis=0)], axis=0)


def fit_horizon(chunk: np.ndarray, horizon: int) -> np.ndarray:
    """Truncate or pad (repeating the last action) ``chunk (..., K, A)`` to ``(..., horizon, A)``."""
    chunk = np.asarray(chunk)
    k = chunk.shape[-2]
    if k >= horizon:
        return chunk[..., :horizon, :]
    pad = np.repeat(chunk[..., -1:, :], horizon - k, axis=-2)
    return np.concatenate([chunk, pad], axis=-2)


def check_inputs(z0: Any, warm_start: np.ndarray | None, horizon: int, action_dim: int) -> None:
    """Raise ``ValueError`` on a ``z0`` that is not ``(1, Z)`` or a warm start that is not ``(H, A)``."""
    shape = tuple(z0.shape)
    if len(shape) != 2 or shape[0] != 1:
        raise ValueError(f"z0 must be one latent of shape (1, Z), got {shape}")
    if warm_start is not None and tuple(warm_start.shape) != (horizon, action_dim):
        raise ValueError(f"warm_start must be ({horizon}, {action_dim}), got {tuple(warm_start.shape)}")
