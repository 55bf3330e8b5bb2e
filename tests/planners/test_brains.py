"""PlannerBrain / PolicyBrain on a real (small, randomly initialized) WorldModel checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.exporter import ExportSettings
from hardware.brain import Brain, load_brain
from latent_vla.base.robot_spec import SO101
from latent_vla.checkpoint import load_checkpoint
from planners.brains import PlannerBrain, PolicyBrain
from planners.gradient import GradientPlanner
from planners.policy import PolicyPlanner
from planners.registry import PLANNERS, make_planner, split_mpc_settings
from planners.shipped import planner_config, planner_config_with

INSTRUCTION = "reach the red target"


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_an_objective_override_keeps_the_other_weights() -> None:
    """``export.grad.objective.prior_weight=4`` (the multi-task recipe's) changes that weight alone; the bundle's
    baked objective and its recorded grad config both carry it, beside the shipped step and disagreement weights."""
    shipped = planner_config("grad")
    assert shipped["objective"]["prior_weight"] != 4
    grad = planner_config_with("grad", {"objective": {"prior_weight": 4}, "iterations": 7})
    assert grad["objective"] == {**shipped["objective"], "prior_weight": 4} and grad["iterations"] == 7
    assert planner_config_with("grad", None) == shipped
    settings = ExportSettings(grad={"objective": {"prior_weight": 4}}, precisions=("fp32",))
    assert settings.grad["objective"] == grad["objective"] and settings.objective.prior_weight == 4
    assert settings.cem["objective"] == planner_config("cem")["objective"]  # other modes keep their own


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_shipped_planner_config_builds_and_plans(name: str, random_checkpoint_dir) -> None:
    ckpt = load_checkpoint(random_checkpoint_dir)
    cfg = planner_config(name)
    assert cfg["name"] == name
    planner = make_planner(split_mpc_settings(cfg)[0], ckpt.model)
    task = ckpt.embed_instruction([INSTRUCTION])
    z0 = torch.softmax(torch.randn(1, ckpt.model.latent_dim), -1)
    plan, info = planner.plan(z0, task)
    assert isinstance(plan, np.ndarray) and plan.dtype == np.float32
    assert plan.shape[-1] == 6 and np.isfinite(plan).all()
    assert float(np.abs(plan).max()) <= 1.0
    assert {"iterations", "cost", "plan_ms"} <= set(info)
    assert not any(p.requires_grad for p in ckpt.model.parameters())


def test_planner_brain_maps_observations_to_joint_targets(random_checkpoint_dir, robot_observation) -> None:
    brain = PlannerBrain(random_checkpoint_dir, "grad", INSTRUCTION, iterations=5, horizon=8, budget_ms=None)
    assert isinstance(brain, Brain)
    action = brain.act(robot_observation)
    assert list(action) == SO101.action_keys
    vec = SO101.action_to_vector(action)
    norm = brain.checkpoint.normalizer
    assert np.all(vec >= norm.action_min - 1e-4) and np.all(vec <= norm.action_max + 1e-4)
    # the executed action is the first step of the plan, mapped back to robot units
    expected = norm.action_from_model(brain.last_plan[0])
    np.testing.assert_allclose(vec, expected, rtol=1e-5, atol=1e-4)
    assert brain.stats()["plans"] == 1
    frames = brain.imagine()
    assert frames is not None and frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    brain.reset("reach the blue target")
    assert brain.stats()["plans"] == 0 and brain.instruction == "reach the blue target"


def test_planner_brain_is_deterministic_for_a_seed(random_checkpoint_dir, robot_observation) -> None:
    ckpt = load_checkpoint(random_checkpoint_dir)
    acts = []
    for _ in range(2):
        planner = GradientPlanner(ckpt.model, horizon=6, iterations=4, seed=7)
        acts.append(PlannerBrain(ckpt, planner, INSTRUCTION).act(robot_observation))
    assert acts[0] == acts[1]


def test_policy_brain_executes_the_policy_chunk(random_checkpoint_dir, robot_observation) -> None:
    brain = PolicyBrain(random_checkpoint_dir, INSTRUCTION, n_execute=2)
    ckpt = brain.checkpoint
    z = ckpt.encode_observation(robot_observation, ckpt.embed_instruction([INSTRUCTION]))
    with torch.no_grad():
        chunk = ckpt.model.policy(z, ckpt.embed_instruction([INSTRUCTION]))[0]  # (K, A)
    first = SO101.action_to_vector(brain.act(robot_observation))
    second = SO101.action_to_vector(brain.act(robot_observation))  # from the queue, no re-plan
    np.testing.assert_allclose(first, ckpt.normalizer.action_from_model(chunk[0].numpy()), atol=1e-4)
    np.testing.assert_allclose(second, ckpt.normalizer.action_from_model(chunk[1].numpy()), atol=1e-4)
    assert brain.stats()["plans"] == 1


def test_hardware_load_brain_builds_torch_brains(random_checkpoint_dir, robot_observation) -> None:
    brain = load_brain(str(random_checkpoint_dir), INSTRUCTION, mode="grad", iterations=3, horizon=4)
    assert isinstance(brain, PlannerBrain)
    assert set(brain.act(robot_observation)) == set(SO101.action_keys)
    assert isinstance(load_brain(str(random_checkpoint_dir), INSTRUCTION, mode="policy").planner, PolicyPlanner)


def test_brain_errors_are_clear(random_checkpoint_dir, robot_observation) -> None:
    brain = PlannerBrain(random_checkpoint_dir, "cem", None, iterations=1)
    with pytest.raises(RuntimeError, match="no instruction"):
        brain.act(robot_observation)
    brain.reset(INSTRUCTION)
    with pytest.raises(KeyError, match="wrist"):
        brain.act({k: v for k, v in robot_observation.items() if k != "wrist"})
    with pytest.raises(ValueError, match="no planner config"):
        PlannerBrain(random_checkpoint_dir, "nope")
    with pytest.raises(TypeError, match="no_such_arg"):
        PlannerBrain(random_checkpoint_dir, "grad", no_such_arg=1)
