"""Planners on the shared tiny *trained* checkpoint: search beats no search on the model's own objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.checkpoint import load_checkpoint
from planners.brains import PlannerBrain
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.policy import PolicyPlanner
from planners.sampling import RandomShootingPlanner

INSTRUCTION = "reach the red target"


def _observations(ckpt, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    spec, norm = ckpt.spec, ckpt.normalizer
    out = []
    for _ in range(n):
        state = rng.uniform(norm.action_min, norm.action_max)
        obs: dict = dict(spec.vector_to_action(state))
        for cam in ckpt.model.camera_names:
            obs[cam] = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
        out.append(obs)
    return out


@pytest.mark.slow
def test_gradient_planner_beats_policy_and_random_shooting_on_a_trained_model(tiny_checkpoint_dir) -> None:
    torch.set_num_threads(1)
    ckpt = load_checkpoint(tiny_checkpoint_dir)
    model = ckpt.model
    task = ckpt.embed_instruction([INSTRUCTION])
    obj = TrajectoryObjective()  # the model's predicted cost only: the same yardstick for all
    grad = GradientPlanner(model, horizon=16, iterations=40, objective=obj, patience=0, seed=0)
    rs = RandomShootingPlanner(model, horizon=16, samples=256, objective=obj, use_policy=False, seed=0)
    pol = PolicyPlanner(model, horizon=16, objective=obj)
    wins = 0
    for obs in _observations(ckpt, 4):
        z0 = ckpt.encode_observation(obs, task)
        plan, g = grad.plan(z0, task)
        _, p = pol.plan(z0, task)
        _, r = rs.plan(z0, task)
        assert g["cost"] <= p["cost"] + 1e-6  # the policy's chunk is one restart; the best is kept
        assert all(b <= a + 1e-9 for a, b in zip(g["cost_curve"], g["cost_curve"][1:], strict=False))
        assert float(np.abs(plan).max()) < 1.0
        wins += g["cost"] < r["cost"]
    assert wins >= 3  # gradient search finds cheaper plans than 256 random ones


@pytest.mark.slow
def test_trained_planner_brain_is_repeatable_across_episodes(tiny_checkpoint_dir) -> None:
    torch.set_num_threads(1)
    ckpt = load_checkpoint(tiny_checkpoint_dir)
    obs = _observations(ckpt, 1)[0]
    brain = PlannerBrain(ckpt, "grad", INSTRUCTION, iterations=5, budget_ms=None)
    first = brain.act(obs)
    brain.act(obs)  # warm-started tick
    assert brain.stats()["plans"] == 2
    brain.reset(INSTRUCTION)  # forgets the warm start: the same seed replays the first tick exactly
    brain.planner.rng = np.random.default_rng(0)
    assert brain.act(obs) == pytest.approx(first)
