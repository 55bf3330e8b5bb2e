"""The trajectory objective: what every planner minimizes, as named, weighted terms (one spec, numpy).

::

    J(a_1:H) = w_step * sum_t gamma^(t-1) cost(z_t)  +  w_terminal * cost(z_H)          model terms
             + w_disagree * std_k J_k                                               ensemble term
             + w_prior * sum_t ||a_t - prior_t||^2  +  w_smooth * sum_t ||a_t - a_(t-1)||^2   action terms

where ``z_1:H = rollout(z0, a_1:H)`` by the model's dynamics head 0, and ``J_k`` is the model terms'
sum with the states of dynamics head ``k`` (a model with ``dynamics_heads`` = K > 1): the heads learned
the same transitions from different starts, so where they disagree about a plan's cost (metres) the
model does not know, and the planner pays for it (PETS / MOPO-style pessimism).

The spec is declared once, here. The *model terms* need the world model: a planning backend returns
them as weighted per-step costs ``(N, H)`` with the weights of :meth:`TrajectoryObjective.step_weights`
(the PyTorch backend computes them with autograd, the exporter bakes the same weights into the bundle's
ONNX graphs, and the manifest records this spec); the *action terms* depend on the actions alone and
are computed here, with analytic gradients, for both backends; the *ensemble term* is computed here
from every head's model terms (:meth:`TrajectoryObjective.disagreement`, called by
``planners.backend.evaluate_objective``). A new term is added in this file (and, for a model term, in
``planners.torch_backend.weighted_step_costs``, which the exporter traces).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

MODEL_TERMS = ("step_weight", "terminal_weight", "discount")
"""The fields that shape the model terms (baked into a bundle's graphs)."""


@functools.lru_cache(maxsize=64)
def _step_weights(step: float, terminal: float, discount: float, horizon: int) -> np.ndarray:
    """:meth:`TrajectoryObjective.step_weights`, computed once per spec and horizon (planners ask every
    iteration)."""
    w = step * discount ** np.arange(horizon, dtype=np.float64)
    w[-1] += terminal
    return w.astype(np.float32)


@dataclass(frozen=True)
class TrajectoryObjective:
    """Weighted sum of named trajectory terms; see the module docstring for the formula.

    Attributes:
        step_weight: weight of the (discounted) sum of per-step costs (term ``task``).
        terminal_weight: extra weight on the last state's cost (term ``terminal``).
        discount: per-step discount ``gamma`` of the running cost, in ``(0, 1]``.
        prior_weight: weight of the squared distance to the action prior (term ``prior``: the policy's
            chunk when the planner has one, else zeros, the centre of the data's action range).
        smooth_weight: weight of the squared action differences (term ``smooth``; ``a_0`` not included).
        disagreement_weight: weight of the standard deviation over the dynamics heads of the model
            terms' sum (term ``disagreement``, metres x weights); needs a model with ``dynamics_heads``
            >= 2, costs one rollout per head.
    """

    step_weight: float = 1.0
    terminal_weight: float = 0.0
    discount: float = 1.0
    prior_weight: float = 0.0
    smooth_weight: float = 0.0
    disagreement_weight: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not np.isfinite(value):
                raise ValueError(f"objective.{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        for name in ("step_weight", "terminal_weight", "prior_weight", "smooth_weight", "disagreement_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"objective.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"objective.discount must be in (0, 1], got {self.discount}")
        if not (self.step_weight or self.terminal_weight or self.prior_weight or self.smooth_weight):
            raise ValueError("every objective weight is zero: nothing to minimize")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrajectoryObjective:
        """Build from a mapping (a config or a manifest), refusing unknown keys by name."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown objective settings {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, float]:
        """The spec as a plain dict (for a manifest or a report)."""
        return asdict(self)

    @property
    def weights(self) -> dict[str, float]:
        """The configured weight of each named term."""
        return {
            "task": self.step_weight,
            "terminal": self.terminal_weight,
            "prior": self.prior_weight,
            "smooth": self.smooth_weight,
            "disagreement": self.disagreement_weight,
        }

    def same_model_terms(self, other: TrajectoryObjective) -> bool:
        """True when ``other`` weighs the model terms exactly as this spec does."""
        return all(getattr(self, k) == getattr(other, k) for k in MODEL_TERMS)

    def step_weights(self, horizon: int) -> np.ndarray:
        """``w (H,)`` float32: step ``t`` (0-based) of a rollout weighs ``w_step gamma^t + w_terminal [t = H-1]``."""
        return _step_weights(self.step_weight, self.terminal_weight, self.discount, int(horizon)).copy()

    def model_terms(self, step_costs: np.ndarray) -> dict[str, np.ndarray]:
        """Split weighted per-step costs ``(N, H)`` (weights of :meth:`step_weights`) into ``task``/``terminal``."""
        total = step_costs.sum(-1)  # (N,)
        terms: dict[str, np.ndarray] = {}
        if self.terminal_weight:
            last_weight = self.step_weights(step_costs.shape[-1])[-1]
            terms["terminal"] = self.terminal_weight * step_costs[:, -1] / last_weight
            if self.step_weight:
                terms["task"] = total - terms["terminal"]
        elif self.step_weight:
            terms["task"] = total
        return terms

    def disagreement(self, head_totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble term of the model terms' sums ``head_totals (K, N)`` (one row per dynamics head).

        Returns:
            ``disagreement_weight * std_k (N,)`` and its derivative w.r.t. ``head_totals`` ``(K, N)``
            (``w (J_k - mean) / (K std)``; a floor of 1e-6 on the std keeps it finite where heads agree).
        """
        totals = np.asarray(head_totals, np.float64)
        dev = totals - totals.mean(0)
        std = np.sqrt((dev**2).mean(0))
        coeff = self.disagreement_weight * dev / (totals.shape[0] * np.maximum(std, 1e-6))
        return (self.disagreement_weight * std).astype(np.float32), coeff.astype(np.float32)

    def action_terms(
        self, actions: np.ndarray, prior: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The action-only terms of ``actions (N, H, A)``.

        Args:
            actions: candidate plans in model units.
            prior: action prior ``(H, A)``; ``None`` means zeros.

        Returns:
            ``cost (N,)``, ``d cost / d actions (N, H, A)`` and the weighted terms by name, each ``(N,)``.
        """
        terms: dict[str, np.ndarray] = {}
        grad: np.ndarray | None = None
        if self.prior_weight:
            diff = actions if prior is None else actions - prior
            terms["prior"] = self.prior_weight * np.einsum("nha,nha->n", diff, diff)
            grad = (2.0 * self.prior_weight) * diff
        if self.smooth_weight and actions.shape[1] > 1:
            d = np.diff(actions, axis=1)  # (N, H-1, A)
            terms["smooth"] = self.smooth_weight * np.einsum("nha,nha->n", d, d)
            d *= 2.0 * self.smooth_weight
            grad = np.zeros_like(actions) if grad is None else grad
            grad[:, 1:] += d
            grad[:, :-1] -= d
        grad = np.zeros_like(actions) if grad is None else grad
        cost = sum(terms.values()) if terms else np.zeros(actions.shape[0], actions.dtype)
        return cost, grad, terms
