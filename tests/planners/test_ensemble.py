"""An ensemble of latent dynamics heads and the objective's disagreement term (issue 15).

A model with ``dynamics_heads`` = 3: the heads differ, a head that does not exist is refused, training
adds the ``ensemble`` term without touching the encoder, the disagreement term is the std over heads of
the model terms' sums (checked by brute force) and its gradient matches finite differences of the whole
objective on both planning paths (autograd and the fused kernel, one kernel per head, each checked against
autograd); a one-head model asked for it is refused in one line, and the gradient planner with the term
moves its plan towards where the heads agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.base.fused_rollout import head_count, numba_available
from latent_vla.fused import fused_tensors
from latent_vla.model import ModelConfig, WorldModel
from planners.backend import evaluate_objective
from planners.objectives import TrajectoryObjective
from planners.torch_backend import TorchBackend, fused_error

HEADS = 3


def _model(heads: int = HEADS, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(camera_names=("front",), state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=32,
                      channels=(8, 16), hidden=64, head_hidden=32, dynamics_heads=heads)  # fmt: skip
    m = WorldModel(cfg).eval()
    with torch.no_grad():  # trained-looking dynamics: the default init keeps every head near the identity
        for k in range(heads):
            m.dynamics_head(k)[-1].weight.mul_(10.0)
    return m.requires_grad_(False)


def _start(model: WorldModel, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    z0 = model.normalize_latent(3 * torch.randn(1, model.latent_dim, generator=g)).numpy()
    return z0, torch.randn(1, model.task_dim, generator=g).numpy()


def test_heads_differ_and_a_missing_head_is_refused() -> None:
    model = _model()
    assert model.dynamics_heads == HEADS and len(model.dynamics_ensemble) == HEADS - 1
    z0, _ = _start(model)
    a = torch.rand(4, 5, 6) * 2 - 1
    outs = [model.rollout(torch.from_numpy(z0), a, head) for head in range(HEADS)]
    assert all(o.shape == (4, 5, model.latent_dim) for o in outs)
    assert (outs[0] - outs[1]).abs().max() > 1e-3 and (outs[1] - outs[2]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="dynamics head 3 does not exist"):
        model.step(torch.from_numpy(z0), a[:, 0], 3)
    with pytest.raises(ValueError, match="dynamics_heads must be >= 1"):
        ModelConfig(camera_names=("front",), state_dim=6, action_dim=6, dynamics_heads=0)


def test_one_head_model_is_unchanged_by_the_option() -> None:
    """The further heads are built last: the same seed gives head 0 and every other module the same start."""
    one, three = _model(1), _model(3)
    state3 = three.state_dict()
    for name, tensor in one.state_dict().items():
        assert torch.equal(tensor, state3[name]), name
    assert not [n for n in one.state_dict() if n.startswith("dynamics_ensemble")]


def test_training_saves_every_head_and_the_ensemble_term_never_moves_the_encoder(tiny_dataset_dir, tmp_path) -> None:
    from synthetic_data import tiny_run_settings

    from latent_vla.checkpoint import load_checkpoint
    from latent_vla.data import WindowSampler, load_frames
    from latent_vla.losses import LossWeights, WorldModelLoss
    from latent_vla.train import build_model_config, make_tokenizer, train

    settings = tiny_run_settings(tiny_dataset_dir, tmp_path / "run", steps=2)
    settings.model["dynamics_heads"] = HEADS
    result = train(settings)
    model = load_checkpoint(result.run_dir).model
    assert model.dynamics_heads == HEADS
    assert "ensemble" in (result.run_dir / "train_log.csv").read_text().splitlines()[0]

    cache = load_frames(tiny_dataset_dir, progress=False)
    tok = make_tokenizer(settings.tokenizer)
    batch, grads = None, []
    for heads in (1, HEADS):  # the same seed builds the same shared modules (the further heads come last)
        torch.manual_seed(0)
        model = WorldModel(build_model_config({**settings.model, "dynamics_heads": heads}, cache, tok))
        if batch is None:
            norm = cache.normalizer(model.config.image_size)
            sampler = WindowSampler(cache, norm, tok, 2, model.config.chunk_len, np.arange(cache.num_episodes))
            batch = sampler.sample(4, np.random.default_rng(0))
        torch.manual_seed(1)  # the same image shifts
        total, terms = WorldModelLoss(model, LossWeights())(batch)
        total.backward()
        grads.append([p.grad.clone() for p in model.image_encoder.parameters() if p.grad is not None])
    assert float(terms["ensemble"]) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.dynamics_ensemble.parameters())
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))  # the encoder: untouched


def test_the_heads_are_clipped_apart_from_the_model() -> None:
    """Gradient clipping by groups: the further heads never rescale the rest of the model's step."""
    from latent_vla.train import _clip_groups

    model = _model().requires_grad_(True)
    rest, heads = _clip_groups(model)
    assert {id(p) for p in heads} == {id(p) for p in model.dynamics_ensemble.parameters()}
    assert len(rest) + len(heads) == len(list(model.parameters())) and not _clip_groups(_model(1))[1]


def test_disagreement_is_the_std_over_heads_and_its_derivative() -> None:
    objective = TrajectoryObjective(disagreement_weight=0.7)
    totals = np.random.default_rng(0).normal(size=(HEADS, 5))
    penalty, coeff = objective.disagreement(totals)
    np.testing.assert_allclose(penalty, 0.7 * totals.std(0), rtol=1e-5)
    eps = 1e-6
    for k in range(HEADS):
        bumped = totals.copy()
        bumped[k] += eps
        numeric = (0.7 * bumped.std(0) - 0.7 * totals.std(0)) / eps
        np.testing.assert_allclose(coeff[k], numeric, rtol=1e-3, atol=1e-6)
    flat, _ = objective.disagreement(np.ones((HEADS, 2)))  # heads that agree: zero, finite
    assert np.all(flat == 0)


@pytest.mark.parametrize(
    "fused", [False, pytest.param(True, marks=pytest.mark.skipif(not numba_available(), reason="numba missing"))]
)
def test_objective_gradient_matches_finite_differences(fused: bool) -> None:
    model = _model()
    objective = TrajectoryObjective(prior_weight=0.1, disagreement_weight=2.0)
    backend = TorchBackend(model, objective, fused=fused)
    assert backend.heads == HEADS
    start = backend.prepare(*_start(model))
    actions = np.random.default_rng(2).uniform(-0.8, 0.8, (2, 4, 6)).astype(np.float64)
    total, terms, grad = evaluate_objective(backend, objective, start, actions, None, grad=True)
    assert terms["disagreement"].shape == (2,) and np.all(terms["disagreement"] > 0)
    heads = np.stack([backend.step_costs(start, actions.astype(np.float32), k).sum(-1) for k in range(HEADS)])
    np.testing.assert_allclose(terms["disagreement"], 2.0 * heads.std(0), rtol=1e-4)
    rng = np.random.default_rng(3)
    for _ in range(3):
        d = rng.normal(size=actions.shape) * 1e-2
        up = evaluate_objective(backend, objective, start, actions + d, None)[0]
        down = evaluate_objective(backend, objective, start, actions - d, None)[0]
        numeric = (up - down) / 2
        analytic = np.einsum("nha,nha->n", grad, d)
        np.testing.assert_allclose(analytic, numeric, rtol=0.05, atol=2e-4)


@pytest.mark.skipif(not numba_available(), reason="numba missing")
def test_every_head_has_its_own_checked_kernel() -> None:
    model = _model()
    tensors, meta = fused_tensors(model)
    assert head_count(tensors) == HEADS
    backend = TorchBackend(model, TrajectoryObjective(), fused=True)
    assert len(backend._kernels) == HEADS
    assert max(fused_error(model, kernel, head=k) for k, kernel in enumerate(backend._kernels)) < 1e-4
    assert fused_error(model, backend._kernels[1], head=2) > 1e-2  # a head's kernel is not another head's


def test_one_head_model_refuses_the_term_in_one_line() -> None:
    model = _model(1)
    objective = TrajectoryObjective(disagreement_weight=1.0)
    backend = TorchBackend(model, objective, fused=False)
    start = backend.prepare(*_start(model))
    with pytest.raises(ValueError, match="needs a model with dynamics_heads >= 2") as err:
        evaluate_objective(backend, objective, start, np.zeros((1, 3, 6), np.float32), None)
    assert "\n" not in str(err.value)


def test_gradient_planner_with_the_term_plans_where_heads_agree() -> None:
    """The same start and seed: with the term the chosen plan's head disagreement is lower."""
    from planners.gradient import GradientPlanner

    model = _model()
    z0, task = _start(model)
    spreads = []
    for weight in (0.0, 5.0):
        objective = TrajectoryObjective(disagreement_weight=weight)
        planner = GradientPlanner(model, horizon=6, iterations=30, objective=objective, seed=0, min_gain=0.0)
        plan, info = planner.plan(z0, task)
        assert ("disagreement" in info["terms"]) == (weight > 0)
        plan = plan[None]
        backend = TorchBackend(model, TrajectoryObjective(), fused=False)
        start = backend.prepare(z0, task)
        heads = np.stack([backend.step_costs(start, plan.astype(np.float32), k).sum(-1) for k in range(HEADS)])
        spreads.append(float(heads.std(0)[0]))
    assert spreads[1] < spreads[0]
