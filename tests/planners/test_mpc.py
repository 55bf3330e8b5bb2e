"""Receding-horizon control on the analytic double integrator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planners.analytic import DoubleIntegrator
from planners.common import Bounds
from planners.gradient import GradientPlanner
from planners.mpc import MPC, summarize_ticks
from planners.objectives import TrajectoryObjective
from planners.sampling import CEMPlanner


def _run(mpc: MPC, model: DoubleIntegrator, ticks: int) -> torch.Tensor:
    z, goal = torch.tensor([[1.0, -0.5, 0.0, 0.0]]), torch.zeros(1, 4)
    for _ in range(ticks):
        z0 = z if mpc.needs_plan else None
        a = mpc.act(z0, goal)
        assert a.shape == (2,)
        assert isinstance(a, np.ndarray)
        z = model.step(z, torch.from_numpy(a)[None]).detach()
    return z


@pytest.mark.parametrize("n_execute", [1, 3])
def test_mpc_drives_the_integrator_to_the_goal_and_records_ticks(n_execute: int) -> None:
    torch.set_num_threads(1)
    model = DoubleIntegrator(dims=2, dt=0.2)
    obj = TrajectoryObjective(prior_weight=0.05)
    planner = GradientPlanner(model, 10, objective=obj, bounds=Bounds(-2, 2), iterations=60, seed=0)
    mpc = MPC(planner, n_execute=n_execute)
    z = _run(mpc, model, 30)
    assert float(z[0, :2].norm()) < 0.1  # arrived
    assert len(mpc.records) == 30 // n_execute
    assert [r.tick for r in mpc.records] == list(range(0, 30, n_execute))
    stats = mpc.stats()
    assert stats["plans"] == 30 // n_execute
    assert 0 < stats["plan_ms_p50"] <= stats["plan_ms_p95"] <= stats["plan_ms_max"]
    assert stats["iterations_mean"] >= 1
    assert mpc.last_plan is not None and mpc.last_plan.shape == (10, 2)


def test_warm_start_makes_later_ticks_better_on_a_small_budget() -> None:
    """With few iterations a tick, the shifted previous plan keeps the later ticks' plans cheaper."""
    torch.set_num_threads(1)
    model = DoubleIntegrator(dims=2, dt=0.2)
    planner = GradientPlanner(model, 10, objective=TrajectoryObjective(prior_weight=0.05), bounds=Bounds(-4, 4),
                              iterations=5, seed=0)  # fmt: skip
    warm, cold = MPC(planner), MPC(planner, warm_start=False)
    _run(warm, model, 8)
    _run(cold, model, 8)
    later = slice(1, None)
    mean = lambda recs: sum(r.cost for r in recs) / len(recs)  # noqa: E731
    assert mean(warm.records[later]) < 0.8 * mean(cold.records[later])  # 0.71 measured (seeded)


def test_reset_and_bad_calls() -> None:
    model = DoubleIntegrator(dims=2)
    mpc = MPC(CEMPlanner(model, 5, iterations=2, samples=16, elites=4), n_execute=2)
    with pytest.raises(ValueError, match="needs the current latent"):
        mpc.act(None, torch.zeros(1, 4))
    mpc.act(torch.zeros(1, 4), torch.zeros(1, 4))
    assert not mpc.needs_plan
    mpc.reset()
    assert mpc.needs_plan and mpc.records == [] and mpc.last_plan is None
    with pytest.raises(ValueError, match="n_execute"):
        MPC(mpc.planner, n_execute=0)
    assert summarize_ticks([])["plans"] == 0
