"""Trajectory objective terms and the goal-latent adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planner_helpers import objective_of

from planners.analytic import DoubleIntegrator
from planners.goal import GoalLatentObjective
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.torch_backend import flat_cost


@pytest.fixture
def model() -> DoubleIntegrator:
    return DoubleIntegrator(dims=2, dt=0.2).requires_grad_(False)


def test_named_terms_match_a_hand_computation(model: DoubleIntegrator) -> None:
    gen = torch.Generator().manual_seed(0)
    z0, goal = torch.randn(1, 4, generator=gen), torch.randn(1, 4, generator=gen)
    actions = torch.randn(3, 5, 2, generator=gen)  # (N, H, A)
    prior = torch.randn(5, 2, generator=gen)
    obj = TrajectoryObjective(step_weight=2.0, terminal_weight=3.0, discount=0.9, prior_weight=0.5, smooth_weight=0.25)
    total, terms = objective_of(obj, model, z0, actions, goal, prior)
    assert set(terms) == {"task", "terminal", "prior", "smooth"} == {k for k, w in obj.weights.items() if w}
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
    np.testing.assert_allclose(total, sum(terms.values()), rtol=1e-6)


def test_zero_weights_are_left_out_and_all_zero_is_refused(model: DoubleIntegrator) -> None:
    z0, goal, actions = torch.zeros(1, 4), torch.ones(1, 4), torch.zeros(2, 3, 2)
    _, terms = objective_of(TrajectoryObjective(), model, z0, actions, goal)
    assert set(terms) == {"task"}
    with pytest.raises(ValueError, match="zero"):
        TrajectoryObjective(step_weight=0.0)
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
    final = model.rollout(z0, torch.from_numpy(plan)[None])[0, -1]
    assert float((final[:2] - z_goal[0, :2]).norm()) < 0.1
    start_cost = float(objective_of(obj, goal_model, z0, np.zeros((1, 12, 2), np.float32), z_goal)[0][0])
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


def test_action_term_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    obj = TrajectoryObjective(prior_weight=0.7, smooth_weight=0.3)
    a, prior = rng.normal(size=(2, 5, 3)).astype(np.float64), rng.normal(size=(5, 3))
    cost, grad, _ = obj.action_terms(a, prior)
    eps, numeric = 1e-6, np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        d = np.zeros_like(a)
        d[idx] = eps
        up, down = obj.action_terms(a + d, prior)[0], obj.action_terms(a - d, prior)[0]
        numeric[idx] = (up[idx[0]] - down[idx[0]]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_objective_spec_refuses_unknown_and_non_finite_settings() -> None:
    with pytest.raises(ValueError, match="unknown objective settings"):
        TrajectoryObjective.from_dict({"prior_weigth": 1.0})
    with pytest.raises(ValueError, match="finite"):
        TrajectoryObjective(prior_weight=float("nan"))
    spec = TrajectoryObjective(terminal_weight=2.0, discount=0.5)
    assert TrajectoryObjective.from_dict(spec.to_dict()) == spec
    np.testing.assert_allclose(spec.step_weights(3), [1.0, 0.5, 0.25 + 2.0])
