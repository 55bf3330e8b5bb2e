"""The PyTorch modules that become the bundle's ONNX graphs (export side only; imports torch).

Every graph takes the task embedding as ``(1, T)`` and broadcasts it over the batch: on a robot one
instruction is active at a time, and a fixed task batch keeps the batch axis free of the model's
"is the batch 1?" branches, so one dynamic ``batch`` axis serves every graph.

* :class:`TaskEmbedGraph`  tokens ``(B, L)`` int64 -> task ``(B, T)``
* :class:`EncoderGraph`    one ``(B, 3, h, w)`` image per camera, state ``(B, S)``, task ``(1, T)`` -> z ``(B, Z)``
* :class:`PolicyGraph`     z ``(B, Z)``, task ``(1, T)`` -> actions ``(B, K, A)`` in ``[-1, 1]``
* :class:`RolloutCostGraph` z0 ``(B, Z)``, actions ``(B, H, A)``, task ``(1, T)`` -> cost ``(B,)``, step_cost ``(B, H)``
* :func:`trace_cost_grad`  the same inputs -> cost ``(B,)`` and d cost / d actions ``(B, H, A)``, traced with
  ``torch.func.grad`` + ``make_fx`` into plain aten ops (NOTES.md: autograd inside ``forward`` does not export).

The trajectory cost is the model-dependent part of ``planners.objectives.TrajectoryObjective`` (the
discounted step costs plus the terminal cost, see :func:`trajectory_cost`); the action-only terms
(prior, smoothness) are added by the numpy planners, whose gradients are analytic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import make_fx

from latent_vla.model import WorldModel


class TaskEmbedGraph(nn.Module):
    """Instruction tokens ``(B, L)`` int64 -> task embedding ``(B, T)``."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, T)``."""
        return self.model.embed_task(tokens)


class EncoderGraph(nn.Module):
    """Images (one positional input per camera, in ``model.camera_names`` order), state, task -> z."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model
        self.camera_names = list(model.camera_names)

    def forward(self, *inputs: Tensor) -> Tensor:
        """``image_<cam> (B, 3, h, w)``..., ``state (B, S)``, ``task (1, T)`` -> ``z (B, Z)``."""
        n = len(self.camera_names)
        images = dict(zip(self.camera_names, inputs[:n], strict=True))
        state, task = inputs[n], inputs[n + 1]
        return self.model.encode(images, state, task)


class PolicyGraph(nn.Module):
    """``z (B, Z)``, ``task (1, T)`` -> action chunk ``(B, K, A)`` in ``[-1, 1]``."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, task: Tensor) -> Tensor:
        """See the class docstring."""
        return self.model.policy(z, task)


@dataclass(frozen=True)
class CostWeights:
    """The model-dependent terms of ``planners.objectives.TrajectoryObjective``, baked into the graphs.

    Attributes:
        step_weight: weight of the discounted sum of per-step costs (term ``task``).
        terminal_weight: extra weight on the last state's cost (term ``terminal``).
        discount: per-step discount ``gamma`` in ``(0, 1]``.
    """

    step_weight: float = 1.0
    terminal_weight: float = 0.0
    discount: float = 1.0


def trajectory_cost(model: WorldModel, z0: Tensor, actions: Tensor, task: Tensor, weights: CostWeights) -> Tensor:
    """Per-step costs of a rollout: ``z0 (B, Z)``, ``actions (B, H, A)``, ``task (1, T)`` -> ``(B, H)``.

    Step ``t`` (0-based) costs ``step_weight * discount**t * c_t`` plus ``terminal_weight * c_t`` at the
    last step, with ``c_t = model.cost(z_{t+1}, task)`` of the latent after action ``t``; the row sum
    equals the ``task`` + ``terminal`` terms of ``planners.objectives.TrajectoryObjective``.
    """
    z = z0
    costs = []
    horizon = actions.shape[1]
    for t in range(horizon):
        z = model.step(z, actions[:, t])  # (B, Z)
        c = model.cost(z, task)  # (B,)
        w = weights.step_weight * weights.discount**t + (weights.terminal_weight if t == horizon - 1 else 0.0)
        costs.append(c * w)
    return torch.stack(costs, dim=1)  # (B, H)


class RolloutCostGraph(nn.Module):
    """``z0 (B, Z)``, ``actions (B, H, A)``, ``task (1, T)`` -> ``cost (B,)``, ``step_cost (B, H)``."""

    def __init__(self, model: WorldModel, weights: CostWeights) -> None:
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, z0: Tensor, actions: Tensor, task: Tensor) -> tuple[Tensor, Tensor]:
        """See the class docstring."""
        steps = trajectory_cost(self.model, z0, actions, task, self.weights)
        return steps.sum(dim=1), steps


class _TracedGraph(nn.Module):
    """Holds an fx graph produced by ``make_fx`` so ``torch.onnx.export`` can export it."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm

    def forward(self, z0: Tensor, actions: Tensor, task: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, Z), (B, H, A), (1, T)`` -> ``cost (B,)``, ``grad (B, H, A)``."""
        return self.gm(z0, actions, task)


def cost_and_grad(
    model: WorldModel, z0: Tensor, actions: Tensor, task: Tensor, weights: CostWeights
) -> tuple[Tensor, Tensor]:
    """Reference (eager) trajectory cost ``(B,)`` and its gradient w.r.t. ``actions`` ``(B, H, A)``.

    Rollouts of different batch rows are independent, so the gradient of the summed cost gives each
    row's own gradient.
    """

    def total(a: Tensor) -> tuple[Tensor, Tensor]:
        cost = trajectory_cost(model, z0, a, task, weights).sum(dim=1)  # (B,)
        return cost.sum(), cost

    grad, cost = torch.func.grad(total, has_aux=True)(actions)
    return cost, grad


def trace_cost_grad(model: WorldModel, z0: Tensor, actions: Tensor, task: Tensor, weights: CostWeights) -> nn.Module:
    """Trace :func:`cost_and_grad` (forward and backward) into an exportable module of plain aten ops.

    Tracing is symbolic, so the batch axis stays dynamic; the horizon ``H`` is fixed by ``actions``.
    The model's parameters are baked into the graph as constants.
    """
    for p in model.parameters():
        p.requires_grad_(False)

    def fn(z0_: Tensor, actions_: Tensor, task_: Tensor) -> tuple[Tensor, Tensor]:
        return cost_and_grad(model, z0_, actions_, task_, weights)

    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(z0, actions, task)
    return _TracedGraph(gm).eval()
