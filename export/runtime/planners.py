"""Planners over an export bundle in numpy + onnxruntime: gradient (Adam, tanh), CEM and MPPI.

They mirror ``planners/`` (docs/architecture.md, section 5) without PyTorch:
``plan(z0 (1, Z), task (1, T), warm_start (H, A) | None, budget_ms, proposal (K, A) | None)``
returns ``(actions (H, A) in [-1, 1], info)`` with ``iterations``, ``cost`` and ``plan_ms`` in ``info``.
Restarts and samples are one batch dimension of one onnxruntime call per iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

_EPS = 1e-6


class CostModel(Protocol):
    """What the planners need from a bundle (``export.runtime.bundle.Bundle`` satisfies it)."""

    horizon: int
    action_dim: int

    def rollout_cost(self, z0: np.ndarray, actions: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def cost_and_grad(self, z0: np.ndarray, actions: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def fit_horizon(chunk: np.ndarray, horizon: int) -> np.ndarray:
    """Truncate or pad (repeating the last action) ``chunk (K, A)`` to ``(horizon, A)``."""
    if chunk.shape[0] >= horizon:
        return chunk[:horizon]
    return np.concatenate([chunk, np.repeat(chunk[-1:], horizon - chunk.shape[0], axis=0)], axis=0)


def shift_plan(plan: np.ndarray, n: int = 1) -> np.ndarray:
    """Drop the first ``n`` steps of ``plan (H, A)`` and repeat the last one: the next warm start."""
    n = min(max(n, 0), plan.shape[0])
    return np.concatenate([plan[n:], np.repeat(plan[-1:], n, axis=0)], axis=0)


def _tile(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(x, (n, x.shape[-1])), dtype=np.float32)


def _check(z0: np.ndarray, task: np.ndarray, warm: np.ndarray | None, horizon: int, adim: int) -> None:
    if z0.ndim != 2 or z0.shape[0] != 1:
        raise ValueError(f"z0 must be one latent (1, Z), got {z0.shape}")
    if task.ndim != 2 or task.shape[0] != 1:
        raise ValueError(f"task must be (1, T), got {task.shape}")
    if warm is not None and warm.shape != (horizon, adim):
        raise ValueError(f"warm_start must be ({horizon}, {adim}), got {warm.shape}")


def _initial_means(horizon: int, adim: int, warm: np.ndarray | None, proposal: np.ndarray | None) -> list[np.ndarray]:
    inits = []
    if warm is not None:
        inits.append(np.clip(warm, -1.0, 1.0))
    if proposal is not None:
        inits.append(np.clip(fit_horizon(np.asarray(proposal, dtype=np.float32), horizon), -1.0, 1.0))
    return inits


@dataclass
class ActionTerms:
    """The action-only terms of ``planners.objectives.TrajectoryObjective``, with analytic gradients.

    Attributes:
        prior_weight: weight of ``sum_t ||a_t - prior_t||^2`` (prior: the policy chunk, else zeros).
        smooth_weight: weight of ``sum_t ||a_t - a_(t-1)||^2``.
    """

    prior_weight: float = 0.0
    smooth_weight: float = 0.0

    def __call__(self, actions: np.ndarray, prior: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``actions (N, H, A)`` -> ``(cost (N,), d cost / d actions (N, H, A))``."""
        cost = np.zeros(actions.shape[0], np.float32)
        grad = np.zeros_like(actions)
        if self.prior_weight:
            diff = actions if prior is None else actions - prior
            cost += self.prior_weight * np.square(diff).sum((1, 2))
            grad += 2.0 * self.prior_weight * diff
        if self.smooth_weight and actions.shape[1] > 1:
            d = np.diff(actions, axis=1)  # (N, H-1, A)
            cost += self.smooth_weight * np.square(d).sum((1, 2))
            grad[:, 1:] += 2.0 * self.smooth_weight * d
            grad[:, :-1] -= 2.0 * self.smooth_weight * d
        return cost, grad


@dataclass
class GradSettings:
    """Gradient planner settings.

    Attributes:
        restarts: R parallel action sequences (the warm start and the policy proposal are two of them).
        iterations: Adam steps per plan (fewer when ``budget_ms`` runs out).
        lr: Adam step size on the unconstrained variables ``u`` (``a = tanh(u)``).
        init_std: std of the random restarts in action space.
        tol: relative improvement of the best cost below which an iteration counts as stalled.
        patience: stop after this many stalled iterations in a row (0 = never stop early).
        seed: seed of the random restarts.
    """

    restarts: int = 8
    iterations: int = 50
    lr: float = 0.1
    init_std: float = 0.3
    tol: float = 1e-4
    patience: int = 10
    seed: int = 0


class GradientPlanner:
    """Adam on ``u`` with ``a = tanh(u)`` in ``[-1, 1]``; cost and d cost / d a come from ``cost_grad.onnx``.

    Args:
        model: a bundle (or anything with ``cost_and_grad`` and ``horizon``/``action_dim``).
        settings: :class:`GradSettings`.
        terms: action-only objective terms added to the graph's cost.
    """

    def __init__(
        self, model: CostModel, settings: GradSettings | None = None, terms: ActionTerms | None = None
    ) -> None:
        self.model = model
        self.settings = settings or GradSettings()
        self.terms = terms or ActionTerms()
        if self.settings.restarts < 1 or self.settings.iterations < 1:
            raise ValueError(f"restarts and iterations must be >= 1, got {self.settings}")
        self.horizon = model.horizon
        self.rng = np.random.default_rng(self.settings.seed)

    def plan(
        self,
        z0: np.ndarray,
        task: np.ndarray,
        warm_start: np.ndarray | None = None,
        budget_ms: float | None = None,
        proposal: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Minimize the trajectory cost from ``z0 (1, Z)``; returns ``(actions (H, A), info)``."""
        start = time.perf_counter()
        s, h, a_dim = self.settings, self.horizon, self.model.action_dim
        _check(z0, task, warm_start, h, a_dim)
        r = s.restarts
        acts = self.rng.normal(0.0, s.init_std, size=(r, h, a_dim)).astype(np.float32)
        for i, init in enumerate(_initial_means(h, a_dim, warm_start, proposal)[:r]):
            acts[i] = init
        u = np.arctanh(np.clip(acts, -1 + 1e-3, 1 - 1e-3)).astype(np.float32)  # (R, H, A)
        zb, tb = _tile(z0, r), task.astype(np.float32)  # the graphs broadcast a (1, T) task
        prior = None if proposal is None else fit_horizon(np.clip(proposal, -1.0, 1.0), h)
        m, v = np.zeros_like(u), np.zeros_like(u)
        b1, b2 = 0.9, 0.999
        best_cost, best = np.inf, acts[0]
        stalled, stopped, it = 0, "iterations", 0
        for it in range(1, s.iterations + 1):
            a = np.tanh(u)  # (R, H, A), strictly inside [-1, 1]
            cost, grad_a = self.model.cost_and_grad(zb, a, tb)  # (R,), (R, H, A)
            extra_cost, extra_grad = self.terms(a, prior)
            cost, grad_a = cost + extra_cost, grad_a + extra_grad
            k = int(np.argmin(cost))
            improved = best_cost - float(cost[k])
            if improved > 0:
                best_cost, best = float(cost[k]), a[k].copy()
            stalled = stalled + 1 if improved <= s.tol * abs(best_cost) else 0
            g = grad_a * (1.0 - a * a)  # chain rule through tanh
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            u = u - s.lr * (m / (1 - b1**it)) / (np.sqrt(v / (1 - b2**it)) + 1e-8)
            if s.patience and stalled >= s.patience:
                stopped = "converged"
                break
            if budget_ms is not None and (time.perf_counter() - start) * 1e3 >= budget_ms:
                stopped = "budget"
                break
        info = {
            "iterations": it,
            "cost": best_cost,
            "stopped": stopped,
            "plan_ms": (time.perf_counter() - start) * 1e3,
        }
        return best.astype(np.float32), info


@dataclass
class SamplingSettings:
    """CEM / MPPI settings.

    Attributes:
        samples: N action sequences evaluated per iteration (one batched ``rollout_cost`` call).
        iterations: refits of the sampling distribution per plan.
        elites: CEM: best samples the Gaussian is refit to.
        init_std: initial per-step std in action space.
        min_std: floor of the std.
        momentum: weight of the old mean/std in each refit.
        temperature: MPPI: softmax temperature on costs (cost units).
        seed: sampling seed.
    """

    samples: int = 256
    iterations: int = 4
    elites: int = 32
    init_std: float = 0.5
    min_std: float = 0.05
    momentum: float = 0.1
    temperature: float = 0.5
    seed: int = 0


class _SamplingPlanner:
    weighting = "cem"

    def __init__(
        self, model: CostModel, settings: SamplingSettings | None = None, terms: ActionTerms | None = None
    ) -> None:
        self.model = model
        self.settings = settings or SamplingSettings()
        self.terms = terms or ActionTerms()
        s = self.settings
        if s.samples < 2 or s.iterations < 1 or not 1 <= s.elites <= s.samples:
            raise ValueError(f"need samples >= 2, iterations >= 1 and 1 <= elites <= samples, got {s}")
        self.horizon = model.horizon
        self.rng = np.random.default_rng(s.seed)

    def _refit(self, acts: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        if self.weighting == "cem":
            elite = acts[np.argsort(cost)[: s.elites]]  # (E, H, A)
            return elite.mean(0), elite.std(0)
        w = np.exp(-(cost - cost.min()) / max(s.temperature, _EPS))
        w = w / w.sum()  # (N,)
        mean = np.einsum("n,nha->ha", w, acts)
        std = np.sqrt(np.einsum("n,nha->ha", w, (acts - mean) ** 2))
        return mean, std

    def plan(
        self,
        z0: np.ndarray,
        task: np.ndarray,
        warm_start: np.ndarray | None = None,
        budget_ms: float | None = None,
        proposal: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample, score with ``rollout_cost.onnx``, refit; returns ``(actions (H, A), info)``."""
        start = time.perf_counter()
        s, h, a_dim = self.settings, self.horizon, self.model.action_dim
        _check(z0, task, warm_start, h, a_dim)
        inits = _initial_means(h, a_dim, warm_start, proposal)
        mean = inits[0] if inits else np.zeros((h, a_dim), np.float32)
        std = np.full((h, a_dim), s.init_std, np.float32)
        zb, tb = _tile(z0, s.samples), task.astype(np.float32)
        prior = None if proposal is None else fit_horizon(np.clip(proposal, -1.0, 1.0), h)
        best_cost, best = np.inf, mean
        it = 0
        for it in range(1, s.iterations + 1):
            noise = self.rng.standard_normal((s.samples, h, a_dim)).astype(np.float32)
            acts = np.clip(mean + std * noise, -1.0, 1.0).astype(np.float32)  # (N, H, A)
            acts[0] = mean  # the current mean always competes
            if it == 1:  # the policy proposal competes in the first round
                for j, init in enumerate(inits[1:], start=1):
                    acts[j] = init
            cost, _ = self.model.rollout_cost(zb, acts, tb)
            cost = cost + self.terms(acts, prior)[0]
            k = int(np.argmin(cost))
            if cost[k] < best_cost:
                best_cost, best = float(cost[k]), acts[k].copy()
            new_mean, new_std = self._refit(acts, cost)
            mean = s.momentum * mean + (1 - s.momentum) * new_mean
            std = np.maximum(s.momentum * std + (1 - s.momentum) * new_std, s.min_std)
            if budget_ms is not None and (time.perf_counter() - start) * 1e3 >= budget_ms:
                break
        info = {"iterations": it, "cost": best_cost, "plan_ms": (time.perf_counter() - start) * 1e3}
        return best.astype(np.float32), info


class CEMPlanner(_SamplingPlanner):
    """Cross-entropy method: refit a diagonal Gaussian to the ``elites`` cheapest sequences."""

    weighting = "cem"


class MPPIPlanner(_SamplingPlanner):
    """MPPI: refit to the softmax(-cost / temperature)-weighted mean of all samples."""

    weighting = "mppi"


def settings_from_dict(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build a settings dataclass from a dict, refusing unknown keys (``where`` names the source)."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown planner settings {unknown}; valid: {sorted(known)}")
    return cls(**data)
