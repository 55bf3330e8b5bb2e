"""Trajectory objective terms and the goal-latent adapter."""

from __future__ import annotations

import pytest
import torch

from planners.analytic import DoubleIntegrator
from planners.gradient import GradientPlanner
from planners.objectives import GoalLatentObjective, TrajectoryObjective, flat_cost


@pytest.fixture
def model() -> DoubleIntegrator:
    return DoubleIntegrator(dims=2, dt=0.2).requires_grad_(False)


def test_named_terms_match_a_hand_computation(model: DoubleIntegrator) -> None:
    gen = torch.Generator().manual_seed(0)
    z0, goal = torch.randn(1, 4, generator=gen), torch.randn(1, 4, generator=gen)
    actions = torch.randn(3, 5, 2, generator=gen)  # (N, H, A)
    prior = torch.randn(5, 2, generator=gen)
    obj = TrajectoryObjective(step_weight=2.0, terminal_weight=3.0, discount=0.9, prior_weight=0.5, smooth_weight=0.25)
    total, terms = obj(model, z0, actions, task=goal, prior=prior)
    assert set(terms) == {"task", "terminal", "prior", "smooth"} == set(obj.weights)
    for n in range(3):
        z, run, c = z0, 0.0, None
        for t in range(5):
            z = model.step(z, actions[n, t : t + 1])
            c = float(model.cost(z, goal)[0])
            run += 0.9**t * c
        assert float(terms["task"][n]) == pytest.approx(2.0 * run, rel=1e-5)
        assert float(terms["terminal"][n]) == pytest.approx(3.0 * c, rel=1e-5)
        assert float(terms["prior"][n]) == pytest.approx(0.5 * float((actions[n] - prior).square().sum()), rel=1e-5)
        smooth = float((actions[n, 1:] - actions[n, :-1]).square().sum())
        assert float(terms["smooth"][n]) == pytest.approx(0.25 * smooth, rel=1e-5)
    assert torch.allclose(total, sum(terms.values()))


def test_zero_weights_are_left_out_and_all_zero_is_refused(model: DoubleIntegrator) -> None:
    z0, goal, actions = torch.zeros(1, 4), torch.ones(1, 4), torch.zeros(2, 3, 2)
    _, terms = TrajectoryObjective()(model, z0, actions, goal)
    assert set(terms) == {"task"}
    with pytest.raises(ValueError, match="zero"):
        TrajectoryObjective(step_weight=0.0)(model, z0, actions, goal)
    with pytest.raises(ValueError, match="discount"):
        TrajectoryObjective(discount=0.0)
    with pytest.raises(ValueError, match="prior_weight"):
        TrajectoryObjective(prior_weight=-1.0)


def test_flat_cost_broadcasts_a_shared_or_per_plan_task(model: DoubleIntegrator) -> None:
    z = torch.randn(3, 4, 4)
    shared = flat_cost(model, z, torch.ones(1, 4))
    per_plan = flat_cost(model, z, torch.ones(3, 4))
    assert shared.shape == (3, 4) and torch.allclose(shared, per_plan)
    with pytest.raises(ValueError, match="task batch"):
        flat_cost(model, z, torch.ones(2, 4))


def test_goal_latent_objective_plans_toward_the_goal(model: DoubleIntegrator) -> None:
    goal_model = GoalLatentObjective(model, metric="l2")
    z_goal = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert float(goal_model.cost(z_goal, z_goal)[0]) == 0.0
    assert not callable(getattr(goal_model, "policy", None))
    z0 = torch.zeros(1, 4)
    obj = TrajectoryObjective(terminal_weight=20.0)
    plan, info = GradientPlanner(goal_model, horizon=12, objective=obj, iterations=300, seed=0).plan(z0, z_goal)
    final = model.rollout(z0, plan[None])[0, -1]
    assert float((final[:2] - z_goal[0, :2]).norm()) < 0.1
    start_cost = float(obj(goal_model, z0, torch.zeros(1, 12, 2), z_goal)[0][0])
    assert info["cost"] < 0.25 * start_cost
    cos = GoalLatentObjective(model, metric="cosine")
    assert float(cos.cost(2 * z_goal, z_goal)[0]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="metric"):
        GoalLatentObjective(model, metric="l1")


def test_goal_latent_objective_exposes_the_policy_with_its_task() -> None:
    chunk = torch.full((4, 2), 0.25)
    inner = DoubleIntegrator(dims=2, policy_plan=chunk)
    wrapped = GoalLatentObjective(inner, policy_task=torch.zeros(1, 3))
    assert torch.equal(wrapped.policy(torch.zeros(2, 4), torch.zeros(1, 4)), chunk.expand(2, 4, 2))


def test_package_re_exports_lazily() -> None:
    import planners
    from planners.gradient import GradientPlanner

    assert planners.GradientPlanner is GradientPlanner
    assert set(planners.PLANNERS) >= {"grad", "cem", "mppi", "random", "policy"}
    with pytest.raises(AttributeError, match="no attribute"):
        _ = planners.NoSuchThing
