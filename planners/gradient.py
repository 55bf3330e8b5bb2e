"""Gradient planning: optimize action sequences through the differentiable latent rollout.

``R`` restarts are one tensor ``u (R, H, A)``; the actions are ``a = mid + half * tanh(u)``, so they
stay strictly inside the box ``[low, high]`` without clipping. Restarts start from the warm start
(the previous plan, shifted by the caller), the policy head's chunk, optionally the elites of a few
CEM / MPPI rounds, and perturbations of those. Adam minimizes the trajectory objective; the best plan
seen so far is kept, so the planner is anytime: when the wall-clock budget is spent (or the best cost
stops improving) it returns that plan. Only ``u`` carries gradients; the model is frozen and the
caller encodes the observation once, without autograd.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from planners.base import BasePlanner
from planners.common import Deadline
from planners.sampling import CEMPlanner, MPPIPlanner

_EDGE = 1e-3  # initial plans are pulled this far inside the box before atanh


class _Optimizer:
    """Adam (Kingma & Ba, 2015) or SGD with Nesterov momentum 0.9 on one tensor, in place.

    Written out instead of ``torch.optim`` because constructing a ``torch.optim.Optimizer`` imports
    ``torch._dynamo`` on first use (measured 2.5-2.9 s here): that would land inside the first control
    tick. Six tensor ops per step, the same update rule as ``torch.optim.Adam`` / ``SGD(nesterov=True)``.
    """

    def __init__(self, u: Tensor, kind: str, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.u, self.kind, self.lr, self.betas, self.t = u, kind, lr, betas, 0
        self.m = torch.zeros_like(u)  # first moment (Adam) or momentum buffer (SGD)
        self.v = torch.zeros_like(u)  # second moment (Adam)

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        """Update ``u`` in place with ``grad`` (same shape)."""
        self.t += 1
        if self.kind == "sgd":
            self.m.mul_(0.9).add_(grad)
            self.u.sub_(self.lr * (grad + 0.9 * self.m))
            return
        b1, b2 = self.betas
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v / (1 - b2**self.t)).sqrt_().add_(1e-8)
        self.u.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))


class GradientPlanner(BasePlanner):
    """Batched-restart gradient descent on ``(R, H, A)`` action sequences.

    Args:
        model: a world model (``planners.protocol.WorldModelProtocol``), optionally with ``policy``.
        horizon: plan length ``H``.
        restarts: parallel restarts ``R`` (a tensor dimension).
        iterations: maximum optimizer steps per ``plan`` call.
        lr: learning rate in ``u`` units (the pre-tanh parameter): near the box centre one step moves an
            action by about ``lr * half-width``. ``configs/planner/grad.yaml`` uses 0.2 for the ``[-1, 1]`` box.
        optimizer: ``"adam"`` (default) or ``"sgd"`` (Nesterov momentum 0.9).
        init_std: spread of the perturbed restarts, fraction of the box half-width.
        init: ``"none"``, ``"cem"`` or ``"mppi"``: seed the restarts with the elites of a sampler.
        init_iterations: sampler rounds when ``init`` is not ``"none"``.
        init_samples: sampler candidates per round.
        langevin_std: std of Gaussian noise added to ``u`` after each step, scaled by ``sqrt(lr)`` and
            annealed linearly to 0 over ``iterations`` (0 = plain descent).
        tol: relative improvement of the best cost below which an iteration counts as stalled.
        patience: stop after this many stalled iterations in a row (0 = never stop early).
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``use_policy``, ``budget_ms``, ``seed``).
    """

    name = "grad"

    def __init__(
        self,
        model: Any,
        horizon: int = 16,
        restarts: int = 8,
        iterations: int = 50,
        lr: float = 0.1,
        optimizer: str = "adam",
        init_std: float = 0.3,
        init: str = "none",
        init_iterations: int = 2,
        init_samples: int = 64,
        langevin_std: float = 0.0,
        tol: float = 1e-4,
        patience: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if restarts < 1 or iterations < 1:
            raise ValueError(f"restarts and iterations must be >= 1, got {restarts}, {iterations}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if init not in ("none", "cem", "mppi"):
            raise ValueError(f"init must be 'none', 'cem' or 'mppi', got {init!r}")
        self.restarts, self.iterations, self.lr = int(restarts), int(iterations), float(lr)
        self.optimizer, self.init_std, self.init = optimizer, float(init_std), init
        self.langevin_std, self.tol, self.patience = float(langevin_std), float(tol), int(patience)
        self.sampler: CEMPlanner | MPPIPlanner | None = None
        if init != "none":
            cls = CEMPlanner if init == "cem" else MPPIPlanner
            elites = max(1, min(restarts, init_samples))
            self.sampler = cls(
                model, horizon, samples=init_samples, elites=elites, iterations=init_iterations,
                objective=self.objective, bounds=self.bounds, use_policy=False, seed=kwargs.get("seed", 0),
            )  # fmt: skip

    # -- initialization ------------------------------------------------------------------------
    def _initial_plans(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None, pi: Tensor | None, deadline: Deadline
    ) -> tuple[Tensor, int]:
        """``R`` starting plans ``(R, H, A)`` inside the box, and the sampler rounds spent."""
        assert self.horizon is not None
        low, high = self._box(z0)
        mid, half = 0.5 * (low + high), 0.5 * (high - low)
        bases = [p.to(z0) for p in (warm_start, pi) if p is not None]
        rounds = 0
        if self.sampler is not None:
            start = bases[0] if bases else mid.expand(self.horizon, -1)
            _, elites, _, rounds, _ = self.sampler.search(z0, task, start, pi, deadline, extra=bases)
            bases = bases + list(elites[: self.restarts - len(bases)])
        bases = bases[: self.restarts]
        n_rand = self.restarts - len(bases)
        centres = torch.stack(bases) if bases else mid.expand(1, self.horizon, -1)
        idx = torch.arange(n_rand) % centres.shape[0]
        noise = self.init_std * half * self._randn(n_rand, self.horizon, self.action_dim, like=z0)
        plans = torch.cat([torch.stack(bases), centres[idx] + noise]) if bases else centres[idx] + noise
        return plans, rounds

    # -- planning ------------------------------------------------------------------------------
    def plan(
        self, z0: Tensor, task: Tensor, warm_start: Tensor | None = None, budget_ms: float | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Optimize ``R`` restarts from ``z0 (1, Z)``; returns the best plan ``(H, A)`` and ``info``.

        ``info`` holds ``iterations`` (evaluations of the restarts, each followed by an Adam step except
        a last one cut short by the budget), ``cost`` (objective of the returned plan),
        ``plan_ms``, ``terms`` (its named cost terms), ``init_rounds`` (sampler rounds), ``stopped``
        (``"converged"``, ``"budget"`` or ``"iterations"``) and ``cost_curve`` (best cost per step).
        """
        deadline = self._start(z0, warm_start, budget_ms)
        z0 = z0.detach()
        pi = self._policy_plan(z0, task)
        low, high = self._box(z0)
        mid, half = 0.5 * (low + high), 0.5 * (high - low)
        a0, rounds = self._initial_plans(z0, task, warm_start, pi, deadline)  # (R, H, A)
        frac = ((a0 - mid) / half).clamp(-1 + _EDGE, 1 - _EDGE)
        u = torch.atanh(frac).detach().requires_grad_(True)  # (R, H, A), the only leaf with a gradient
        opt = _Optimizer(u, self.optimizer, self.lr)
        best_cost, best_plan, best_terms = math.inf, a0[0], {}
        curve: list[float] = []
        stalled, step_ms, stopped, it = 0, 0.0, "iterations", 0
        for it in range(1, self.iterations + 1):
            t0 = deadline.elapsed_ms()
            a = mid + half * torch.tanh(u)  # (R, H, A), strictly inside the box
            total, terms = self.objective(self.model, z0, a, task, pi)  # (R,)
            c, r = total.detach().min(0)
            improved = best_cost - float(c)
            if improved > 0:
                best_cost, best_plan = float(c), a[r].detach().clone()
                best_terms = {k: v[r].detach() for k, v in terms.items()}
            stalled = stalled + 1 if improved <= self.tol * abs(best_cost) else 0
            curve.append(best_cost)
            if deadline.expired():  # out of time after the evaluation: skip the backward pass
                stopped = "budget"
                break
            (grad,) = torch.autograd.grad(total.sum(), u)
            opt.step(grad)
            if self.langevin_std > 0:
                scale = self.langevin_std * math.sqrt(self.lr) * (1.0 - it / self.iterations)
                with torch.no_grad():
                    u.add_(scale * self._randn(*u.shape, like=u))
            step_ms = max(step_ms, deadline.elapsed_ms() - t0)
            if self.patience and stalled >= self.patience:
                stopped = "converged"
                break
            if deadline.expired(reserve_ms=step_ms):
                stopped = "budget"
                break
        return best_plan, self._info(
            it, best_cost, deadline, best_terms, init_rounds=rounds, stopped=stopped, cost_curve=curve
        )
