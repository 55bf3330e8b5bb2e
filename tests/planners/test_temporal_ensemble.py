"""Temporal ensembling (ACT) of overlapping plans: the blend, the MPC option, the brains' defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.base.temporal_ensemble import TemporalEnsemble
from planners.analytic import DoubleIntegrator
from planners.brains import PlannerBrain, PolicyBrain
from planners.common import Bounds
from planners.gradient import GradientPlanner
from planners.mpc import MPC
from planners.objectives import TrajectoryObjective
from planners.registry import make_planner
from planners.shipped import planner_config

INSTRUCTION = "touch the red cube"


def test_blend_is_the_decayed_mean_of_the_plans_covering_the_tick() -> None:
    ens = TemporalEnsemble(decay=0.5)
    p0 = np.array([[0.0], [1.0], [2.0]])  # made at tick 0, covers ticks 0..2
    p1 = np.array([[10.0], [11.0], [12.0]])  # tick 1, covers 1..3
    p2 = np.array([[20.0], [21.0], [22.0]])  # tick 2, covers 2..4
    assert ens.blend(p0) == pytest.approx([0.0])
    w = np.exp(-0.5 * np.array([1.0, 0.0]))  # ages of p0, p1 at tick 1
    assert ens.blend(p1) == pytest.approx([(w[0] * 1.0 + w[1] * 10.0) / w.sum()])
    w = np.exp(-0.5 * np.array([2.0, 1.0, 0.0]))
    assert ens.blend(p2) == pytest.approx([(w @ np.array([2.0, 11.0, 20.0])) / w.sum()])
    # tick 3: p0 (3 actions) no longer covers it
    p3 = np.full((3, 1), 30.0)
    w = np.exp(-0.5 * np.array([2.0, 1.0, 0.0]))
    assert ens.blend(p3) == pytest.approx([(w @ np.array([12.0, 21.0, 30.0])) / w.sum()])
    ens.reset()
    assert ens.tick == 0 and ens.blend(p1) == pytest.approx([10.0])


def test_plain_mean_and_clear_errors() -> None:
    ens = TemporalEnsemble(0.0)
    ens.blend(np.array([[0.0, 2.0], [4.0, 6.0]]))
    assert ens.blend(np.array([[8.0, 10.0], [0.0, 0.0]])) == pytest.approx([6.0, 8.0])
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="decay"):
            TemporalEnsemble(bad)
    with pytest.raises(ValueError, match=r"\(H, A\)"):
        ens.blend(np.zeros(3))


def test_window_blends_only_the_plans_of_the_last_ticks() -> None:
    ens = TemporalEnsemble(0.0, window=2)
    plans = [np.full((4, 1), 10.0 * k) + np.arange(4.0)[:, None] for k in range(3)]  # plan k: 10k + [0..3]
    assert ens.blend(plans[0]) == pytest.approx([0.0])
    assert ens.blend(plans[1]) == pytest.approx([(1.0 + 10.0) / 2])
    assert ens.blend(plans[2]) == pytest.approx([(11.0 + 20.0) / 2])  # plan 0 (age 2) no longer counts
    unbounded = TemporalEnsemble(0.0)
    for p in plans[:2]:
        unbounded.blend(p)
    assert unbounded.blend(plans[2]) == pytest.approx([(2.0 + 11.0 + 20.0) / 3])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            TemporalEnsemble(0.0, window=bad)


def test_brains_take_the_window_from_the_planner_config(random_checkpoint_dir) -> None:
    brain = PlannerBrain(random_checkpoint_dir, {**planner_config("grad"), "temporal_window": 3}, INSTRUCTION)
    assert brain.mpc.ensemble is not None and brain.mpc.ensemble.window == 3
    assert PlannerBrain(random_checkpoint_dir, "grad", INSTRUCTION).mpc.ensemble.window == 8  # the shipped config
    unbounded = PlannerBrain(random_checkpoint_dir, {**planner_config("grad"), "temporal_window": None}, INSTRUCTION)
    assert unbounded.mpc.ensemble.window is None


def test_mpc_with_temporal_ensemble_plans_every_tick_and_still_arrives() -> None:
    torch.set_num_threads(1)
    model = DoubleIntegrator(dims=2, dt=0.2)
    planner = GradientPlanner(model, 10, objective=TrajectoryObjective(prior_weight=0.05), bounds=Bounds(-2, 2),
                              iterations=60, seed=0)  # fmt: skip
    mpc = MPC(planner, temporal_ensemble=0.1)
    z, goal = torch.tensor([[1.0, -0.5, 0.0, 0.0]]), torch.zeros(1, 4)
    first_plan = None
    for t in range(30):
        assert mpc.needs_plan
        a = mpc.act(z, goal)
        if t == 0:
            first_plan = mpc.last_plan.copy()
            np.testing.assert_allclose(a, first_plan[0], rtol=1e-6)  # one plan: its own first action
        elif t == 1:
            w = np.exp(-0.1 * np.array([1.0, 0.0]))
            expect = (w[0] * first_plan[1] + w[1] * mpc.last_plan[0]) / w.sum()
            np.testing.assert_allclose(a, expect, rtol=1e-5, atol=1e-6)
        z = model.step(z, torch.from_numpy(a)[None]).detach()
    assert float(z[0, :2].norm()) < 0.1 and len(mpc.records) == 30
    mpc.reset()
    assert mpc.ensemble is not None and mpc.ensemble.tick == 0
    with pytest.raises(ValueError, match="n_execute=1"):
        MPC(planner, n_execute=4, temporal_ensemble=0.0)
    with pytest.raises(ValueError, match="decay"):
        MPC(planner, temporal_ensemble=-1.0)


def test_shipped_configs_turn_it_on_unless_chunks_run_open_loop(random_checkpoint_dir, robot_observation) -> None:
    for name in ("grad", "cem", "mppi", "random", "policy"):
        assert planner_config(name)["temporal_ensemble"] == 0.0
    cfg = planner_config("policy")
    brain = PolicyBrain(random_checkpoint_dir, INSTRUCTION)
    assert brain.mpc.ensemble is not None and brain.mpc.ensemble.decay == 0.0
    assert PolicyBrain(random_checkpoint_dir, INSTRUCTION, n_execute=4).mpc.ensemble is None
    assert PolicyBrain(random_checkpoint_dir, INSTRUCTION, temporal_ensemble=0.3).mpc.ensemble.decay == 0.3
    assert PlannerBrain(random_checkpoint_dir, "grad", INSTRUCTION, n_execute=2).mpc.ensemble is None
    assert PlannerBrain(random_checkpoint_dir, "grad", INSTRUCTION).mpc.ensemble is not None  # every shipped config
    # make_planner skips the loop's key, so a shipped config still builds a bare planner
    assert make_planner(cfg, brain.model).name == "policy"
    # two ticks on the same observation: the second action blends chunk[1] (age 1) and chunk[0] (age 0)
    ckpt = brain.checkpoint
    task = ckpt.embed_instruction([INSTRUCTION])
    with torch.no_grad():
        chunk = ckpt.model.policy(ckpt.encode_observation(robot_observation, task), task)[0].numpy()
    brain.act(robot_observation)
    second = ckpt.spec.action_to_vector(brain.act(robot_observation))
    np.testing.assert_allclose(second, ckpt.normalizer.action_from_model((chunk[0] + chunk[1]) / 2), atol=1e-3)
    assert brain.stats()["plans"] == 2
