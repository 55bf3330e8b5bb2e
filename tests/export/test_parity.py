"""onnxruntime vs PyTorch: every fp32 graph within 1e-4, the exported gradient within 1e-3 (relative),
fp16 / int8 variants within their stated tolerances, and the numpy planners against ``planners/``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import CAMERAS, HORIZON, INSTRUCTION, random_observation

from export.runtime import ActionTerms, GradientPlanner, GradSettings, load_bundle
from planners.gradient import GradientPlanner as TorchGradientPlanner
from planners.objectives import TrajectoryObjective

FP32_TOL = 1e-4


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


def _objective(settings, with_action_terms: bool = True) -> TrajectoryObjective:
    o = settings.objective
    return TrajectoryObjective(
        step_weight=o.step_weight,
        terminal_weight=o.terminal_weight,
        discount=o.discount,
        prior_weight=o.prior_weight if with_action_terms else 0.0,
        smooth_weight=o.smooth_weight if with_action_terms else 0.0,
    )


def _torch_inputs(ckpt, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    images = {c: torch.rand(batch, 3, 32, 32, generator=g) for c in CAMERAS}
    state = torch.randn(batch, 6, generator=g)
    with torch.no_grad():
        task = ckpt.embed_instruction([INSTRUCTION])
        z = ckpt.model.encode(images, state, task)
    actions = torch.rand(batch, HORIZON, 6, generator=g) * 2 - 1
    return images, state, task, z, actions


@pytest.mark.parametrize("batch", [1, 5])
def test_fp32_graphs_match_pytorch(bundle, export_ckpt, export_settings, batch):
    model = export_ckpt.model
    images, state, task, z, actions = _torch_inputs(export_ckpt, batch, seed=batch)
    texts = [INSTRUCTION, "push the blue cube into the green zone", "an unseen zebra word"][: min(batch, 3)]
    np.testing.assert_allclose(
        bundle.embed_task(texts), export_ckpt.embed_instruction(texts).numpy(), rtol=FP32_TOL, atol=FP32_TOL
    )
    z_onnx = bundle.encode({c: v.numpy() for c, v in images.items()}, state.numpy(), task.numpy())
    np.testing.assert_allclose(z_onnx, z.numpy(), rtol=FP32_TOL, atol=FP32_TOL)
    with torch.no_grad():
        chunk = model.policy(z, task)
        total, _ = _objective(export_settings, with_action_terms=False)(model, z, actions, task)
    np.testing.assert_allclose(bundle.policy(z.numpy(), task.numpy()), chunk.numpy(), rtol=FP32_TOL, atol=FP32_TOL)
    cost, steps = bundle.rollout_cost(z.numpy(), actions.numpy(), task.numpy())
    assert steps.shape == (batch, HORIZON)
    np.testing.assert_allclose(cost, total.numpy(), rtol=FP32_TOL, atol=FP32_TOL)
    np.testing.assert_allclose(steps.sum(1), cost, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 6])
def test_exported_gradient_matches_autograd(bundle, export_ckpt, export_settings, batch):
    """cost_grad.onnx vs torch.autograd through planners' own TrajectoryObjective (task + terminal terms)."""
    _, _, task, z, actions = _torch_inputs(export_ckpt, batch, seed=10 + batch)
    a = actions.clone().requires_grad_(True)
    total, _ = _objective(export_settings, with_action_terms=False)(export_ckpt.model, z, a, task)
    (grad,) = torch.autograd.grad(total.sum(), a)
    cost, grad_onnx = bundle.cost_and_grad(z.numpy(), actions.numpy(), task.numpy())
    np.testing.assert_allclose(cost, total.detach().numpy(), rtol=FP32_TOL, atol=FP32_TOL)
    rel = np.abs(grad_onnx - grad.numpy()).max() / np.abs(grad.numpy()).max()
    assert rel < 1e-3, rel
    assert np.abs(grad.numpy()).max() > 0  # the check is not vacuous


def test_action_terms_gradient_is_exact(export_settings):
    """The numpy prior/smooth terms and their analytic gradient equal PyTorch's objective terms."""
    o = export_settings.objective
    terms = ActionTerms(o.prior_weight, o.smooth_weight)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, HORIZON, 6)).astype(np.float32)
    prior = rng.uniform(-1, 1, (HORIZON, 6)).astype(np.float32)
    cost, grad = terms(a, prior)
    at = torch.from_numpy(a).requires_grad_(True)
    ref = o.prior_weight * (at - torch.from_numpy(prior)).square().sum((1, 2))
    ref = ref + o.smooth_weight * at.diff(dim=1).square().sum((1, 2))
    (g,) = torch.autograd.grad(ref.sum(), at)
    np.testing.assert_allclose(cost, ref.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(grad, g.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("precision", "tol"), [("fp16", 2e-2), ("int8", 0.1)])
def test_variants_within_stated_tolerance(bundle_dir, export_ckpt, calib_obs, exported, precision, tol):
    """Encoder + policy variants on dataset observations; the tolerances are the ones in docs/export.md."""
    variant = load_bundle(bundle_dir, precision=precision)
    assert variant.sessions["encoder"].spec.precision == precision
    assert variant.sessions["rollout_cost"].spec.precision == "fp32"  # no variant: falls back to fp32
    task = export_ckpt.embed_instruction([INSTRUCTION])
    errs_z, errs_a = [], []
    for obs, _ in calib_obs:
        images, state = export_ckpt.observation_to_model(obs)
        with torch.no_grad():
            z = export_ckpt.model.encode(images, state, task)
            chunk = export_ckpt.model.policy(z, task)
        z_v = variant.encode({c: v.numpy() for c, v in images.items()}, state.numpy(), task.numpy())
        errs_z.append(np.abs(z_v - z.numpy()).max())
        errs_a.append(np.abs(variant.policy(z.numpy(), task.numpy()) - chunk.numpy()).max())
    assert max(errs_z) < tol and max(errs_a) < tol, (max(errs_z), max(errs_a))
    rows = {(r.graph, r.precision): r for r in exported.rows}
    assert rows[("encoder", precision)].ok and rows[("policy", precision)].ok
    assert rows[("encoder", precision)].bytes < rows[("encoder", "fp32")].bytes


def test_policy_brain_matches_pytorch_pipeline(bundle_dir, export_ckpt):
    """Tick by tick on changing observations, the bundle's policy brain and the torch PolicyBrain send
    the same targets: the first tick is the chunk's first action, later ones blend the chunks of the
    last ticks (temporal ensembling, on in both by default)."""
    from export.runtime import load_bundle_brain
    from planners.brains import PolicyBrain

    brain = load_bundle_brain(bundle_dir, mode="policy", instruction=INSTRUCTION)
    reference = PolicyBrain(export_ckpt, INSTRUCTION)
    assert brain.ensemble is not None and reference.mpc.ensemble is not None
    for seed in range(3):
        obs = random_observation(seed)
        if seed == 0:
            task = export_ckpt.embed_instruction([INSTRUCTION])
            with torch.no_grad():
                first = export_ckpt.model.policy(export_ckpt.encode_observation(obs, task), task)[0, 0].numpy()
            chunk0 = export_ckpt.spec.vector_to_action(export_ckpt.normalizer.action_from_model(first))
        want = reference.act(obs)
        got = brain.act(obs)
        assert list(got) == export_ckpt.spec.action_keys
        np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-3)  # robot units
        if seed == 0:
            np.testing.assert_allclose(list(got.values()), list(chunk0.values()), atol=1e-3)


def test_numpy_gradient_planner_follows_torch_planner(bundle, export_ckpt, export_settings):
    """Same start, same Adam, same objective: the ONNX planner retraces planners.GradientPlanner."""
    _, _, task, z, _ = _torch_inputs(export_ckpt, 1, seed=3)
    warm = torch.rand(HORIZON, 6, generator=torch.Generator().manual_seed(4)) * 1.6 - 0.8
    o = export_settings.objective
    ref = TorchGradientPlanner(
        export_ckpt.model, horizon=HORIZON, restarts=1, iterations=12, lr=0.1, patience=0,
        objective=_objective(export_settings), use_policy=False,
    )  # fmt: skip
    plan_t, info_t = ref.plan(z, task, warm_start=warm)
    ours = GradientPlanner(
        bundle,
        GradSettings(restarts=1, iterations=12, lr=0.1, patience=0),
        ActionTerms(o.prior_weight, o.smooth_weight),
    )
    plan_n, info_n = ours.plan(z.numpy(), task.numpy(), warm_start=warm.numpy())
    assert info_n["iterations"] == info_t["iterations"] == 12
    np.testing.assert_allclose(plan_n, plan_t.numpy(), atol=1e-3)
    assert info_n["cost"] == pytest.approx(info_t["cost"], rel=1e-4)
    start_cost = bundle.rollout_cost(z.numpy(), warm.numpy()[None], task.numpy())[0][0]
    start_cost += ActionTerms(o.prior_weight, o.smooth_weight)(warm.numpy()[None], None)[0][0]
    assert info_n["cost"] < start_cost
