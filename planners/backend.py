"""The planning backend: the only thing the planning algorithms call (numpy arrays at the boundary).

Two implementations: ``planners.torch_backend.TorchBackend`` (any PyTorch world model, gradients by
autograd) and ``export.runtime.backend.BundleBackend`` (an export bundle's onnxruntime graphs
``rollout_cost`` and ``cost_grad``). Every algorithm in ``planners/`` is written once against this
protocol, so a plan is the same on both (tests/export/test_planner_parity.py).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

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
    """

    action_dim: int
    horizon: int | None
    has_policy: bool
    objective: TrajectoryObjective

    def prepare(self, z0: Any, task: Any) -> Any:
        """The start of one planning call, ``z0 (1, Z)`` and ``task (1, T)``, in the backend's own types."""
        ...

    def step_costs(self, start: Any, actions: np.ndarray) -> np.ndarray:
        """Weighted per-step model costs ``(N, H)`` of ``actions (N, H, A)`` from ``start``."""
        ...

    def step_costs_and_grad(self, start: Any, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H)`` weighted per-step costs and the gradient of their row sums w.r.t. actions ``(N, H, A)``."""
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
    model terms), the action terms from ``objective`` against ``prior (H, A)`` (``None``: zeros).

    Returns:
        ``total (N,)``, the named terms ``(N,)`` each, and with ``grad`` the gradient
        ``d total / d actions (N, H, A)`` (else ``None``).
    """
    actions = np.ascontiguousarray(actions, dtype=np.float32)
    if grad:
        steps, g_model = backend.step_costs_and_grad(start, actions)
    else:
        steps, g_model = backend.step_costs(start, actions), None
    a_cost, a_grad, a_terms = objective.action_terms(actions, prior)
    total = steps.sum(-1) + a_cost
    terms = {**objective.model_terms(steps), **a_terms}
    return total, terms, (None if g_model is None else g_model + a_grad)
