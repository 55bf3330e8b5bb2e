"""Sampling-based planners on the world-model protocol: CEM, MPPI (TD-MPC2 style), random shooting.

They are baselines for the gradient planner and its optional initializers. Every candidate batch is one
tensor ``(N, H, A)`` evaluated by one batched rollout; candidates are sampled inside the action box
(Gaussian samples are clamped into it *before* they are evaluated, so the cost is always that of the
plan returned). All are anytime: with a budget they stop when the next iteration would not fit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from planners.base import BasePlanner
from planners.common import Deadline


class _GaussianSampler(BasePlanner):
    """A Gaussian over plans ``(H, A)`` refined for ``iterations`` rounds of ``samples`` candidates."""

    def __init__(
        self,
        model: Any,
        horizon: int = 16,
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
        self.samples, self.elites, self.iterations = int(samples), int(elites), int(iterations)
        self.init_std, self.min_std = float(init_std), float(min_std)

    def _update(self, elites: Tensor, costs: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        """New ``(mean (H, A), std (H, A))`` from ``elites (K, H, A)`` and their ``costs (K,)``."""
        raise NotImplementedError

    def search(
        self,
        z0: Tensor,
        task: Tensor,
        mean: Tensor,
        prior: Tensor | None,
        deadline: Deadline,
        iterations: int | None = None,
        extra: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, int, dict[str, Tensor]]:
        """Run the sampler from ``mean (H, A)``.

        Args:
            extra: plans ``(H, A)`` added as candidates in the first round (warm start, policy chunk).

        Returns:
            ``mean (H, A)``, ``elites (K, H, A)`` sorted by cost, ``elite_costs (K,)``, the number of
            rounds run, and the named cost terms of the best elite.
        """
        low, high = self._box(z0)
        half = 0.5 * (high - low)
        std = (self.init_std * half).expand_as(mean).clone()  # (H, A)
        its = self.iterations if iterations is None else iterations
        n_done, round_ms = 0, 0.0
        for it in range(its):
            t0 = deadline.elapsed_ms()
            eps = self._randn(self.samples, *mean.shape, like=mean)  # (N, H, A)
            cand = torch.maximum(torch.minimum(mean + std * eps, high), low)
            cand[0] = mean.clamp(low, high)  # the current mean is always a candidate
            if it == 0 and extra:
                cand = torch.cat([cand, torch.stack(extra)], dim=0)
            with torch.no_grad():
                cost, terms = self.objective(self.model, z0, cand, task, prior)  # (N,)
            top = torch.topk(cost, self.elites, largest=False)  # sorted ascending
            elites, elite_costs = cand[top.indices], top.values
            best_terms = {k: v[top.indices[0]] for k, v in terms.items()}
            mean, std = self._update(elites, elite_costs, mean)
            std = torch.maximum(std, self.min_std * half)
            n_done += 1
            round_ms = max(round_ms, deadline.elapsed_ms() - t0)
            if deadline.expired(reserve_ms=round_ms):
                break
        return mean, elites, elite_costs, n_done, best_terms

    def _initial_mean(self, warm_start: Tensor | None, pi: Tensor | None, like: Tensor) -> Tensor:
        assert self.horizon is not None
        if warm_start is not None:
            return warm_start.to(like)
        if pi is not None:
            return pi
        low, high = self._box(like)
        return (0.5 * (low + high)).expand(self.horizon, -1).clone()


class CEMPlanner(_GaussianSampler):
    """Cross-entropy method: refit a diagonal Gaussian to the ``elites`` best of ``samples`` plans.

    Args:
        samples: candidates per round ``N``.
        elites: candidates kept per round ``K``.
        iterations: rounds.
        init_std: initial std as a fraction of the half-width of the action box.
        min_std: std floor, same units.
        momentum: weight of the old mean in the update (0 = plain CEM).
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``use_policy``, ``budget_ms``, ``seed``).

    Returns from ``plan`` the best candidate evaluated (the mean of each round is one of them).
    """

    name = "cem"

    def __init__(self, model: Any, horizon: int = 16, momentum: float = 0.1, **kwargs: Any) -> None:
        super().__init__(model, horizon, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def _update(self, elites: Tensor, costs: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        new_mean = self.momentum * mean + (1.0 - self.momentum) * elites.mean(0)
        return new_mean, elites.std(0, unbiased=False)

    def plan(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None = None, budget_ms: float | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """CEM from the warm start (else the policy's chunk, else the box centre); see ``Planner``."""
        deadline = self._start(z0, warm_start, budget_ms)
        pi = self._policy_plan(z0, task)
        mean = self._initial_mean(warm_start, pi, z0)
        extra = [p for p in (warm_start, pi) if p is not None]
        _, elites, costs, n, terms = self.search(z0, task, mean, pi, deadline, extra=extra)
        return elites[0].clone(), self._info(n, float(costs[0]), deadline, terms)


class MPPIPlanner(_GaussianSampler):
    """MPPI as in TD-MPC2: elites weighted by ``exp(-temperature * (cost - min cost))``.

    Args:
        temperature: inverse temperature of the elite weights (1 / cost units).
        max_std: std ceiling as a fraction of the half-width of the box.
        policy_samples: candidates drawn around the policy's chunk each round (when it has a policy).
        **kwargs: see ``CEMPlanner`` (``samples``, ``elites``, ``iterations``, ``init_std``, ``min_std``...).

    Returns from ``plan`` the final weighted mean (MPPI's answer), its cost evaluated once more.
    """

    name = "mppi"

    def __init__(
        self,
        model: Any,
        horizon: int = 16,
        temperature: float = 0.5,
        max_std: float = 2.0,
        policy_samples: int = 24,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("init_std", max_std)
        super().__init__(model, horizon, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.max_std, self.policy_samples = float(temperature), float(max_std), policy_samples

    def _update(self, elites: Tensor, costs: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        w = torch.softmax(-self.temperature * (costs - costs.min()), dim=0)[:, None, None]  # (K, 1, 1)
        new_mean = (w * elites).sum(0)
        std = ((w * (elites - new_mean).square()).sum(0)).sqrt()
        half = 0.5 * (self.high - self.low).to(std)
        return new_mean, torch.minimum(std, self.max_std * half)

    def plan(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None = None, budget_ms: float | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """MPPI from the warm start (else the policy's chunk, else the box centre); see ``Planner``."""
        deadline = self._start(z0, warm_start, budget_ms)
        pi = self._policy_plan(z0, task)
        mean = self._initial_mean(warm_start, pi, z0)
        extra = [p for p in (warm_start, pi) if p is not None]
        if pi is not None and self.policy_samples > 0:
            low, high = self._box(z0)
            noise = self.min_std * 0.5 * (high - low) * self._randn(self.policy_samples, *pi.shape, like=pi)
            extra += list((pi + noise).clamp(low, high))
        mean, _, _, n, _ = self.search(z0, task, mean, pi, deadline, extra=extra)
        low, high = self._box(z0)
        mean = mean.clamp(low, high)
        with torch.no_grad():
            cost, terms = self.objective(self.model, z0, mean[None], task, pi)
        return mean, self._info(n, float(cost[0]), deadline, {k: v[0] for k, v in terms.items()})


class RandomShootingPlanner(BasePlanner):
    """Random shooting: ``samples`` uniform plans in the box per round, keep the best of all rounds.

    Args:
        samples: candidates per round.
        iterations: rounds (more rounds = more samples; with a budget, as many as fit).
        **kwargs: ``BasePlanner`` arguments.
    """

    name = "random"

    def __init__(self, model: Any, horizon: int = 16, samples: int = 512, iterations: int = 1, **kwargs: Any):
        super().__init__(model, horizon, **kwargs)
        if samples < 1 or iterations < 1:
            raise ValueError(f"samples and iterations must be >= 1, got {samples}, {iterations}")
        self.samples, self.iterations = int(samples), int(iterations)

    def plan(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None = None, budget_ms: float | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Best of ``iterations x samples`` uniform plans (plus the warm start and policy chunk)."""
        deadline = self._start(z0, warm_start, budget_ms)
        assert self.horizon is not None
        pi = self._policy_plan(z0, task)
        low, high = self._box(z0)
        best_cost, best_plan, best_terms = float("inf"), None, {}
        n_done, round_ms = 0, 0.0
        for it in range(self.iterations):
            t0 = deadline.elapsed_ms()
            cand = low + (high - low) * self._rand(self.samples, self.horizon, self.action_dim, like=z0)
            if it == 0:
                extra = [p.to(z0) for p in (warm_start, pi) if p is not None]
                cand = torch.cat([cand, torch.stack(extra)]) if extra else cand
            with torch.no_grad():
                cost, terms = self.objective(self.model, z0, cand, task, pi)
            i = int(cost.argmin())
            if float(cost[i]) < best_cost:
                best_cost, best_plan = float(cost[i]), cand[i].clone()
                best_terms = {k: v[i] for k, v in terms.items()}
            n_done += 1
            round_ms = max(round_ms, deadline.elapsed_ms() - t0)
            if deadline.expired(reserve_ms=round_ms):
                break
        assert best_plan is not None
        return best_plan, self._info(n_done, best_cost, deadline, best_terms)
