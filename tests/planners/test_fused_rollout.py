"""The fused planning kernel (latent_vla/base/fused_rollout.py) computes what autograd computes.

The same default-size random WorldModel through the kernel and through ``weighted_step_costs`` with
autograd: the per-step costs and the action gradients agree, also where the clamps act (joints on the
clip bound, SimNorm entries below 1e-6); the gradient planner gives the same plan after 20 iterations
(max |difference| <= 1e-4, issue 20's parity target), and so does CEM on the forward pass alone;
models the kernel does not compute fall back to autograd, or are refused with a reason when the kernel
is required.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.base.fused_rollout import numba_available
from latent_vla.model import PROPRIO_BOUND, ModelConfig, WorldModel
from planners.gradient import GradientPlanner
from planners.objectives import TrajectoryObjective
from planners.sampling import CEMPlanner
from planners.torch_backend import TorchBackend, weighted_step_costs

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.fixture(scope="module")
def model() -> WorldModel:
    """A default-size WorldModel with random weights (speed and maths do not depend on training)."""
    torch.manual_seed(0)
    m = WorldModel(ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6)).eval()
    with torch.no_grad():  # a trained-looking last layer: the default init keeps it near the identity
        m.dynamics[-1].weight.mul_(10.0)
    return m.requires_grad_(False)


def _autograd(model, z0, actions, task, weights):
    a = torch.from_numpy(actions).requires_grad_(True)
    with torch.enable_grad():
        steps = weighted_step_costs(model, torch.from_numpy(z0), a, torch.from_numpy(task), torch.from_numpy(weights))
        (grad,) = torch.autograd.grad(steps.sum(), a)
    return steps.detach().numpy(), grad.numpy()


def _start(model: WorldModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    z0 = model.normalize_latent(3 * torch.randn(1, model.latent_dim, generator=g)).numpy()
    return z0, torch.randn(1, model.task_dim, generator=g).numpy()


def _close(got: np.ndarray, ref: np.ndarray, rel: float) -> None:
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= rel * np.abs(ref).max(), (np.abs(got - ref).max(), np.abs(ref).max())


@pytest.mark.parametrize("plans, horizon", [(8, 16), (1, 1), (3, 7)])
def test_costs_and_gradients_match_autograd(model, plans, horizon) -> None:
    backend = TorchBackend(model, TrajectoryObjective(), fused=True)
    z0, task = _start(model, plans)
    actions = np.random.default_rng(plans).uniform(-1, 1, (plans, horizon, 6)).astype(np.float32)
    weights = np.linspace(1.0, 0.5, horizon).astype(np.float32)
    kernel = backend.fused
    steps, grad = kernel.step_costs_and_grad(z0, kernel.task_projection(task), actions, weights)
    ref_steps, ref_grad = _autograd(model, z0, actions, task, weights)
    _close(steps, ref_steps, 1e-5)
    _close(grad, ref_grad, 1e-5)
    assert np.abs(grad).max() > 0


@pytest.mark.parametrize("plans", [256, 13])
def test_sampler_costs_match_autograd(model, plans) -> None:
    """The forward pass alone (CEM/MPPI rollouts): a 256-sample batch and a count off the 8-row tiles."""
    backend = TorchBackend(model, TrajectoryObjective(), fused=True)
    z0, task = _start(model, plans)
    actions = np.random.default_rng(plans).uniform(-1, 1, (plans, 16, 6)).astype(np.float32)
    weights = np.linspace(1.0, 0.5, 16).astype(np.float32)
    steps = backend.fused.step_costs(z0, backend.fused.task_projection(task), actions, weights)
    _close(steps, _autograd(model, z0, actions, task, weights)[0], 1e-5)
    with torch.no_grad():  # the backend's step_costs takes the same path
        _close(backend.step_costs(backend.prepare(z0, task), actions), TorchBackend(model, TrajectoryObjective(),
               fused=False).step_costs(backend.prepare(z0, task), actions), 1e-5)  # fmt: skip


def test_the_clamps_pass_gradients_as_autograd_does(model) -> None:
    """Joints on and beyond the clip bound, and SimNorm entries below the log's 1e-6 floor."""
    backend = TorchBackend(model, TrajectoryObjective(), fused=True)
    z0, task = _start(model, 11)
    z0[0, model.learned_dim :] = [PROPRIO_BOUND, -PROPRIO_BOUND, 1.49, -1.49, 0.0, PROPRIO_BOUND]
    z0[0, :8] = [1 - 7e-9, 1e-9, 1e-9, 1e-9, 1e-9, 1e-9, 1e-9, 1e-9]  # one SimNorm group, mostly below 1e-6
    actions = np.random.default_rng(3).uniform(-1, 1, (4, 5, 6)).astype(np.float32)
    weights = np.ones(5, np.float32)
    kernel = backend.fused
    steps, grad = kernel.step_costs_and_grad(z0, kernel.task_projection(task), actions, weights)
    ref_steps, ref_grad = _autograd(model, z0, actions, task, weights)
    _close(steps, ref_steps, 1e-5)
    _close(grad, ref_grad, 1e-5)


def test_the_gradient_planner_gives_the_same_plan_fused_or_autograd(model) -> None:
    objective = TrajectoryObjective(prior_weight=1.0, smooth_weight=0.1, terminal_weight=0.5, discount=0.95)
    z0, task = _start(model, 5)
    warm = np.random.default_rng(6).uniform(-0.9, 0.9, (16, 6)).astype(np.float32)
    plans = []
    for fused in (False, True):
        backend = TorchBackend(model, objective, fused=fused)
        assert (backend.fused is not None) == fused
        planner = GradientPlanner(backend, 16, restarts=8, iterations=20, lr=0.2, patience=0, objective=objective,
                                  use_policy=False, seed=3)  # fmt: skip
        plan, info = planner.plan(z0, task, warm_start=warm)
        assert info["iterations"] == 20
        plans.append(plan)
    assert np.abs(plans[0] - plans[1]).max() <= 1e-4, np.abs(plans[0] - plans[1]).max()
    assert np.abs(plans[0] - warm).max() > 1e-2  # the plans moved: the comparison is not vacuous


def test_cem_gives_the_same_plan_fused_or_autograd(model) -> None:
    objective = TrajectoryObjective(prior_weight=0.5)
    z0, task = _start(model, 8)
    plans = []
    for fused in (False, True):
        backend = TorchBackend(model, objective, fused=fused)
        planner = CEMPlanner(backend, 16, samples=256, elites=16, iterations=3, objective=objective,
                             use_policy=False, seed=4)  # fmt: skip
        plans.append(planner.plan(z0, task)[0])
    assert np.abs(plans[0] - plans[1]).max() <= 1e-4, np.abs(plans[0] - plans[1]).max()


def test_a_model_the_kernel_does_not_compute_falls_back_or_is_refused() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(camera_names=("front",), state_dim=6, action_dim=6, image_size=(32, 32), channels=(8, 16),
                      hidden=32, head_hidden=16, norm="layernorm")  # fmt: skip
    layernorm = WorldModel(cfg)
    assert TorchBackend(layernorm, TrajectoryObjective()).fused is None  # auto: autograd
    with pytest.raises(ValueError, match="fused planning kernel cannot run this model: .*'layernorm'"):
        TorchBackend(layernorm, TrajectoryObjective(), fused=True)


def test_a_model_changed_behind_the_kernels_back_is_caught(model) -> None:
    """An architecture change the structural check misses (here: SiLU -> GELU by monkeypatching the
    module's forward) is caught by the comparison with autograd."""
    import copy

    changed = copy.deepcopy(model)
    changed.dynamics[2].forward = torch.nn.functional.gelu
    with pytest.raises(ValueError, match="differs from autograd"):
        TorchBackend(changed, TrajectoryObjective(), fused=True)


def test_tensors_that_do_not_fit_one_another_are_refused(model) -> None:
    """The kernel does not check indices, so every shape is checked when it is built (a bundle's file)."""
    from latent_vla.base.fused_rollout import FusedRollout
    from latent_vla.fused import fused_tensors

    tensors, meta = fused_tensors(model)
    FusedRollout(tensors, meta)  # the model's own tensors fit
    bad = {**tensors, "dynamics.3.weight": tensors["dynamics.3.weight"][:, :-1]}
    with pytest.raises(ValueError, match="wrong shapes .*dynamics.3.weight"):
        FusedRollout(bad, meta)
    with pytest.raises(ValueError, match="group size"):
        FusedRollout(tensors, {**meta, "group": 0})
    with pytest.raises(KeyError, match="cost_head.t_in.weight"):
        FusedRollout({k: v for k, v in tensors.items() if k != "cost_head.t_in.weight"}, meta)
