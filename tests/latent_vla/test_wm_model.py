"""WorldModel: shapes and dtypes through every head, broadcasting, differentiability, the manifold."""

from __future__ import annotations

import pytest
import torch

from latent_vla.model import ModelConfig, WorldModel

B, H, L = 5, 7, 12


def small_config(**kw) -> ModelConfig:
    base = dict(
        camera_names=("front", "wrist"), state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=32,
        chunk_len=4, vocab_size=101, task_dim=16, word_dim=16, channels=(8, 16, 16), image_feat=32,
        state_feat=16, hidden=64, head_hidden=32,
    )  # fmt: skip
    base.update(kw)
    return ModelConfig(**base)


def inputs(cfg: ModelConfig, b: int = B):
    g = torch.Generator().manual_seed(0)
    images = {c: torch.rand(b, 3, *cfg.image_size, generator=g) for c in cfg.camera_names}
    state = torch.randn(b, cfg.state_dim, generator=g)
    tokens = torch.randint(1, cfg.vocab_size, (b, L), generator=g)
    tokens[:, 6:] = 0
    return images, state, tokens


@pytest.fixture(scope="module", params=["simnorm", "layernorm"])
def model(request):
    torch.manual_seed(0)
    return WorldModel(small_config(norm=request.param))


def test_every_head_shapes_dtypes_and_ranges(model):
    cfg = model.config
    images, state, tokens = inputs(cfg)
    task = model.embed_task(tokens)
    assert task.shape == (B, cfg.task_dim) and task.dtype == torch.float32
    z = model.encode(images, state, task)
    assert z.shape == (B, cfg.latent_dim) and z.dtype == torch.float32
    actions = torch.rand(B, H, cfg.action_dim) * 2 - 1
    zs = model.rollout(z, actions)
    assert zs.shape == (B, H, cfg.latent_dim)
    assert torch.allclose(zs[:, 0], model.step(z, actions[:, 0]))
    assert torch.allclose(zs[:, 2], model.step(model.step(model.step(z, actions[:, 0]), actions[:, 1]), actions[:, 2]))
    cost = model.cost(zs, task)
    assert cost.shape == (B, H) and (cost >= 0).all()
    assert model.cost(z, task).shape == (B,)
    success = model.success(zs, task)
    assert success.shape == (B, H) and ((success >= 0) & (success <= 1)).all()
    chunk = model.policy(z, task)
    assert chunk.shape == (B, cfg.chunk_len, cfg.action_dim) and chunk.abs().max() <= 1
    img = model.decode(z)
    assert img.shape == (B, 3, *cfg.image_size) and img.min() >= 0 and img.max() <= 1
    for out in (z, zs, cost, success, chunk, img):
        assert torch.isfinite(out).all() and out.dtype == torch.float32


def test_latent_manifold(model):
    images, state, tokens = inputs(model.config)
    z = model.encode(images, state, model.embed_task(tokens))
    zs = model.rollout(z, torch.rand(B, H, model.action_dim) * 2 - 1)
    if model.config.norm == "simnorm":
        groups = zs.reshape(B, H, -1, model.config.simnorm_dim)
        assert torch.allclose(groups.sum(-1), torch.ones(()), atol=1e-5) and (zs >= 0).all()
    else:
        assert torch.allclose(zs.mean(-1), torch.zeros(()), atol=1e-5)
        assert torch.allclose(zs.pow(2).mean(-1), torch.ones(()), atol=1e-3)


def test_task_broadcasts_over_leading_dims(model):
    images, state, tokens = inputs(model.config)
    task = model.embed_task(tokens)
    z = model.encode(images, state, task)
    zs = model.rollout(z, torch.zeros(B, H, model.action_dim))
    one = task[:1]
    per_item = torch.stack([model.cost(zs[:, h], one.expand(B, -1)) for h in range(H)], dim=1)
    assert torch.allclose(model.cost(zs, one), per_item, atol=1e-6)
    assert torch.allclose(model.cost(zs, task)[:, 3], model.cost(zs[:, 3], task), atol=1e-6)
    assert model.cost(z[0], one).shape == ()
    z_from_one = model.encode(images, state, one)  # (1, T) broadcasts over the batch in encode too
    assert torch.allclose(z_from_one, model.encode(images, state, one.expand(B, -1)), atol=1e-6)
    with pytest.raises(ValueError, match="task batch"):
        model.cost(zs, task[:2])


def test_protocol_is_differentiable_wrt_actions(model):
    images, state, tokens = inputs(model.config)
    with torch.no_grad():
        task = model.embed_task(tokens)
        z0 = model.encode(images, state, task)
    model.requires_grad_(False)
    try:
        actions = torch.zeros(B, H, model.action_dim, requires_grad=True)
        total = model.cost(model.rollout(z0, actions), task).sum()
        (grad,) = torch.autograd.grad(total, actions)
        assert grad.shape == actions.shape and torch.isfinite(grad).all()
        assert (grad.abs().sum(dim=(0, 2)) > 0).all()  # every horizon step moves the cost
        # gradient matches a finite difference along a random direction
        d = torch.randn_like(actions)
        eps = 1e-3
        with torch.no_grad():
            f = lambda a: model.cost(model.rollout(z0, a), task).sum()  # noqa: E731
            fd = (f(actions + eps * d) - f(actions - eps * d)) / (2 * eps)
        assert float((grad * d).sum()) == pytest.approx(float(fd), rel=0.05, abs=1e-4)
        pol = model.policy(z0.clone().requires_grad_(True), task)
        assert pol.requires_grad
    finally:
        model.requires_grad_(True)


def test_step_is_identity_without_dynamics_output():
    model = WorldModel(small_config())
    last = model.dynamics[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    images, state, tokens = inputs(model.config)
    z = model.encode(images, state, model.embed_task(tokens))
    assert torch.allclose(model.step(z, torch.rand(B, 6)), z, atol=1e-6)


def test_gru_text_encoder_and_other_image_sizes():
    model = WorldModel(small_config(text_encoder="gru", image_size=(48, 40), camera_names=("top",)))
    images, state, tokens = inputs(model.config, b=3)
    task = model.embed_task(tokens)
    z = model.encode(images, state, task)
    assert z.shape == (3, 32) and model.decode(z).shape == (3, 3, 48, 40)
    tokens2 = tokens.clone()
    tokens2[:, 8:] = 5  # extra words change the instruction embedding
    assert not torch.allclose(model.embed_task(tokens2), task)


def test_clear_errors():
    model = WorldModel(small_config())
    images, state, tokens = inputs(model.config)
    task = model.embed_task(tokens)
    with pytest.raises(KeyError, match="wrist"):
        model.encode({"front": images["front"]}, state, task)
    with pytest.raises(ValueError, match="images must be"):
        model.encode({c: v[:, :, :16] for c, v in images.items()}, state, task)
    with pytest.raises(ValueError, match="state must be"):
        model.encode(images, state[:, :3], task)
    with pytest.raises(ValueError, match="actions must be"):
        model.rollout(torch.zeros(B, 32), torch.zeros(B, 6))
    with pytest.raises(TypeError, match="int64"):
        model.embed_task(tokens.float())
    with pytest.raises(ValueError, match="multiple of simnorm_dim"):
        small_config(latent_dim=30)
    with pytest.raises(ValueError, match="norm must be"):
        small_config(norm="batchnorm")
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**small_config().to_dict(), "depth": 3})


def test_config_roundtrip():
    cfg = small_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
