"""The planning step as one compiled function: rollout, cost and action gradient in closed form (numba).

A gradient-planner iteration rolls ``N`` candidate plans ``H`` latent steps through the dynamics MLP,
scores every visited latent with the cost head and back-propagates to the actions. Eager PyTorch
(autograd) and onnxruntime run that as ~1,600 tiny operators whose dispatch costs more than their
arithmetic (``benchmarks/planning_speed.py``). This kernel runs the same maths as one numba function:
a register-tiled product with weights packed once (:mod:`latent_vla.base.fused_gemm`, 1.5-2x BLAS on
these 8-row shapes) for the matrix products, and fused loops for LayerNorm, SiLU, SimNorm and their
hand-written backward passes, with a vectorizable ``exp``. The forward pass alone scores sampler
batches (CEM/MPPI, 256 x 16).

It computes exactly the default :class:`latent_vla.model.WorldModel` architecture, read from tensors
named as in the model's ``state_dict``::

    dynamics  x = [z | a] -> Linear -> LayerNorm -> SiLU -> Linear -> LayerNorm -> SiLU -> Linear -> d
    step      z' = [softmax_groups(log max(z_l, 1e-6) + d_l) | clip(z_p + d_p, -bound, bound)]
    cost      softplus(Linear(...SiLU(LN(Linear(...SiLU(LN(W_z z' + b_z + W_t task)))))))
    output    step_cost[n, t] = weight[t] * cost(z_{t+1})

NumPy and numba only (no PyTorch), so the torch-free runtime uses it too. ``planners.torch_backend``
checks it against autograd when it is built and ``export`` checks it against the eager model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import numpy as np

TENSOR_NAMES = (
    "dynamics.0.weight", "dynamics.0.bias", "dynamics.1.weight", "dynamics.1.bias",
    "dynamics.3.weight", "dynamics.3.bias", "dynamics.4.weight", "dynamics.4.bias",
    "dynamics.6.weight", "dynamics.6.bias",
    "cost_head.z_in.weight", "cost_head.z_in.bias", "cost_head.t_in.weight",
    "cost_head.body.0.weight", "cost_head.body.0.bias", "cost_head.body.2.weight", "cost_head.body.2.bias",
    "cost_head.body.3.weight", "cost_head.body.3.bias", "cost_head.body.5.weight", "cost_head.body.5.bias",
)  # fmt: skip
"""The ``WorldModel.state_dict`` entries the kernel reads (Linear weights are ``(out, in)``)."""

FUSED_GRAPH = "fused_rollout"
"""The kernel's name in a bundle's manifest (``graphs`` entry; its scalars under ``model``)."""

FUSED_FILE = "fused_rollout.safetensors"
"""The bundle file holding :data:`TENSOR_NAMES`."""

ENSEMBLE_PREFIX = "dynamics_ensemble"
"""Further dynamics heads (a model with ``dynamics_heads`` > 1) are stored beside :data:`TENSOR_NAMES` as
``dynamics_ensemble.{k-1}.{layer}.{weight|bias}`` for head ``k``: each is the ``dynamics.*`` entries of
its own kernel (the cost head is shared); see :func:`head_kernels`."""

META_KEYS = ("learned_dim", "group", "bound", "eps")
"""Scalars beside the tensors: learned latent size, SimNorm group size, joint-block clip bound, LayerNorm eps."""


def expected_shapes(z: int, a: int, hidden: int, head: int, task: int) -> dict[str, tuple[int, ...]]:
    """The shape of every :data:`TENSOR_NAMES` entry for latent size ``z``, action size ``a``, dynamics
    width ``hidden``, cost-head width ``head`` and task size ``task``."""
    h, c = (hidden,), (head,)
    return {
        "dynamics.0.weight": (hidden, z + a), "dynamics.0.bias": h, "dynamics.1.weight": h, "dynamics.1.bias": h,
        "dynamics.3.weight": (hidden, hidden), "dynamics.3.bias": h, "dynamics.4.weight": h, "dynamics.4.bias": h,
        "dynamics.6.weight": (z, hidden), "dynamics.6.bias": (z,),
        "cost_head.z_in.weight": (head, z), "cost_head.z_in.bias": c, "cost_head.t_in.weight": (head, task),
        "cost_head.body.0.weight": c, "cost_head.body.0.bias": c, "cost_head.body.2.weight": (head, head),
        "cost_head.body.2.bias": c, "cost_head.body.3.weight": c, "cost_head.body.3.bias": c,
        "cost_head.body.5.weight": (1, head), "cost_head.body.5.bias": (1,),
    }  # fmt: skip


def numba_available() -> bool:
    """Whether numba is installed (it compiles the kernel; llvmlite comes with it)."""
    return importlib.util.find_spec("numba") is not None


class FusedRollout:
    """The compiled planning step for one set of world-model weights.

    Args:
        tensors: the arrays of :data:`TENSOR_NAMES` (float32, shapes as in the model's ``state_dict``).
        meta: :data:`META_KEYS` (``learned_dim``, ``group`` (SimNorm), ``bound`` (joint clip, action
            units), ``eps`` (LayerNorm)).

    Raises:
        ImportError: numba is not installed (check :func:`numba_available` first).
        KeyError / ValueError: a tensor or scalar is missing, or the shapes do not fit one another (the
            kernel does not check indices: every shape is checked here).
    """

    def __init__(self, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        missing = [n for n in (*TENSOR_NAMES, *META_KEYS) if n not in tensors and n not in meta]
        if missing:
            raise KeyError(f"fused rollout: missing {missing}")
        named = tuple(np.ascontiguousarray(tensors[n], np.float32) for n in TENSOR_NAMES)
        self.learned = int(meta["learned_dim"])
        self.group = int(meta["group"])
        if self.group <= 0:
            raise ValueError(f"fused rollout: the SimNorm group size must be >= 1, got {self.group}")
        self.bound = np.float32(meta["bound"])
        self.eps = np.float32(meta["eps"])
        self.latent_dim = int(named[8].shape[0])  # Z
        self.action_dim = int(named[0].shape[1]) - self.latent_dim  # A
        sizes = (self.latent_dim, self.action_dim, named[1].shape[0], named[11].shape[0], named[12].shape[-1])
        wrong = {n: a.shape for n, a, e in zip(TENSOR_NAMES, named, expected_shapes(*sizes).values(), strict=True)
                 if a.shape != e}  # fmt: skip
        if wrong or self.learned % self.group or not 0 < self.learned <= self.latent_dim or self.action_dim <= 0:
            raise ValueError(f"fused rollout: inconsistent sizes (Z={self.latent_dim}, learned={self.learned}, "
                             f"group={self.group}, A={self.action_dim}; wrong shapes {wrong})")  # fmt: skip
        from latent_vla.base import fused_kernels  # numba: a heavy optional dependency
        from latent_vla.base.fused_gemm import pack

        forward = tuple(pack(named[i].T) for i in (0, 4, 8, 10, 15))  # x @ W^T (Linear layers)
        backward = tuple(pack(named[i]) for i in (15, 10, 8, 4, 0))  # g @ W (their input gradients)
        self.params = named + forward + backward  # the kernels index this tuple (shapes checked above)
        self._costs_and_grad, self._costs = fused_kernels.costs_and_grad, fused_kernels.costs

    def task_projection(self, task: np.ndarray) -> np.ndarray:
        """The cost head's task term ``W_t task``: ``task (1, T)`` or ``(T,)`` -> ``(C,)`` float32."""
        t = np.asarray(task, np.float32).reshape(-1)
        return np.ascontiguousarray(self.params[12] @ t, np.float32)

    def _args(self, z0: np.ndarray, actions: np.ndarray, weights: np.ndarray) -> tuple:
        z = np.ascontiguousarray(np.asarray(z0, np.float32).reshape(-1))
        a = np.ascontiguousarray(actions, np.float32)
        if z.shape[0] != self.latent_dim or a.ndim != 3 or a.shape[2] != self.action_dim:
            raise ValueError(f"fused rollout: z0 must hold {self.latent_dim} values and actions be (N, H, "
                             f"{self.action_dim}); got {z.shape[0]} and {a.shape}")  # fmt: skip
        w = np.ascontiguousarray(weights, np.float32)
        if w.shape != (a.shape[1],):
            raise ValueError(f"fused rollout: weights must be ({a.shape[1]},), got {w.shape}")
        return z, a, w

    def step_costs(self, z0: np.ndarray, task_proj: np.ndarray, actions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``(N, H)`` weighted costs of ``actions (N, H, A)`` from ``z0 (Z,)``, weights ``(H,)``."""
        z, a, w = self._args(z0, actions, weights)
        return self._costs(z, a, task_proj, w, self.params, self.learned, self.group, self.bound, self.eps)

    def step_costs_and_grad(
        self, z0: np.ndarray, task_proj: np.ndarray, actions: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H)`` weighted costs and ``d sum(costs) / d actions (N, H, A)``."""
        z, a, w = self._args(z0, actions, weights)
        args = (self.params, self.learned, self.group, self.bound, self.eps)
        return self._costs_and_grad(z, a, task_proj, w, *args)


def head_tensor_names(head: int) -> dict[str, str]:
    """Where dynamics head ``head`` (>= 1) keeps each ``dynamics.*`` entry of :data:`TENSOR_NAMES`:
    ``{kernel name: stored name}``."""
    prefix = f"{ENSEMBLE_PREFIX}.{head - 1}."
    return {n: prefix + n.removeprefix("dynamics.") for n in TENSOR_NAMES if n.startswith("dynamics.")}


def head_count(tensors: Mapping[str, Any]) -> int:
    """How many dynamics heads ``tensors`` hold (1 + the complete further heads, counted from head 1 up)."""
    heads = 1
    while all(name in tensors for name in head_tensor_names(heads).values()):
        heads += 1
    return heads


def head_kernels(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> list[FusedRollout]:
    """One :class:`FusedRollout` per dynamics head of ``tensors`` (:func:`head_count`), head 0 first; the
    cost head is shared, so every kernel's :meth:`FusedRollout.task_projection` is the same."""
    kernels = [FusedRollout(tensors, meta)]
    for head in range(1, head_count(tensors)):
        own = {n: tensors[stored] for n, stored in head_tensor_names(head).items()}
        kernels.append(FusedRollout({**tensors, **own}, meta))
    return kernels
