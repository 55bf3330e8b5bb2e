"""A model with several dynamics heads exports every head (issue 15): the bundle's fused kernels roll out
each head, the disagreement term and its gradient equal PyTorch's, the gradient planner gives the same
plan with the term on both sides, and the bundle's ONNX graphs (head 0 only) refuse the term in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import HORIZON, make_checkpoint

from export.exporter import ExportSettings, export_bundle
from export.runtime import BundleBackend, load_bundle
from latent_vla.base.fused_rollout import numba_available
from latent_vla.checkpoint import load_checkpoint
from planners.backend import evaluate_objective
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.torch_backend import TorchBackend

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")
OBJECTIVE = {"prior_weight": 0.05, "disagreement_weight": 1.5}


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """(checkpoint, bundle directory) of a small random model with three dynamics heads."""
    torch.set_num_threads(1)
    run = make_checkpoint(tmp_path_factory.mktemp("ens") / "run", seed=3, dynamics_heads=3)
    ckpt = load_checkpoint(run)
    with torch.no_grad():  # trained-looking dynamics: the default init keeps every head near the identity
        for k in range(3):
            ckpt.model.dynamics_head(k)[-1].weight.mul_(10.0)
    settings = ExportSettings(horizon=HORIZON, precisions=("fp32",), objective=OBJECTIVE, default_instruction=None)
    out = export_bundle(ckpt, tmp_path_factory.mktemp("ens_bundle") / "bundle", settings, progress=False)
    return ckpt, out.path


def _start(ckpt):
    g = torch.Generator().manual_seed(4)
    z0 = ckpt.model.normalize_latent(3 * torch.randn(1, ckpt.model.latent_dim, generator=g))
    return z0.numpy(), torch.randn(1, ckpt.model.task_dim, generator=g).numpy()


def test_the_bundle_plans_with_every_head_as_pytorch_does(ensemble) -> None:
    ckpt, bundle_dir = ensemble
    objective = TrajectoryObjective.from_dict(OBJECTIVE)
    torch_backend = TorchBackend(ckpt.model, objective, fused=False)  # autograd: the reference
    bundle_backend = BundleBackend(load_bundle(bundle_dir), fused=True)
    assert torch_backend.heads == bundle_backend.heads == 3
    z0, task = _start(ckpt)
    actions = np.random.default_rng(1).uniform(-0.9, 0.9, (5, HORIZON, 6)).astype(np.float32)
    ref, got = (evaluate_objective(b, objective, b.prepare(z0, task), actions, None, grad=True)
                for b in (torch_backend, bundle_backend))  # fmt: skip
    assert np.all(ref[1]["disagreement"] > 0)
    np.testing.assert_allclose(got[1]["disagreement"], ref[1]["disagreement"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[2], ref[2], atol=1e-4 * np.abs(ref[2]).max())
    settings = {"horizon": HORIZON, "restarts": 2, "iterations": 10, "objective": objective, "patience": 0}
    plans = [GradientPlanner(b, **settings).plan(z0, task)[0]
             for b in (TorchBackend(ckpt.model, objective, fused=True), bundle_backend)]  # fmt: skip
    np.testing.assert_allclose(plans[0], plans[1], atol=1e-3)


def test_the_onnx_graphs_refuse_the_term_in_one_line(ensemble) -> None:
    ckpt, bundle_dir = ensemble
    backend = BundleBackend(load_bundle(bundle_dir), fused=False)
    assert backend.heads == 1
    objective = TrajectoryObjective.from_dict(OBJECTIVE)
    z0, task = _start(ckpt)
    with pytest.raises(ValueError, match="fused kernel only") as err:
        evaluate_objective(backend, objective, backend.prepare(z0, task), np.zeros((1, HORIZON, 6), np.float32), None)
    assert "\n" not in str(err.value)
