"""Sampling-based planners: CEM, MPPI (TD-MPC2 style), random shooting. numpy, any backend.

They are baselines for the gradient planner and its optional initializers. Every candidate batch is one
array ``(N, H, A)`` evaluated by one batched backend call; candidates are sampled inside the action box
(Gaussian samples are clipped into it *before* they are evaluated, so the cost is always that of the
plan returned). All are anytime: with a budget they stop when the next round would not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planners.base import BasePlanner
from planners.common import Deadline


@dataclass
class SearchResult:
    """What a sampler's search found.

    Attributes:
        mean: the final sampling mean ``(H, A)``.
        elites: the last round's elites ``(K, H, A)``, sorted by cost.
        elite_costs: their objectives ``(K,)``.
        rounds: rounds run.
        best: the best candidate evaluated in any round ``(H, A)``.
        best_cost: its objective.
        best_terms: its named terms (each a ``(1,)`` array).
    """

    mean: np.ndarray
    elites: np.ndarray
    elite_costs: np.ndarray
    rounds: int
    best: np.ndarray
    best_cost: float
    best_terms: dict[str, np.ndarray] = field(default_factory=dict)


class _GaussianSampler(BasePlanner):
    """A Gaussian over plans ``(H, A)`` refined for ``iterations`` rounds of ``samples`` candidates."""

    def __init__(
        self,
        model: Any,
        horizon: int | None = None,
        samples: int = 256,
        elites: int = 32,
        iterations: int = 6,
        init_std: float = 0.5,
        min_std: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if not 1 <= elites <= samples:
            raise ValueError(f"need 1 <= elites <= samples, got elites={elites} samples={samples}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not (init_std > 0 and min_std >= 0):
            raise ValueError(f"need init_std > 0 and min_std >= 0, got {init_std}, {min_std}")
        self.samples, self.elites, self.iterations = int(samples), int(elites), int(iterations)
        self.init_std, self.min_std = float(init_std), float(min_std)

    def _update(self, elites: np.ndarray, costs: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New ``(mean (H, A), std (H, A))`` from ``elites (K, H, A)`` and their ``costs (K,)``."""
        raise NotImplementedError  # abstract: CEMPlanner and MPPIPlanner define it

    def search(
        self,
        start: Any,
        mean: np.ndarray,
        prior: np.ndarray | None,
        deadline: Deadline,
        iterations: int | None = None,
        extra: list[np.ndarray] | None = None,
    ) -> SearchResult:
        """Run the sampler from ``mean (H, A)``; ``extra`` plans ``(H, A)`` compete in the first round."""
        _, half = self.mid_half
        std = np.broadcast_to(self.init_std * half, mean.shape).astype(np.float32)  # (H, A)
        best = SearchResult(mean, mean[None], np.zeros(1, np.float32), 0, mean, np.inf)
        round_ms = 0.0
        for it in range(self.iterations if iterations is None else iterations):
            t0 = deadline.elapsed_ms()
            cand = np.clip(mean + std * self._randn(self.samples, *mean.shape), self.low, self.high)  # (N, H, A)
            cand[0] = np.clip(mean, self.low, self.high)  # the current mean is always a candidate
            if it == 0 and extra:
                cand = np.concatenate([cand, np.stack(extra).astype(np.float32)], axis=0)
            cost, terms, _ = self.evaluate(start, cand, prior)  # (N,)
            order = np.argsort(cost, kind="stable")[: self.elites]
            elites, elite_costs = cand[order], cost[order]
            if elite_costs[0] < best.best_cost:
                i = order[0]
                best.best, best.best_cost = cand[i].copy(), float(cost[i])
                best.best_terms = {k: v[i : i + 1] for k, v in terms.items()}
            mean, std = self._update(elites, elite_costs, mean)
            std = np.maximum(std, self.min_std * half).astype(np.float32)
            best.mean, best.elites, best.elite_costs, best.rounds = mean, elites, elite_costs, it + 1
            round_ms = max(round_ms, deadline.elapsed_ms() - t0)
            if deadline.expired(reserve_ms=round_ms):
                break
        return best

    def _initial_mean(self, warm: np.ndarray | None, pi: np.ndarray | None) -> np.ndarray:
        assert self.horizon is not None
        if warm is not None:
            return warm
        if pi is not None:
            return pi
        mid, _ = self.mid_half
        return np.repeat(mid[None], self.horizon, axis=0)


class CEMPlanner(_GaussianSampler):
    """Cross-entropy method: refit a diagonal Gaussian to the ``elites`` best of ``samples`` plans.

    Args:
        samples: candidates per round ``N``.
        elites: candidates kept per round ``K``.
        iterations: rounds.
        init_std: initial std as a fraction of the half-width of the action box.
        min_std: std floor, same units.
        momentum: weight of the old mean in the update (0 = plain CEM); the std is refit without it.
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``use_policy``, ``seed``).

    Returns from ``plan`` the best candidate evaluated in any round (the mean of each round is one).
    """

    name = "cem"

    def __init__(self, model: Any, horizon: int | None = None, momentum: float = 0.1, **kwargs: Any) -> None:
        super().__init__(model, horizon, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def _update(self, elites: np.ndarray, costs: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new_mean = self.momentum * mean + (1.0 - self.momentum) * elites.mean(0)
        return new_mean.astype(np.float32), elites.std(0)

    def plan(
        self, z0: Any, task: Any, warm_start: Any = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """CEM from the warm start (else the policy's chunk, else the box centre); see ``Planner``."""
        start, warm, deadline = self._start(z0, task, warm_start, budget_ms)
        pi = self._policy_plan(start)
        extra = [p for p in (warm, pi) if p is not None]
        found = self.search(start, self._initial_mean(warm, pi), pi, deadline, extra=extra)
        return found.best, self._info(found.rounds, found.best_cost, deadline, found.best_terms)


class MPPIPlanner(_GaussianSampler):
    """MPPI as in TD-MPC2: elites weighted by ``softmax(-temperature * (cost - min cost))``.

    Args:
        temperature: **inverse** temperature of the elite weights, 1 / cost units (TD-MPC2's
            convention: larger = greedier).
        max_std: std ceiling as a fraction of the half-width of the box.
        policy_samples: candidates drawn around the policy's chunk (first round, when there is a policy).
        **kwargs: see ``CEMPlanner`` (``samples``, ``elites``, ``iterations``, ``init_std``, ``min_std``...).

    Returns from ``plan`` the final weighted mean (MPPI's answer), its cost evaluated once more.
    """

    name = "mppi"

    def __init__(
        self,
        model: Any,
        horizon: int | None = None,
        temperature: float = 0.5,
        max_std: float = 2.0,
        policy_samples: int = 24,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("init_std", max_std)
        super().__init__(model, horizon, **kwargs)
        if not temperature > 0 or not max_std > 0 or policy_samples < 0:
            raise ValueError(f"need temperature > 0, max_std > 0, policy_samples >= 0; got {temperature}, "
                             f"{max_std}, {policy_samples}")  # fmt: skip
        self.temperature, self.max_std, self.policy_samples = float(temperature), float(max_std), int(policy_samples)

    def _update(self, elites: np.ndarray, costs: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = -self.temperature * (costs - costs.min())
        w = np.exp(logits - logits.max())
        w = (w / w.sum())[:, None, None]  # (K, 1, 1)
        new_mean = (w * elites).sum(0)
        std = np.sqrt((w * np.square(elites - new_mean)).sum(0))
        _, half = self.mid_half
        return new_mean.astype(np.float32), np.minimum(std, self.max_std * half)

    def plan(
        self, z0: Any, task: Any, warm_start: Any = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """MPPI from the warm start (else the policy's chunk, else the box centre); see ``Planner``."""
        start, warm, deadline = self._start(z0, task, warm_start, budget_ms)
        pi = self._policy_plan(start)
        extra = [p for p in (warm, pi) if p is not None]
        if pi is not None and self.policy_samples > 0:
            _, half = self.mid_half
            noise = self.min_std * half * self._randn(self.policy_samples, *pi.shape)
            extra += list(np.clip(pi + noise, self.low, self.high))
        found = self.search(start, self._initial_mean(warm, pi), pi, deadline, extra=extra)
        mean = np.clip(found.mean, self.low, self.high).astype(np.float32)
        cost, terms, _ = self.evaluate(start, mean[None], pi)
        return mean, self._info(found.rounds, float(cost[0]), deadline, terms)


class RandomShootingPlanner(BasePlanner):
    """Random shooting: ``samples`` uniform plans in the box per round, keep the best of all rounds.

    Args:
        samples: candidates per round.
        iterations: rounds (more rounds = more samples; with a budget, as many as fit).
        **kwargs: ``BasePlanner`` arguments.
    """

    name = "random"

    def __init__(
        self, model: Any, horizon: int | None = None, samples: int = 512, iterations: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if samples < 1 or iterations < 1:
            raise ValueError(f"samples and iterations must be >= 1, got {samples}, {iterations}")
        self.samples, self.iterations = int(samples), int(iterations)

    def plan(
        self, z0: Any, task: Any, warm_start: Any = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Best of ``iterations x samples`` uniform plans (plus the warm start and policy chunk)."""
        start, warm, deadline = self._start(z0, task, warm_start, budget_ms)
        assert self.horizon is not None
        pi = self._policy_plan(start)
        best_cost, best_plan, best_terms = np.inf, None, {}
        n_done, round_ms = 0, 0.0
        for it in range(self.iterations):
            t0 = deadline.elapsed_ms()
            cand = self.low + (self.high - self.low) * self._rand(self.samples, self.horizon, self.action_dim)
            extra = [p for p in (warm, pi) if p is not None] if it == 0 else []
            cand = np.concatenate([cand, np.stack(extra)]) if extra else cand
            cost, terms, _ = self.evaluate(start, cand, pi)
            i = int(np.argmin(cost))
            if float(cost[i]) < best_cost:
                best_cost, best_plan = float(cost[i]), cand[i].copy()
                best_terms = {k: v[i : i + 1] for k, v in terms.items()}
            n_done += 1
            round_ms = max(round_ms, deadline.elapsed_ms() - t0)
            if deadline.expired(reserve_ms=round_ms):
                break
        assert best_plan is not None
        return best_plan.astype(np.float32), self._info(n_done, best_cost, deadline, best_terms)
