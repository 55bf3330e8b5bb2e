"""onnxruntime vs PyTorch: every fp32 graph within 1e-4, the exported gradient within 1e-3 (relative),
fp16 / int8 variants within their stated tolerances, the policy brain tick by tick. (The planners on
both backends: ``test_planner_parity.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import CAMERAS, HORIZON, INSTRUCTION, random_observation

from export.runtime import load_bundle
from planners.torch_backend import TorchBackend

FP32_TOL = 1e-4


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


def _model_costs(ckpt, settings, z, actions, task):
    """The PyTorch backend's weighted per-step costs ``(B, H)`` (the model terms the graphs bake in)."""
    backend = TorchBackend(ckpt.model, settings.objective)
    return backend.step_costs(backend.prepare(z[:1], task), actions.numpy()) if z.shape[0] == 1 else np.stack(
        [backend.step_costs(backend.prepare(z[i : i + 1], task), actions[i : i + 1].numpy())[0] for i in range(len(z))]
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
    np.testing.assert_allclose(bundle.policy(z.numpy(), task.numpy()), chunk.numpy(), rtol=FP32_TOL, atol=FP32_TOL)
    cost, steps = bundle.rollout_cost(z.numpy(), actions.numpy(), task.numpy())
    assert steps.shape == (batch, HORIZON)
    want = _model_costs(export_ckpt, export_settings, z, actions, task)
    np.testing.assert_allclose(steps, want, rtol=FP32_TOL, atol=FP32_TOL)
    np.testing.assert_allclose(steps.sum(1), cost, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 6])
def test_exported_gradient_matches_autograd(bundle, export_ckpt, export_settings, batch):
    """cost_grad.onnx vs torch.autograd through the PyTorch backend's model terms (task + terminal)."""
    _, _, task, z, actions = _torch_inputs(export_ckpt, batch, seed=10 + batch)
    backend = TorchBackend(export_ckpt.model, export_settings.objective)
    want_steps, grads = [], []
    for i in range(batch):  # the backend plans from one latent
        steps, g = backend.step_costs_and_grad(backend.prepare(z[i : i + 1], task), actions[i : i + 1].numpy())
        want_steps.append(steps[0])
        grads.append(g[0])
    grad = np.stack(grads)
    cost, grad_onnx, steps_onnx = bundle.cost_and_grad(z.numpy(), actions.numpy(), task.numpy())
    np.testing.assert_allclose(steps_onnx, np.stack(want_steps), rtol=FP32_TOL, atol=FP32_TOL)
    np.testing.assert_allclose(cost, steps_onnx.sum(1), rtol=1e-5, atol=1e-5)
    rel = np.abs(grad_onnx - grad).max() / np.abs(grad).max()
    assert rel < 1e-3, rel
    assert np.abs(grad).max() > 0  # the check is not vacuous


def test_action_terms_gradient_is_exact(export_settings):
    """The numpy prior/smooth terms (one implementation, both backends) and their analytic gradient equal
    the same terms written in PyTorch and differentiated by autograd."""
    o = export_settings.objective
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, HORIZON, 6)).astype(np.float32)
    prior = rng.uniform(-1, 1, (HORIZON, 6)).astype(np.float32)
    cost, grad, _ = o.action_terms(a, prior)
    at = torch.from_numpy(a).requires_grad_(True)
    ref = o.prior_weight * (at - torch.from_numpy(prior)).square().sum((1, 2))
    ref = ref + o.smooth_weight * at.diff(dim=1).square().sum((1, 2))
    (g,) = torch.autograd.grad(ref.sum(), at)
    assert o.prior_weight > 0 and o.smooth_weight > 0
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
    assert brain.mpc.ensemble is not None and reference.mpc.ensemble is not None
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
