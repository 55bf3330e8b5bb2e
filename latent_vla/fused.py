"""What a world model gives the fused planning kernel (:mod:`latent_vla.base.fused_rollout`).

:func:`fused_unsupported` says whether the kernel computes a model's architecture (SimNorm latent, the
default dynamics MLP and cost head, float32 on the CPU, numba installed); :func:`fused_tensors` reads
its tensors and scalars. The PyTorch planning backend builds a kernel from them and checks it against
autograd (``planners.torch_backend.build_fused``); the exporter writes them into the bundle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from latent_vla.base.fused_rollout import TENSOR_NAMES, head_tensor_names, numba_available
from latent_vla.model import PROPRIO_BOUND, WorldModel

_DYNAMICS = (nn.Linear, nn.LayerNorm, nn.SiLU, nn.Linear, nn.LayerNorm, nn.SiLU, nn.Linear)
_HEAD_BODY = (nn.LayerNorm, nn.SiLU, nn.Linear, nn.LayerNorm, nn.SiLU, nn.Linear)


def fused_unsupported(model: Any) -> str | None:
    """Why the fused kernel cannot compute ``model`` (``None``: it can). Checks the type, the SimNorm
    latent, the layer structure of the dynamics and cost head, one LayerNorm eps, CPU and float32."""
    if not isinstance(model, WorldModel):
        return f"{type(model).__name__} is not a latent_vla WorldModel"
    if model.config.norm != "simnorm":
        return f"the latent normalization is {model.config.norm!r}, the kernel computes SimNorm"
    heads = [model.dynamics_head(k) for k in range(model.dynamics_heads)]
    layers = [*model.cost_head.body] + [m for net in heads for m in net]
    if tuple(type(m) for m in layers) != _HEAD_BODY + _DYNAMICS * len(heads):
        return "the dynamics or cost head layers differ from the default architecture"
    if len({m.eps for m in layers if isinstance(m, nn.LayerNorm)}) != 1:
        return "the LayerNorms use different eps"
    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        return f"the model is {p.dtype} on {p.device}; the kernel runs float32 on the CPU"
    if not numba_available():
        return "numba is not installed"
    return None


def fused_tensors(model: WorldModel) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The kernel's inputs for ``model``: ``TENSOR_NAMES`` (and each further dynamics head's entries,
    :func:`~latent_vla.base.fused_rollout.head_tensor_names`) -> float32 arrays, and the scalars
    (``learned_dim``, ``group``, ``bound`` (action units), ``eps``). Check :func:`fused_unsupported` first."""
    state = model.state_dict()
    names = [*TENSOR_NAMES] + [s for k in range(1, model.dynamics_heads) for s in head_tensor_names(k).values()]
    tensors = {n: state[n].detach().float().cpu().numpy().copy() for n in names}
    eps = next(m.eps for m in model.dynamics if isinstance(m, nn.LayerNorm))
    meta = {"learned_dim": model.learned_dim, "group": model.config.simnorm_dim, "bound": PROPRIO_BOUND, "eps": eps}
    return tensors, meta
