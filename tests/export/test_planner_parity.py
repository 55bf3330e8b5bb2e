"""Every planner is written once and runs on two backends: the same model, seed, start latent and warm
start give the same plan through PyTorch autograd and through the bundle's onnxruntime graphs
(max |difference| <= 1e-4 for the samplers and the policy, <= 1e-3 after 20 gradient iterations),
with a binding box and the prior and smoothness terms switched on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import HORIZON, INSTRUCTION

from export.runtime import BundleBackend, load_bundle
from planners.common import Bounds
from planners.registry import PLANNERS

CASES = {
    "grad": ({"restarts": 4, "iterations": 20, "lr": 0.1, "patience": 0}, 1e-3),
    "cem": ({"samples": 64, "elites": 8, "iterations": 3}, 1e-4),
    "mppi": ({"samples": 64, "elites": 8, "iterations": 3, "policy_samples": 4}, 1e-4),
    "random": ({"samples": 64, "iterations": 2}, 1e-4),
    "policy": ({}, 1e-4),
}
BOX = Bounds(-0.7, 0.8)  # binds: the random policy and the samples reach past it


@pytest.fixture(scope="module")
def backends(bundle_dir, export_ckpt):
    torch.set_num_threads(1)
    return export_ckpt.model, BundleBackend(load_bundle(bundle_dir))


def _start(export_ckpt):
    g = torch.Generator().manual_seed(5)
    images = {c: torch.rand(1, 3, 32, 32, generator=g) for c in export_ckpt.model.camera_names}
    with torch.no_grad():
        task = export_ckpt.embed_instruction([INSTRUCTION])
        z = export_ckpt.model.encode(images, torch.randn(1, 6, generator=g), task)
    warm = np.random.default_rng(6).uniform(-0.9, 0.9, (HORIZON, 6)).astype(np.float32)
    return z.numpy(), task.numpy(), warm


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_planner_gives_the_same_plan_on_both_backends(name, backends, export_ckpt, export_settings) -> None:
    settings, tol = CASES[name]
    objective = export_settings.objective
    assert objective.prior_weight > 0 and objective.smooth_weight > 0 and objective.terminal_weight > 0
    z, task, warm = _start(export_ckpt)
    plans, infos = [], []
    for backend in backends:
        planner = PLANNERS[name](backend, horizon=HORIZON, objective=objective, bounds=BOX, seed=3, **settings)
        plan, info = planner.plan(z, task, warm_start=warm)
        plans.append(plan)
        infos.append(info)
    torch_plan, onnx_plan = plans
    assert torch_plan.shape == (HORIZON, 6) and onnx_plan.dtype == np.float32
    assert np.abs(torch_plan - onnx_plan).max() <= tol, np.abs(torch_plan - onnx_plan).max()
    assert infos[0]["iterations"] == infos[1]["iterations"]
    assert infos[0]["cost"] == pytest.approx(infos[1]["cost"], rel=1e-4, abs=1e-5)
    assert set(infos[0]["terms"]) == set(infos[1]["terms"])
    for k, v in infos[0]["terms"].items():
        assert v == pytest.approx(infos[1]["terms"][k], rel=1e-3, abs=1e-5), k
    if name != "policy":  # the policy's chunk is executed as it is; the box bounds the search
        assert float(torch_plan.min()) >= -0.7 - 1e-6 and float(torch_plan.max()) <= 0.8 + 1e-6


def test_the_bundle_refuses_other_model_term_weights(backends, export_settings) -> None:
    from planners.gradient import GradientPlanner
    from planners.objectives import TrajectoryObjective

    other = TrajectoryObjective(**{**export_settings.objective.to_dict(), "discount": 1.0})
    with pytest.raises(ValueError, match="must match"):
        GradientPlanner(backends[1], horizon=HORIZON, objective=other)
    with pytest.raises(ValueError, match="exactly 4 steps"):
        GradientPlanner(backends[1], horizon=HORIZON + 1, objective=export_settings.objective)
