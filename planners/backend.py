"""The planning backend: the only thing the planning algorithms call (numpy arrays at the boundary).

Two implementations: ``planners.torch_backend.TorchBackend`` (any PyTorch world model, gradients by
autograd) and ``export.runtime.backend.BundleBackend`` (an export bundle's onnxruntime graphs
``rollout_cost`` and ``cost_grad``). Every algorithm in ``planners/`` is written once against this
protocol, so a plan is the same on both (tests/export/test_planner_parity.py).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from latent_vla.base.errors import UserError
from planners.objectives import TrajectoryObjective


@runtime_checkable
class PlanningBackend(Protocol):
    """Model terms of the objective, their gradient, and the policy's proposal, in numpy.

    Attributes:
        action_dim: ``A``.
        horizon: the fixed plan length ``H`` of the backend (a bundle's graphs), or ``None`` (any).
        has_policy: whether :meth:`policy` returns a chunk.
        objective: the spec whose model-term weights (``step_weight``, ``terminal_weight``,
            ``discount``) this backend applies in :meth:`step_costs`.
        heads: optional; how many dynamics heads :meth:`step_costs` can roll out (``head`` 0 to this
            - 1; a backend without it has one, and is called without ``head``).
    """

    action_dim: int
    horizon: int | None
    has_policy: bool
    objective: TrajectoryObjective

    def prepare(self, z0: Any, task: Any) -> Any:
        """The start of one planning call, ``z0 (1, Z)`` and ``task (1, T)``, in the backend's own types."""
        ...

    def step_costs(self, start: Any, actions: np.ndarray, head: int = 0) -> np.ndarray:
        """Weighted per-step model costs ``(N, H)`` of ``actions (N, H, A)`` from ``start``, rolled out
        by dynamics ``head``."""
        ...

    def step_costs_and_grad(self, start: Any, actions: np.ndarray, head: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H)`` weighted per-step costs by dynamics ``head`` and the gradient of their row sums
        w.r.t. actions ``(N, H, A)``."""
        ...

    def policy(self, start: Any) -> np.ndarray | None:
        """The policy head's chunk ``(K, A)`` in ``[-1, 1]`` for ``start``, or ``None`` without a policy."""
        ...


def as_backend(model: Any, objective: TrajectoryObjective) -> PlanningBackend:
    """``model`` itself when it is a :class:`PlanningBackend` (its model terms must match ``objective``),
    else a :class:`planners.torch_backend.TorchBackend` over the PyTorch world model ``model``.

    Raises:
        ValueError: a backend whose model-term weights differ from ``objective``'s (they are baked
            into a bundle's graphs).
        TypeError: ``model`` is neither a backend nor a world model.
    """
    if isinstance(model, PlanningBackend):
        if not model.objective.same_model_terms(objective):
            raise ValueError(
                f"the backend computes the model terms with {model.objective.to_dict()}; the planner's objective "
                f"asks for {objective.to_dict()} (step_weight, terminal_weight and discount must match)"
            )
        return model
    # Imported here: PyTorch is a heavy optional dependency that the torch-free runtime never needs.
    from planners.torch_backend import TorchBackend

    return TorchBackend(model, objective)


def check_head(head: int, heads: int) -> None:
    """Refuse a dynamics ``head`` outside ``0 .. heads - 1`` (ValueError, one line)."""
    if not 0 <= head < heads:
        raise ValueError(f"dynamics head {head} does not exist: this backend has {heads} (0..{heads - 1})")


class EnsembleError(UserError, ValueError):
    """A disagreement weight asked of a backend with one dynamics head."""


def check_ensemble(backend: PlanningBackend, objective: TrajectoryObjective) -> int:
    """The backend's dynamics heads; refuses (:class:`EnsembleError`, one line) a disagreement weight
    with fewer than two."""
    heads = int(getattr(backend, "heads", 1))
    if objective.disagreement_weight and heads < 2:
        raise EnsembleError(
            f"objective.disagreement_weight={objective.disagreement_weight} needs a model with dynamics_heads >= 2 "
            f"(train with model.dynamics_heads=3); this one plans with {heads} head (a bundle rolls out its further "
            "heads with the fused kernel only, which needs numba)"
        )
    return heads


def _model_terms(
    backend: PlanningBackend, start: Any, actions: np.ndarray, grad: bool, head: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Head ``head``'s weighted per-step costs ``(N, H)`` and, with ``grad``, their gradient ``(N, H, A)``."""
    extra = (head,) if head else ()  # head 0 is every backend's, also one written before the ensemble
    if grad:
        return backend.step_costs_and_grad(start, actions, *extra)
    return backend.step_costs(start, actions, *extra), None


def _ensemble_term(
    backend: PlanningBackend,
    objective: TrajectoryObjective,
    start: Any,
    actions: np.ndarray,
    grad: bool,
    head0: tuple[np.ndarray, np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``disagreement`` term ``(N,)`` over every dynamics head and its gradient ``(N, H, A)`` (or ``None``)."""
    heads = check_ensemble(backend, objective)
    rolled = [head0] + [_model_terms(backend, start, actions, grad, k) for k in range(1, heads)]
    penalty, coeff = objective.disagreement(np.stack([steps.sum(-1) for steps, _ in rolled]))  # (N,), (K, N)
    if not grad:
        return penalty, None
    g = sum(c[:, None, None] * g_k for c, (_, g_k) in zip(coeff, rolled, strict=True))
    return penalty, np.asarray(g, np.float32)


def evaluate_objective(
    backend: PlanningBackend,
    objective: TrajectoryObjective,
    start: Any,
    actions: np.ndarray,
    prior: np.ndarray | None,
    grad: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """The objective of ``actions (N, H, A)`` from ``start`` (``backend.prepare``).

    The model terms come from ``backend`` (weighted as ``backend.objective``, equal to ``objective``'s
    model terms; dynamics head 0), the ensemble term from every head when ``objective.disagreement_weight``
    is set, the action terms from ``objective`` against ``prior (H, A)`` (``None``: zeros).

    Returns:
        ``total (N,)``, the named terms ``(N,)`` each, and with ``grad`` the gradient
        ``d total / d actions (N, H, A)`` (else ``None``).

    Raises:
        ValueError: a disagreement weight with a backend of one dynamics head.
    """
    actions = np.ascontiguousarray(actions, dtype=np.float32)
    steps, g_model = head0 = _model_terms(backend, start, actions, grad, 0)
    a_cost, a_grad, a_terms = objective.action_terms(actions, prior)
    total = steps.sum(-1) + a_cost
    terms = {**objective.model_terms(steps), **a_terms}
    if objective.disagreement_weight:
        terms["disagreement"], g_ens = _ensemble_term(backend, objective, start, actions, grad, head0)
        total = total + terms["disagreement"]
        g_model = None if g_ens is None else g_model + g_ens
    return total, terms, (None if g_model is None else g_model + a_grad)
