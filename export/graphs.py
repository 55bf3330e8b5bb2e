"""The PyTorch modules that become the bundle's ONNX graphs (export side only; imports torch).

Every graph takes the task embedding as ``(1, T)`` and broadcasts it over the batch: on a robot one
instruction is active at a time, and a fixed task batch keeps the batch axis free of the model's
"is the batch 1?" branches, so one dynamic ``batch`` axis serves every graph.

* :class:`TaskEmbedGraph`  tokens ``(B, L)`` int64 -> task ``(B, T)``, snapped to the checkpoint's recorded
  instructions (``latent_vla.instruction_snap``, anchors baked in) when it has them
* :class:`EncoderGraph`    one ``(B, 3, h, w)`` image per camera, state ``(B, S)``, task ``(1, T)`` -> z ``(B, Z)``
* :class:`PolicyGraph`     z ``(B, Z)``, task ``(1, T)`` -> actions ``(B, K, A)`` in ``[-1, 1]``
* :class:`RolloutCostGraph` z0 ``(B, Z)``, actions ``(B, H, A)``, task ``(1, T)`` -> cost ``(B,)``, step_cost ``(B, H)``
* :func:`trace_cost_grad`  the same inputs -> cost ``(B,)``, d cost / d actions ``(B, H, A)``, step_cost ``(B, H)``;
  traced with ``torch.func.grad`` + ``make_fx`` into plain aten ops (NOTES.md: autograd in ``forward`` fails).

The trajectory cost is the model-dependent part of ``planners.objectives.TrajectoryObjective``: the
weighted per-step costs of ``planners.torch_backend.weighted_step_costs``, the one definition the
PyTorch planners evaluate too, with the weights ``TrajectoryObjective.step_weights(H)`` baked in as
constants; the action-only terms (prior, smoothness) are added by the planners in numpy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import make_fx

from latent_vla.instruction_snap import InstructionSnap
from latent_vla.model import WorldModel
from planners.torch_backend import weighted_step_costs


class TaskEmbedGraph(nn.Module):
    """Instruction tokens ``(B, L)`` int64 -> task embedding ``(B, T)``, then ``snap`` (None: none)."""

    def __init__(self, model: WorldModel, snap: InstructionSnap | None = None) -> None:
        super().__init__()
        self.model, self.snap = model, snap

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, T)``."""
        task = self.model.embed_task(tokens)
        return task if self.snap is None else self.snap(task)


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


class RolloutCostGraph(nn.Module):
    """``z0 (B, Z)``, ``actions (B, H, A)``, ``task (1, T)`` -> ``cost (B,)``, ``step_cost (B, H)``.

    Args:
        model: the world model.
        weights: per-step weights ``(H,)`` (``TrajectoryObjective.step_weights``), baked in.
    """

    def __init__(self, model: WorldModel, weights: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", weights.detach().clone())

    def forward(self, z0: Tensor, actions: Tensor, task: Tensor) -> tuple[Tensor, Tensor]:
        """See the class docstring."""
        steps = weighted_step_costs(self.model, z0, actions, task, self.weights)
        return steps.sum(dim=1), steps


class _TracedGraph(nn.Module):
    """Holds an fx graph produced by ``make_fx`` so ``torch.onnx.export`` can export it."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm

    def forward(self, z0: Tensor, actions: Tensor, task: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, Z), (B, H, A), (1, T)`` -> ``cost (B,)``, ``grad (B, H, A)``, ``step_cost (B, H)``."""
        return self.gm(z0, actions, task)


def cost_and_grad(
    model: WorldModel, z0: Tensor, actions: Tensor, task: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference (eager) trajectory cost ``(B,)``, its gradient w.r.t. ``actions`` ``(B, H, A)`` and the
    weighted per-step costs ``(B, H)`` (so the planners can name the terms of the best plan).

    Rollouts of different batch rows are independent, so the gradient of the summed cost gives each
    row's own gradient.
    """

    def total(a: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        steps = weighted_step_costs(model, z0, a, task, weights)  # (B, H)
        cost = steps.sum(dim=1)  # (B,)
        return cost.sum(), (cost, steps)

    grad, (cost, steps) = torch.func.grad(total, has_aux=True)(actions)
    return cost, grad, steps


def trace_cost_grad(model: WorldModel, z0: Tensor, actions: Tensor, task: Tensor, weights: Tensor) -> nn.Module:
    """Trace :func:`cost_and_grad` (forward and backward) into an exportable module of plain aten ops.

    Tracing is symbolic, so the batch axis stays dynamic; the horizon ``H`` is fixed by ``actions``.
    The model's parameters are baked into the graph as constants.
    """
    for p in model.parameters():
        p.requires_grad_(False)

    def fn(z0_: Tensor, actions_: Tensor, task_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return cost_and_grad(model, z0_, actions_, task_, weights)

    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(z0, actions, task)
    return _TracedGraph(gm).eval()
