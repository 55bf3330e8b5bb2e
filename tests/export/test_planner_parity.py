"""Every planner is written once and runs on two backends: the same model, seed, start latent and warm
start give the same plan through PyTorch autograd and through the bundle's onnxruntime graphs
(max |difference| <= 1e-4 for the samplers and the policy, <= 1e-3 after 20 gradient iterations),
with a binding box and the prior and smoothness terms switched on; and the same through the fused
planning kernel on each side (the checkpoint's weights vs the bundle's exported tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import HORIZON, INSTRUCTION

from export.runtime import BundleBackend, load_bundle
from latent_vla.base.fused_rollout import numba_available
from planners.common import Bounds
from planners.registry import PLANNERS
from planners.torch_backend import TorchBackend

CASES = {
    "grad": ({"restarts": 4, "iterations": 20, "lr": 0.1, "patience": 0}, 1e-3),
    "cem": ({"samples": 64, "elites": 8, "iterations": 3}, 1e-4),
    "mppi": ({"samples": 64, "elites": 8, "iterations": 3, "policy_samples": 4}, 1e-4),
    "random": ({"samples": 64, "iterations": 2}, 1e-4),
    "policy": ({}, 1e-4),
}
BOX = Bounds(-0.7, 0.8)  # binds: the random policy and the samples reach past it


@pytest.fixture(scope="module", params=["graphs", "fused"])
def backends(request, bundle_dir, export_ckpt, export_settings):
    """(PyTorch backend, bundle backend): autograd vs the ONNX graphs, or the fused kernel on both sides."""
    torch.set_num_threads(1)
    fused = request.param == "fused"
    if fused and not numba_available():
        pytest.skip("numba not installed")
    torch_backend = TorchBackend(export_ckpt.model, export_settings.objective, fused=fused)
    bundle_backend = BundleBackend(load_bundle(bundle_dir), fused=fused)
    assert (torch_backend.fused is None) == (bundle_backend.fused is None) == (not fused)
    return torch_backend, bundle_backend


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


def test_the_fused_kernel_is_in_the_bundle_and_checked(exported, copy) -> None:
    """The export writes the kernel's tensors with its parity row; a tampered tensor file is refused."""
    from export.runtime.errors import IntegrityError
    from latent_vla.base.fused_rollout import FUSED_FILE, FUSED_GRAPH

    if not numba_available():
        pytest.skip("numba not installed")
    row = next(r for r in exported.rows if r.graph == FUSED_GRAPH)
    assert row.ok and row.max_abs_err <= row.tol
    assert FUSED_GRAPH in exported.manifest.graphs and exported.manifest.model[FUSED_GRAPH]["learned_dim"] == 32
    data = bytearray((copy / FUSED_FILE).read_bytes())
    data[-1] ^= 1
    (copy / FUSED_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=FUSED_GRAPH):
        BundleBackend(load_bundle(copy), fused=True)
