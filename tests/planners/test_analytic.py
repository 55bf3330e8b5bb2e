"""Planners against a linear double integrator whose optimal open-loop plan is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planner_helpers import objective_of

from planners.analytic import DoubleIntegrator, box_lq_optimum, lq_optimum
from planners.common import Bounds, shift_plan
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.policy import PolicyPlanner
from planners.sampling import CEMPlanner, MPPIPlanner, RandomShootingPlanner

H, R_WEIGHT = 16, 0.1
LOOSE = Bounds(-8.0, 8.0)  # the unconstrained optimum peaks near 3.1: interior
TIGHT = Bounds(-0.5, 0.5)  # binds on most of the plan


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def problem() -> tuple[DoubleIntegrator, torch.Tensor, torch.Tensor, TrajectoryObjective]:
    model = DoubleIntegrator(dims=2, dt=0.2)
    z0 = torch.tensor([[1.0, -0.5, 0.3, 0.0]])
    goal = torch.zeros(1, 4)
    return model, z0, goal, TrajectoryObjective(prior_weight=R_WEIGHT)


def test_closed_form_matches_torch_objective(problem) -> None:
    model, z0, goal, obj = problem
    plan, cost = lq_optimum(model, z0, goal, H, R_WEIGHT)
    total, terms = objective_of(obj, model, z0, plan[None], goal)
    assert float(total[0]) == pytest.approx(cost, rel=1e-5)
    assert set(terms) == {"task", "prior"}
    # the optimum is a minimum: any perturbation costs more
    rng = np.random.default_rng(0)
    worse = plan + 0.05 * rng.standard_normal(plan.shape)
    assert float(objective_of(obj, model, z0, worse[None], goal)[0][0]) > cost


def test_gradient_planner_reaches_lq_optimum_within_1_percent(problem) -> None:
    model, z0, goal, obj = problem
    opt_plan, opt_cost = lq_optimum(model, z0, goal, H, R_WEIGHT)
    planner = GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=2000, lr=0.1, seed=0)
    plan, info = planner.plan(z0, goal)
    assert plan.shape == (H, 2)
    assert info["stopped"] == "converged"
    assert opt_cost * (1 - 1e-5) <= info["cost"] <= 1.01 * opt_cost
    reported = float(objective_of(obj, model, z0, plan[None], goal)[0][0])
    assert reported == pytest.approx(info["cost"], rel=1e-5)  # info cost is the returned plan's
    assert np.abs(plan - opt_plan).max() < 0.1 * np.abs(opt_plan).max()


@pytest.mark.parametrize("init", ["cem", "mppi"])
def test_sampler_initialized_gradient_planner_reaches_optimum(problem, init: str) -> None:
    model, z0, goal, obj = problem
    _, opt_cost = lq_optimum(model, z0, goal, H, R_WEIGHT)
    planner = GradientPlanner(
        model, H, objective=obj, bounds=LOOSE, iterations=2000, init=init, init_iterations=3,
        init_samples=128, seed=1,
    )  # fmt: skip
    _, info = planner.plan(z0, goal)
    assert info["init_rounds"] == 3
    assert info["cost"] <= 1.05 * opt_cost


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (CEMPlanner, {"samples": 512, "elites": 32, "iterations": 30}),
        (MPPIPlanner, {"samples": 512, "elites": 64, "iterations": 30}),
    ],
)
def test_cem_and_mppi_reach_lq_optimum_within_10_percent(problem, cls, kwargs) -> None:
    model, z0, goal, obj = problem
    _, opt_cost = lq_optimum(model, z0, goal, H, R_WEIGHT)
    plan, info = cls(model, H, objective=obj, bounds=LOOSE, seed=0, **kwargs).plan(z0, goal)
    assert info["iterations"] == kwargs["iterations"]
    assert opt_cost * (1 - 1e-5) <= info["cost"] <= 1.10 * opt_cost
    assert float(objective_of(obj, model, z0, plan[None], goal)[0][0]) == pytest.approx(info["cost"], rel=1e-5)


def test_random_shooting_is_worse_than_cem_on_the_same_samples(problem) -> None:
    model, z0, goal, obj = problem
    rs = RandomShootingPlanner(model, H, objective=obj, bounds=LOOSE, samples=512, iterations=10, seed=0)
    cem = CEMPlanner(model, H, objective=obj, bounds=LOOSE, samples=512, elites=32, iterations=10, seed=0)
    _, info_rs = rs.plan(z0, goal)
    _, info_cem = cem.plan(z0, goal)
    assert info_rs["iterations"] == 10
    assert info_cem["cost"] < info_rs["cost"]


ALL_SEARCHERS = [
    (GradientPlanner, {"iterations": 400}),
    (GradientPlanner, {"iterations": 50, "init": "cem"}),
    (GradientPlanner, {"iterations": 50, "init": "mppi", "langevin_std": 0.5}),
    (CEMPlanner, {"iterations": 8}),
    (MPPIPlanner, {"iterations": 8}),
    (RandomShootingPlanner, {"iterations": 4}),
]


@pytest.mark.parametrize(("cls", "kwargs"), ALL_SEARCHERS)
def test_binding_bounds_are_never_violated(problem, cls, kwargs) -> None:
    model, z0, goal, obj = problem
    # a warm start far outside the box must not leak out either
    warm = torch.full((H, 2), 5.0)
    planner = cls(model, H, objective=obj, bounds=TIGHT, seed=0, **kwargs)
    for ws in (None, warm):
        plan, info = planner.plan(z0, goal, warm_start=ws)
        assert np.isfinite(plan).all()
        assert float(plan.min()) >= -0.5 and float(plan.max()) <= 0.5
        assert np.isfinite(info["cost"])


def test_gradient_planner_near_box_constrained_optimum(problem) -> None:
    model, z0, goal, obj = problem
    unc_plan, _ = lq_optimum(model, z0, goal, H, R_WEIGHT)
    assert np.abs(unc_plan).max() > 1.0  # the bound really binds
    _, box_cost = box_lq_optimum(model, z0, goal, H, R_WEIGHT, -0.5, 0.5)
    planner = GradientPlanner(model, H, objective=obj, bounds=TIGHT, iterations=2000, lr=0.2, seed=0)
    plan, info = planner.plan(z0, goal)
    assert box_cost * (1 - 1e-5) <= info["cost"] <= 1.02 * box_cost
    assert float(np.abs(plan).max()) < 0.5  # tanh keeps it strictly inside


def test_warm_start_gives_a_near_optimal_plan_within_a_few_iterations(problem) -> None:
    """What MPC wants from a warm start: a good plan at once. (With Adam it does not cut the iterations
    to *settle*: Adam's first steps have the size of the learning rate whatever the gradient, so a
    near-optimal start is kicked and settles again; the best plan seen is kept all the while.)"""
    model, z0, goal, obj = problem
    plan, _ = GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=2000, seed=0).plan(z0, goal)
    z1 = model.step(z0, torch.from_numpy(plan[:1])).detach()  # one MPC tick later
    _, opt1 = lq_optimum(model, z1, goal, H, R_WEIGHT)
    few = GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=10, seed=0)
    _, cold = few.plan(z1, goal)
    _, warm = few.plan(z1, goal, warm_start=shift_plan(plan))
    assert warm["cost"] <= 1.01 * opt1 < 1.5 * opt1 < cold["cost"]


@pytest.mark.parametrize("cls", [GradientPlanner, CEMPlanner, MPPIPlanner, RandomShootingPlanner])
def test_budget_ms_is_honoured_and_anytime(problem, cls) -> None:
    model, z0, goal, obj = problem
    kwargs = {"patience": 0, "lr": 0.01} if cls is GradientPlanner else {}
    planner = cls(model, H, objective=obj, bounds=LOOSE, iterations=10**6, seed=0, **kwargs)
    _, short = planner.plan(z0, goal, budget_ms=20.0)
    planner.rng = np.random.default_rng(0)
    _, long = planner.plan(z0, goal, budget_ms=80.0)
    for info, budget in ((short, 20.0), (long, 80.0)):
        assert 1 <= info["iterations"] < 10**6
        # an iteration takes 1-5 ms here; the slack covers scheduling spikes on a shared 2-core CPU
        assert info["plan_ms"] <= 1.5 * budget + 10.0
    assert long["iterations"] > short["iterations"]
    if cls is not MPPIPlanner:  # best-so-far planners only get better with time
        assert long["cost"] <= short["cost"]


def test_an_expired_budget_returns_the_best_evaluated_start(problem) -> None:
    model, z0, goal, obj = problem
    warm = torch.linspace(-1, 1, H * 2).reshape(H, 2)
    planner = GradientPlanner(model, H, objective=obj, bounds=LOOSE, restarts=1, iterations=100)
    plan, info = planner.plan(z0, goal, warm_start=warm, budget_ms=1e-3)
    assert info["iterations"] == 1 and info["stopped"] == "budget"
    np.testing.assert_allclose(plan, warm.numpy(), atol=1e-5, rtol=1e-5)  # evaluated, no gradient step
    assert info["cost"] == pytest.approx(float(objective_of(obj, model, z0, warm[None], goal)[0][0]), rel=1e-5)


def test_policy_only_returns_the_policy_chunk(problem) -> None:
    model, z0, goal, obj = problem
    chunk = torch.linspace(-1, 1, 10 * 2).reshape(10, 2)
    pmodel = DoubleIntegrator(dims=2, dt=0.2, policy_plan=chunk)
    plan, info = PolicyPlanner(pmodel, objective=obj).plan(z0, goal)
    assert np.array_equal(plan, chunk.numpy())
    assert info["iterations"] == 0 and np.isfinite(info["cost"])
    fitted, _ = PolicyPlanner(pmodel, horizon=H, objective=obj).plan(z0, goal)
    assert fitted.shape == (H, 2)
    assert np.array_equal(fitted[:10], chunk.numpy()) and np.array_equal(fitted[10:], chunk[-1:].expand(6, 2).numpy())
    with pytest.raises(TypeError, match="no policy head"):
        PolicyPlanner(model)


def test_policy_chunk_warm_starts_the_gradient_planner(problem) -> None:
    model, z0, goal, obj = problem
    opt_plan, opt_cost = lq_optimum(model, z0, goal, H, R_WEIGHT)
    pmodel = DoubleIntegrator(dims=2, dt=0.2, policy_plan=torch.tensor(opt_plan, dtype=torch.float32))
    # with a policy prior the objective pulls toward the chunk; weight 0 keeps the LQ problem
    planner = GradientPlanner(pmodel, H, objective=TrajectoryObjective(), bounds=LOOSE, iterations=1)
    _, info = planner.plan(z0, goal)
    task_only = float(objective_of(TrajectoryObjective(), model, z0, opt_plan[None], goal)[0][0])
    assert info["iterations"] == 1
    assert info["cost"] == pytest.approx(task_only, rel=1e-3)
    no_pi = GradientPlanner(pmodel, H, objective=TrajectoryObjective(), bounds=LOOSE, iterations=1, use_policy=False)
    assert no_pi.plan(z0, goal)[1]["cost"] > 2 * info["cost"]


@pytest.mark.parametrize("warm", [False, True])
def test_min_gain_keeps_the_policy_chunk_unless_a_plan_beats_it_clearly(problem, warm: bool) -> None:
    model, z0, goal, _ = problem
    opt_plan, _ = lq_optimum(model, z0, goal, H, R_WEIGHT)
    obj = TrajectoryObjective(prior_weight=0.01)
    near = 0.97 * opt_plan  # a chunk a few percent above the optimum's cost
    for chunk, gain, kept in ((near, 0.5, True), (near, 0.0, False), (np.zeros_like(opt_plan), 0.5, False)):
        pmodel = DoubleIntegrator(dims=2, dt=0.2, policy_plan=torch.tensor(chunk, dtype=torch.float32))
        planner = GradientPlanner(pmodel, H, objective=obj, bounds=LOOSE, iterations=300, seed=0, min_gain=gain)
        start = torch.tensor(chunk + 0.5, dtype=torch.float32) if warm else None
        plan, info = planner.plan(z0, goal, warm_start=start)
        chunk_cost = float(objective_of(obj, model, z0, chunk[None], goal, prior=chunk)[0][0])
        assert info["kept_policy"] is kept
        if kept:
            assert np.array_equal(plan, chunk.astype(np.float32))
            assert info["cost"] == pytest.approx(chunk_cost, rel=1e-3)
        else:
            assert info["cost"] < chunk_cost * (1 - gain)
    with pytest.raises(ValueError, match="min_gain"):
        GradientPlanner(model, H, min_gain=1.0)


def test_model_parameters_stay_frozen_and_gradient_free(problem) -> None:
    model, z0, goal, obj = problem
    before = model.F.detach().clone()
    GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=20).plan(z0, goal)
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.F, before)


def test_same_seed_same_plan(problem) -> None:
    model, z0, goal, obj = problem
    plans = [
        GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=30, seed=3).plan(z0, goal)[0]
        for _ in range(2)
    ]
    assert np.array_equal(plans[0], plans[1])


def test_bad_inputs_are_refused_with_clear_messages(problem) -> None:
    model, z0, goal, obj = problem
    planner = GradientPlanner(model, H, objective=obj, bounds=LOOSE, iterations=2)
    with pytest.raises(ValueError, match=r"\(1, Z\)"):
        planner.plan(z0.expand(2, -1), goal)
    with pytest.raises(ValueError, match="warm_start"):
        planner.plan(z0, goal, warm_start=torch.zeros(H - 1, 2))
    with pytest.raises(ValueError, match="high > low"):
        GradientPlanner(model, H, bounds=Bounds(1.0, -1.0))
    with pytest.raises(ValueError, match="budget_ms"):
        planner.plan(z0, goal, budget_ms=0.0)
    with pytest.raises(TypeError, match="missing"):
        GradientPlanner(object(), H)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_inline_optimizer_matches_torch_optim(kind: str) -> None:
    from planners.gradient import _Optimizer

    gen = torch.Generator().manual_seed(0)
    u_ref = torch.randn(4, 3, generator=gen).requires_grad_(True)
    u = u_ref.detach().clone()
    if kind == "adam":
        ref = torch.optim.Adam([u_ref], lr=0.1)
    else:
        ref = torch.optim.SGD([u_ref], lr=0.1, momentum=0.9, nesterov=True)
    mine = _Optimizer(u.numpy(), kind, 0.1)
    for _ in range(25):
        g = torch.randn(4, 3, generator=gen)
        u_ref.grad = g.clone()
        ref.step()
        mine.step(g.numpy())
    np.testing.assert_allclose(mine.u, u_ref.detach().numpy(), atol=1e-5, rtol=1e-5)


def test_shipped_grad_config_reaches_the_lq_optimum_from_20_random_starts() -> None:
    """Issue 14's defect: the stall counter used to count Adam's overshoots (the best plan waits while the
    iterate moves) as convergence and stopped at 3.4x the optimum. The shipped settings (budget aside:
    it depends on the machine) must reach 1.01 of a bounded LQ problem whose optimum is inside the box."""
    from planners.registry import make_planner, split_mpc_settings
    from planners.shipped import planner_config

    model = DoubleIntegrator(dims=2, dt=0.2)
    cfg, _ = split_mpc_settings(planner_config("grad"))
    r = cfg["objective"]["prior_weight"]  # no policy: the prior term is r ||a||^2, the LQ control cost
    rng = np.random.default_rng(20)
    ratios = []
    while len(ratios) < 20:
        z0, goal = torch.tensor(rng.uniform(-1, 1, (1, 4)), dtype=torch.float32), torch.zeros(1, 4)
        opt_plan, opt_cost = lq_optimum(model, z0, goal, H, r)
        if np.abs(opt_plan).max() >= 0.9:  # keep the optimum inside the [-1, 1] box
            continue
        _, info = make_planner(cfg, model).plan(z0, goal)
        ratios.append(info["cost"] / opt_cost)
    assert max(ratios) <= 1.01, np.round(ratios, 4)
