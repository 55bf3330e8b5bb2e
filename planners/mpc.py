"""Model-predictive control over any planner: re-plan from the current latent, execute the first action(s).

Between plans the MPC keeps the previous plan shifted by the actions executed as the next warm start,
and records per planning tick the wall-clock planning time, optimizer iterations and final cost.
Optionally it blends the overlapping plans of the last ticks (temporal ensembling, Zhao et al., 2023,
"ACT"): re-planning every tick stays reactive while the executed actions stop dithering between plans.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from latent_vla.base.temporal_ensemble import TemporalEnsemble
from planners.common import shift_plan, to_numpy
from planners.protocol import Planner


@dataclass
class TickRecord:
    """One planning tick.

    Attributes:
        tick: control tick index since ``reset`` (0-based).
        plan_ms: wall-clock planning time, milliseconds.
        iterations: planner iterations.
        cost: objective of the chosen plan (model units).
        stopped: why the planner stopped, when it says (``"converged"``, ``"budget"``...), else ``""``.
    """

    tick: int
    plan_ms: float
    iterations: int
    cost: float
    stopped: str = ""


def summarize_ticks(records: list[TickRecord]) -> dict[str, float]:
    """``plan_ms_p50``, ``plan_ms_p95``, ``plan_ms_max``, ``iterations_mean``, ``cost_mean``, ``plans``."""
    if not records:
        return {"plans": 0, "plan_ms_p50": float("nan"), "plan_ms_p95": float("nan"), "plan_ms_max": float("nan"),
                "iterations_mean": float("nan"), "cost_mean": float("nan")}  # fmt: skip
    ms = np.array([r.plan_ms for r in records])
    return {
        "plans": len(records),
        "plan_ms_p50": float(np.percentile(ms, 50)),
        "plan_ms_p95": float(np.percentile(ms, 95)),
        "plan_ms_max": float(ms.max()),
        "iterations_mean": float(np.mean([r.iterations for r in records])),
        "cost_mean": float(np.mean([r.cost for r in records])),
    }


class MPC:
    """Receding-horizon controller over a ``Planner``.

    Every ``n_execute`` ticks it plans from the current latent and queues the first ``n_execute``
    actions of the plan; the plan shifted by ``n_execute`` steps is the next warm start.

    With ``temporal_ensemble`` set it plans every tick and executes, for tick ``t``, the weighted mean
    of what every plan still covering ``t`` says for it (:class:`latent_vla.base.temporal_ensemble.TemporalEnsemble`):
    plan ``j`` (made ``age_j`` ticks ago) weighs ``exp(-temporal_ensemble * age_j)`` (0 = plain mean).

    Args:
        planner: any planner of this package (``plan(z0, task, warm_start, budget_ms)``).
        n_execute: actions executed per plan (1 = re-plan every tick); must be 1 with ``temporal_ensemble``.
        budget_ms: wall-clock budget per plan, milliseconds (``None``: the planner's own).
        warm_start: pass the shifted previous plan to the planner.
        temporal_ensemble: ``None`` (off) or the decay per tick of age (>= 0) of a plan's weight.
        temporal_window: with ``temporal_ensemble``, blend only the plans of the last this many ticks
            (``None``: every plan that still covers the tick).
    """

    def __init__(
        self,
        planner: Planner,
        n_execute: int = 1,
        budget_ms: float | None = None,
        warm_start: bool = True,
        temporal_ensemble: float | None = None,
        temporal_window: int | None = None,
    ) -> None:
        if n_execute < 1:
            raise ValueError(f"n_execute must be >= 1, got {n_execute}")
        self.ensemble: TemporalEnsemble | None = None
        if temporal_ensemble is not None:
            if n_execute != 1:
                raise ValueError(f"temporal_ensemble re-plans every tick: it needs n_execute=1, got {n_execute}")
            self.ensemble = TemporalEnsemble(float(temporal_ensemble), temporal_window)
        self.planner = planner
        self.n_execute = int(n_execute)
        self.budget_ms = budget_ms
        self.use_warm_start = bool(warm_start)
        self.reset()

    def reset(self) -> None:
        """Forget the warm start, the queued actions and the tick records (a new episode)."""
        self.tick = 0
        self.records: list[TickRecord] = []
        self.last_plan: np.ndarray | None = None
        self.last_info: dict[str, Any] | None = None
        self._queue: list[np.ndarray] = []
        self._warm: np.ndarray | None = None
        if self.ensemble is not None:
            self.ensemble.reset()

    @property
    def needs_plan(self) -> bool:
        """True when the next ``act`` plans (so the caller must encode the observation)."""
        return not self._queue

    def act(self, z0: Any, task: Any) -> np.ndarray:
        """The action ``(A,)`` float32 (model units) for this tick.

        Args:
            z0: the current latent ``(1, Z)`` (numpy, or the backend's tensor, encoded without autograd);
                may be ``None`` only when ``needs_plan`` is False.
            task: the task ``(1, T)``, passed through to the planner.
        """
        if self.needs_plan:
            if z0 is None:
                raise ValueError("MPC.act needs the current latent on a planning tick (needs_plan is True)")
            warm = self._warm if self.use_warm_start else None
            if warm is not None and self.planner.horizon is not None and warm.shape[0] != self.planner.horizon:
                warm = None
            plan, info = self.planner.plan(z0, task, warm_start=warm, budget_ms=self.budget_ms)
            plan = to_numpy(plan)
            self.last_plan, self.last_info = plan, info
            self.records.append(
                TickRecord(self.tick, float(info["plan_ms"]), int(info["iterations"]), float(info["cost"]),
                           str(info.get("stopped", "")))
            )  # fmt: skip
            n = min(self.n_execute, plan.shape[0])
            self._queue = list(plan[:n])
            self._warm = shift_plan(plan, n)
            if self.ensemble is not None:
                self._queue = [self.ensemble.blend(plan).astype(np.float32)]
        self.tick += 1
        return self._queue.pop(0)

    def stats(self) -> dict[str, float]:
        """Summary of this episode's planning ticks (see :func:`summarize_ticks`)."""
        return summarize_ticks(self.records)

    def records_as_dicts(self) -> list[dict[str, Any]]:
        """Tick records as plain dicts (for JSON)."""
        return [asdict(r) for r in self.records]
