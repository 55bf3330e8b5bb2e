"""Gradient planning: optimize action sequences through the differentiable latent rollout. numpy, any backend.

``R`` restarts are one array ``u (R, H, A)``; the actions are ``a = mid + half * tanh(u)``, so they
stay strictly inside the box ``[low, high]`` without clipping. Restarts start from the warm start
(the previous plan, shifted by the caller), the policy head's chunk, optionally the elites of a few
CEM / MPPI rounds, and perturbations of those. Adam minimizes the trajectory objective with the
gradient the backend returns (autograd in PyTorch, the ``cost_grad`` graph in a bundle); the best plan
seen so far is kept, so the planner is anytime: when the wall-clock budget is spent, or the search has
really converged, it returns that plan.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from planners.base import BasePlanner
from planners.common import Deadline
from planners.sampling import CEMPlanner, MPPIPlanner

_EDGE = 1e-3  # initial plans are pulled this far inside the box before atanh


class _Optimizer:
    """Adam (Kingma & Ba, 2015) or SGD with Nesterov momentum 0.9 on one array, in place.

    The update rule of ``torch.optim.Adam`` / ``SGD(nesterov=True)``, written out in numpy: a few
    elementwise operations on ``(R, H, A)``, the same on every backend.
    """

    def __init__(self, u: np.ndarray, kind: str, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.u, self.kind, self.lr, self.betas, self.t = u, kind, lr, betas, 0
        self.m = np.zeros_like(u)  # first moment (Adam) or momentum buffer (SGD)
        self.v = np.zeros_like(u)  # second moment (Adam)
        self._tmp = np.empty_like(u)  # scratch: the in-place ufuncs below allocate nothing per step

    def step(self, grad: np.ndarray) -> None:
        """Update ``u`` in place with ``grad`` (same shape)."""
        self.t += 1
        m, v, tmp = self.m, self.v, self._tmp
        if self.kind == "sgd":
            m *= 0.9
            m += grad
            np.multiply(m, 0.9, out=tmp)
            tmp += grad
            tmp *= self.lr
            self.u -= tmp
            return
        b1, b2 = self.betas
        np.subtract(grad, m, out=tmp)
        tmp *= 1 - b1
        m += tmp  # m = b1 m + (1 - b1) g
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - b2
        v *= b2
        v += tmp  # v = b2 v + (1 - b2) g^2
        np.multiply(v, 1 / (1 - b2**self.t), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += 1e-8
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr / (1 - b1**self.t)
        self.u -= tmp


class GradientPlanner(BasePlanner):
    """Batched-restart gradient descent on ``(R, H, A)`` action sequences.

    Args:
        model: a world model (``planners.protocol.WorldModelProtocol``) or a planning backend.
        horizon: plan length ``H``.
        restarts: parallel restarts ``R`` (an array dimension).
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
        tol: an iteration is *stalled* when the objective of the leading restart (the one with the lowest
            objective now) moved by at most ``tol`` times the best objective since the last iteration:
            the change of the iterate itself, not of the best plan seen, since Adam's overshoots move the
            iterate while the best plan waits, and that is not convergence.
        patience: stop after this many stalled iterations in a row (0 = never stop early).
        min_gain: keep the policy's own chunk unless the best plan's objective is lower than the chunk's by
            at least this fraction of it (0 = return the best plan found; needs ``use_policy``): the
            planner leaves the policy only where the model says clearly that it is better.
        **kwargs: ``BasePlanner`` arguments (``objective``, ``bounds``, ``use_policy``, ``seed``).
    """

    name = "grad"

    def __init__(
        self,
        model: Any,
        horizon: int | None = None,
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
        min_gain: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if restarts < 1 or iterations < 1:
            raise ValueError(f"restarts and iterations must be >= 1, got {restarts}, {iterations}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if init not in ("none", "cem", "mppi"):
            raise ValueError(f"init must be 'none', 'cem' or 'mppi', got {init!r}")
        if not (lr > 0 and init_std >= 0 and langevin_std >= 0 and tol >= 0 and patience >= 0):
            raise ValueError(f"need lr > 0 and init_std, langevin_std, tol, patience >= 0; got {lr}, {init_std}, "
                             f"{langevin_std}, {tol}, {patience}")  # fmt: skip
        if not (isinstance(min_gain, int | float) and 0.0 <= min_gain < 1.0):
            raise ValueError(f"min_gain must be a number in [0, 1), got {min_gain!r}")
        self.min_gain = float(min_gain)
        self.restarts, self.iterations, self.lr = int(restarts), int(iterations), float(lr)
        self.optimizer, self.init_std, self.init = optimizer, float(init_std), init
        self.langevin_std, self.tol, self.patience = float(langevin_std), float(tol), int(patience)
        self.sampler: CEMPlanner | MPPIPlanner | None = None
        if init != "none":
            cls = CEMPlanner if init == "cem" else MPPIPlanner
            self.sampler = cls(
                self.backend, self.horizon, samples=init_samples, elites=max(1, min(restarts, init_samples)),
                iterations=init_iterations, objective=self.objective, bounds=self.bounds, use_policy=False,
                seed=self.seed,
            )  # fmt: skip

    def _initial_plans(
        self, start: Any, warm: np.ndarray | None, pi: np.ndarray | None, deadline: Deadline
    ) -> tuple[np.ndarray, int]:
        """``R`` starting plans ``(R, H, A)`` inside the box, and the sampler rounds spent."""
        assert self.horizon is not None
        mid, half = self.mid_half
        bases = [p for p in (warm, pi) if p is not None]
        rounds = 0
        if self.sampler is not None:
            first = bases[0] if bases else np.repeat(mid[None], self.horizon, axis=0)
            found = self.sampler.search(start, first, pi, deadline, extra=bases)
            bases = bases + list(found.elites[: self.restarts - len(bases)])
            rounds = found.rounds
        bases = bases[: self.restarts]
        n_rand = self.restarts - len(bases)
        centres = np.stack(bases) if bases else mid[None, None].repeat(self.horizon, 1)
        idx = np.arange(n_rand) % centres.shape[0]
        noise = self.init_std * half * self._randn(n_rand, self.horizon, self.action_dim)
        plans = np.concatenate([centres[: len(bases)], centres[idx] + noise]) if bases else centres[idx] + noise
        return plans.astype(np.float32), rounds

    def plan(
        self, z0: Any, task: Any, warm_start: Any = None, budget_ms: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Optimize ``R`` restarts from ``z0 (1, Z)``; returns the best plan ``(H, A)`` and ``info``.

        ``info`` holds ``iterations`` (evaluations of the restarts, each followed by an optimizer step
        except a last one cut short by the budget), ``cost`` (objective of the returned plan),
        ``plan_ms``, ``terms`` (its named cost terms), ``init_rounds`` (sampler rounds), ``stopped``
        (``"converged"``, ``"budget"`` or ``"iterations"``), ``cost_curve`` (best cost per step) and
        ``kept_policy`` (the policy's chunk was returned: no plan beat it by ``min_gain``).
        """
        start, warm, deadline = self._start(z0, task, warm_start, budget_ms)
        pi = self._policy_plan(start)
        mid, half = self.mid_half
        a0, rounds = self._initial_plans(start, warm, pi, deadline)  # (R, H, A)
        u = np.arctanh(np.clip((a0 - mid) / half, -1 + _EDGE, 1 - _EDGE)).astype(np.float32)
        opt = _Optimizer(u, self.optimizer, self.lr)
        best_cost, best_plan, best_terms = math.inf, a0[0], {}
        curve: list[float] = []
        previous: np.ndarray | None = None
        stalled, step_ms, stopped, it = 0, 0.0, "iterations", 0
        policy_row = int(warm is not None)  # pi's restart (see _initial_plans), when it has one
        policy_row = None if pi is None or policy_row >= self.restarts else policy_row
        policy_eval: tuple[float, dict[str, np.ndarray]] | None = None
        for it in range(1, self.iterations + 1):
            t0 = deadline.elapsed_ms()
            th = np.tanh(u)
            a = mid + half * th  # (R, H, A), strictly inside the box
            total, terms, grad_a = self.evaluate(start, a, pi, grad=True)  # (R,), ..., (R, H, A)
            if it == 1 and policy_row is not None:
                policy_eval = float(total[policy_row]), {k: v[policy_row : policy_row + 1] for k, v in terms.items()}
            r = int(np.argmin(total))
            if total[r] < best_cost:
                best_cost, best_plan = float(total[r]), a[r].copy()
                best_terms = {k: v[r : r + 1] for k, v in terms.items()}
            moved = math.inf if previous is None else abs(float(total[r] - previous[r]))  # the leading restart
            stalled = stalled + 1 if moved <= self.tol * abs(best_cost) else 0
            previous = total
            curve.append(best_cost)
            if deadline.expired():  # out of time after the evaluation: no step
                stopped = "budget"
                break
            assert grad_a is not None
            th *= th  # chain rule through a = mid + half * tanh(u), in place (th is not needed again)
            np.subtract(1.0, th, out=th)
            th *= half
            th *= grad_a
            opt.step(th)
            if self.langevin_std > 0:
                u += self.langevin_std * math.sqrt(self.lr) * (1.0 - it / self.iterations) * self._randn(*u.shape)
            step_ms = max(step_ms, deadline.elapsed_ms() - t0)
            if self.patience and stalled >= self.patience:
                stopped = "converged"
                break
            if deadline.expired(reserve_ms=step_ms):
                stopped = "budget"
                break
        kept_policy = pi is not None and policy_eval is not None and self._keep_policy(best_cost, policy_eval[0])
        if kept_policy:
            assert pi is not None and policy_eval is not None
            best_plan, (best_cost, best_terms) = pi, policy_eval
        return best_plan.astype(np.float32), self._info(
            it, best_cost, deadline, best_terms, init_rounds=rounds, stopped=stopped, cost_curve=curve,
            kept_policy=kept_policy,
        )  # fmt: skip

    def _keep_policy(self, best_cost: float, policy_cost: float) -> bool:
        """True when the best plan's objective does not beat the policy chunk's by ``min_gain`` of it."""
        return self.min_gain > 0 and best_cost > policy_cost - self.min_gain * abs(policy_cost)
