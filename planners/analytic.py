"""An analytic, differentiable world model with a closed-form optimal plan, for tests and benchmarks.

``DoubleIntegrator`` is a linear point mass in ``D`` dimensions: latent ``z = (position (D,), velocity
(D,))``, action = acceleration ``(D,)``, time step ``dt`` seconds, cost = weighted squared distance to
a goal latent given as the task. With the objective ``sum_t cost(z_t) + r * sum_t ||a_t||^2``
(``TrajectoryObjective(prior_weight=r)`` and no policy) the optimal open-loop plan solves a linear
least-squares problem; ``lq_optimum`` returns it in closed form (normal equations, float64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class DoubleIntegrator(nn.Module):
    """``z' = F z + G a`` with exact zero-order-hold discretization of a point mass.

    Args:
        dims: spatial dimensions ``D``; ``Z = 2D``, ``A = D``.
        dt: time step, seconds.
        velocity_weight: cost weight of the velocity error relative to the position error.
        policy_plan: optional fixed chunk ``(K, A)`` returned by ``policy`` (to test policy warm starts).
    """

    def __init__(
        self, dims: int = 2, dt: float = 0.2, velocity_weight: float = 0.1, policy_plan: Tensor | None = None
    ) -> None:
        super().__init__()
        eye = torch.eye(dims)
        f = torch.cat([torch.cat([eye, dt * eye], 1), torch.cat([0 * eye, eye], 1)], 0)  # (Z, Z)
        g = torch.cat([0.5 * dt**2 * eye, dt * eye], 0)  # (Z, A)
        self.F = nn.Parameter(f)
        self.G = nn.Parameter(g)
        self.register_buffer("q", torch.cat([torch.ones(dims), velocity_weight * torch.ones(dims)]))
        self.action_dim = dims
        self.latent_dim = 2 * dims
        if policy_plan is not None:
            self.register_buffer("policy_plan", policy_plan.clone())
            self.policy = self._policy

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """``(B, Z), (B, A) -> (B, Z)``."""
        return z @ self.F.T + a @ self.G.T

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``(B, Z), (B, H, A) -> (B, H, Z)``."""
        zs, z = [], z0
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t])
            zs.append(z)
        return torch.stack(zs, 1)

    def cost(self, z: Tensor, task: Tensor) -> Tensor:
        """Weighted squared distance to the goal latent ``task (1, Z)`` or ``(N, Z)``: ``(N, Z) -> (N,)``."""
        return ((z - task).square() * self.q).sum(-1)

    def _policy(self, z: Tensor, task: Tensor) -> Tensor:
        return self.policy_plan.expand(z.shape[0], -1, -1)


def lq_matrices(model: DoubleIntegrator, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked ``Phi (H*Z, Z)`` and ``Gamma (H*Z, H*A)`` with ``z_1:H = Phi z0 + Gamma a_1:H`` (float64)."""
    f = model.F.detach().double().numpy()
    g = model.G.detach().double().numpy()
    zd, ad = g.shape
    phi = np.zeros((horizon * zd, zd))
    gam = np.zeros((horizon * zd, horizon * ad))
    p = np.eye(zd)
    for t in range(horizon):
        p = f @ p
        phi[t * zd : (t + 1) * zd] = p
        for s in range(t + 1):
            gam[t * zd : (t + 1) * zd, s * ad : (s + 1) * ad] = np.linalg.matrix_power(f, t - s) @ g
    return phi, gam


def lq_cost(model: DoubleIntegrator, z0: Tensor, goal: Tensor, actions: np.ndarray, r: float) -> float:
    """The objective ``sum_t cost(z_t) + r ||a||^2`` of ``actions (H, A)``, in float64."""
    h = actions.shape[0]
    phi, gam = lq_matrices(model, h)
    q = np.tile(model.q.double().numpy(), h)
    err = phi @ z0.double().numpy().reshape(-1) + gam @ actions.reshape(-1) - np.tile(goal.double().numpy(), h)
    return float((q * err**2).sum() + r * (actions**2).sum())


def lq_optimum(model: DoubleIntegrator, z0: Tensor, goal: Tensor, horizon: int, r: float) -> tuple[np.ndarray, float]:
    """Unconstrained optimal plan ``(H, A)`` and its cost, from the normal equations (float64).

    ``a* = -(Gamma^T Q Gamma + r I)^-1 Gamma^T Q (Phi z0 - goal)``.
    """
    phi, gam = lq_matrices(model, horizon)
    q = np.tile(model.q.double().numpy(), horizon)
    e0 = phi @ z0.double().numpy().reshape(-1) - np.tile(goal.double().numpy().reshape(-1), horizon)
    lhs = gam.T @ (q[:, None] * gam) + r * np.eye(gam.shape[1])
    a = -np.linalg.solve(lhs, gam.T @ (q * e0))
    plan = a.reshape(horizon, model.action_dim)
    return plan, lq_cost(model, z0, goal, plan, r)


def box_lq_optimum(
    model: DoubleIntegrator, z0: Tensor, goal: Tensor, horizon: int, r: float, low: float, high: float
) -> tuple[np.ndarray, float]:
    """Box-constrained optimal plan by projected gradient descent on the convex QP (float64, 20k steps)."""
    phi, gam = lq_matrices(model, horizon)
    q = np.tile(model.q.double().numpy(), horizon)
    e0 = phi @ z0.double().numpy().reshape(-1) - np.tile(goal.double().numpy().reshape(-1), horizon)
    hess = 2 * (gam.T @ (q[:, None] * gam) + r * np.eye(gam.shape[1]))
    lin = 2 * gam.T @ (q * e0)
    step = 1.0 / np.linalg.eigvalsh(hess).max()
    a = np.zeros(gam.shape[1])
    for _ in range(20000):
        a = np.clip(a - step * (hess @ a + lin), low, high)
    plan = a.reshape(horizon, model.action_dim)
    return plan, lq_cost(model, z0, goal, plan, r)
