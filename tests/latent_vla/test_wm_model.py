"""WorldModel: shapes and dtypes through every head, broadcasting, differentiability, the manifold."""

from __future__ import annotations

import copy

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
    assert z.shape == (B, model.latent_dim) and z.dtype == torch.float32
    actions = torch.rand(B, H, cfg.action_dim) * 2 - 1
    zs = model.rollout(z, actions)
    assert zs.shape == (B, H, model.latent_dim)
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
    assert zs.shape[-1] == model.config.latent_dim + model.action_dim  # learned block + joint block
    learned = model.learned_part(zs)
    if model.config.norm == "simnorm":
        groups = learned.reshape(B, H, -1, model.config.simnorm_dim)
        assert torch.allclose(groups.sum(-1), torch.ones(()), atol=1e-5) and (learned >= 0).all()
    else:
        assert torch.allclose(learned.mean(-1), torch.zeros(()), atol=1e-5)
        assert torch.allclose(learned.pow(2).mean(-1), torch.ones(()), atol=1e-3)
    # the joint block is the measured state in action units, and stays bounded under any rollout
    assert torch.allclose(model.proprio(z), (state * model.proprio_scale + model.proprio_shift).clamp(-1.5, 1.5))
    far = model.rollout(z, torch.ones(B, 50, model.action_dim))
    assert model.proprio(far).abs().max() <= 1.5


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
    state = 0.3 * state  # joints inside the latent's bound, where the finite difference is smooth
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
        # gradient matches a finite difference along a random direction (float64: float32 round-off
        # in a central difference of a sum of costs is of the order of the tolerance)
        d = torch.randn(actions.shape, generator=torch.Generator().manual_seed(1))  # fixed: order-independent
        eps = 1e-4
        m64, z64, t64 = copy.deepcopy(model).double(), z0.double(), task.double()
        with torch.no_grad():
            f = lambda a: m64.cost(m64.rollout(z64, a.double()), t64).sum()  # noqa: E731
            fd = (f(actions + eps * d) - f(actions - eps * d)) / (2 * eps)
        assert float((grad * d).sum()) == pytest.approx(float(fd), rel=0.02, abs=1e-5)
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
    assert z.shape == (3, 32 + 6) and model.decode(z).shape == (3, 3, 48, 40)
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


def test_spatial_softmax_finds_a_bright_spot():
    from latent_vla.model import SpatialSoftmax

    maps = torch.zeros(2, 1, 16, 16)
    maps[0, 0, 3, 12] = 50.0  # row 3, column 12
    maps[1, 0, 15, 0] = 50.0
    kp = SpatialSoftmax((16, 16))(maps)  # (2, 2): x, y in [-1, 1]
    step = 2.0 / 15
    assert torch.allclose(kp[0], torch.tensor([-1 + 12 * step, -1 + 3 * step]), atol=1e-3)
    assert torch.allclose(kp[1], torch.tensor([-1.0, 1.0]), atol=1e-3)


def test_instruction_modulates_the_image_encoder():
    torch.manual_seed(0)
    model = WorldModel(small_config(keypoints=4))
    for p in model.image_encoder.films.parameters():  # FiLM starts as the identity; perturb it
        torch.nn.init.normal_(p, std=0.5)
    images, state, tokens = inputs(model.config, b=2)
    x = images["front"][:1].expand(2, -1, -1, -1)
    feats = model.image_encoder(x, model.embed_task(tokens))  # same image, two instructions
    assert feats.shape == (2, model.config.image_feat + 2 * 4)
    assert not torch.allclose(feats[0], feats[1], atol=1e-4)
    plain = WorldModel(small_config(film=False, keypoints=0))
    assert plain.image_encoder.out_dim == plain.config.image_feat
    with pytest.raises(ValueError, match="task-conditioned"):
        model.image_encoder(x)


def test_instruction_attention_points_where_the_query_matches():
    """A head whose key is one feature channel finds the cell where that channel is on, per instruction."""
    from latent_vla.model import InstructionAttention

    attend = InstructionAttention(channels=2, task_dim=2, size=(8, 8), heads=1, key_dim=2)
    with torch.no_grad():  # key = the two feature channels (not the coordinates); query = the task
        attend.key.weight.zero_()
        attend.key.bias.zero_()
        attend.key.weight[0, 0, 0, 0] = attend.key.weight[1, 1, 0, 0] = 1.0
        attend.query.weight.copy_(40.0 * torch.eye(2))
        attend.query.bias.zero_()
    x = torch.zeros(2, 2, 8, 8)
    x[:, 0, 1, 6] = 1.0  # channel 0 ("red") on at row 1, column 6
    x[:, 1, 7, 0] = 1.0  # channel 1 ("blue") on at row 7, column 0
    pos = attend(x, torch.eye(2))  # instruction 0 asks for channel 0, instruction 1 for channel 1
    step = 2.0 / 7
    assert torch.allclose(pos[0], torch.tensor([-1 + 6 * step, -1 + 1 * step]), atol=0.05)
    assert torch.allclose(pos[1], torch.tensor([-1.0, 1.0]), atol=0.05)


def test_attention_heads_add_two_features_each():
    torch.manual_seed(0)
    model = WorldModel(small_config(keypoints=4, attention=3))
    assert model.image_encoder.out_dim == model.config.image_feat + 2 * 4 + 2 * 3
    images, state, tokens = inputs(model.config)
    z = model.encode(images, state, model.embed_task(tokens))
    z.sum().backward()
    assert model.image_encoder.attend.query.weight.grad.abs().sum() > 0
    alone = WorldModel(small_config(keypoints=0, attention=1, film=False))  # queried without FiLM
    assert not any(isinstance(f, torch.nn.Linear) for f in alone.image_encoder.films)
    assert alone.encode(images, state, alone.embed_task(tokens)).shape == (B, alone.latent_dim)
    with pytest.raises(ValueError, match="attention must be"):
        small_config(attention=-1)


def test_residual_policy_is_joints_plus_offsets():
    torch.manual_seed(0)
    model = WorldModel(small_config())
    model.set_proprio_map(torch.zeros(6), torch.full((6,), 2.0), torch.full((6,), -4.0), torch.full((6,), 4.0))
    images, state, tokens = inputs(model.config)
    task = model.embed_task(tokens)
    z = model.encode(images, state, task)
    assert torch.allclose(model.proprio(z), (0.5 * state).clamp(-1.5, 1.5))  # 2 * std / span = 0.5
    with torch.no_grad():  # zero offsets: the chunk holds the joints where they are
        model.policy_head.body[-1].weight.zero_()
        model.policy_head.body[-1].bias.zero_()
    chunk = model.policy(z, task)
    assert torch.allclose(chunk, model.proprio(z).clamp(-1, 1)[:, None].expand_as(chunk))
    # without matching state/action sizes there is no joint block, and the chunk is tanh-squashed
    other = WorldModel(small_config(state_dim=7))
    assert not other.proprio_latent and other.latent_dim == other.config.latent_dim
    o_images, o_state, _ = inputs(other.config)
    o_task = other.embed_task(tokens)
    o_z = other.encode(o_images, o_state, o_task)
    assert o_z.shape == (B, other.config.latent_dim)
    assert other.policy(o_z, o_task).abs().max() < 1
    with pytest.raises(RuntimeError, match="no joint block"):
        other.proprio(o_z)


def test_environment_state_head_is_optional_and_un_standardizes():
    plain = WorldModel(small_config())
    z = torch.rand(B, plain.latent_dim)
    with pytest.raises(RuntimeError, match="no environment-state head"):
        plain.environment_state(z)
    assert not any(k.startswith("env_state") for k in plain.state_dict())
    with pytest.raises(ValueError, match="env_state_dim"):
        small_config(env_state_dim=-1)

    model = WorldModel(small_config(env_state_dim=6))
    model.set_env_state_stats(torch.arange(6.0), torch.full((6,), 0.5))
    std_units = model.env_state_standardized(z)
    assert std_units.shape == (B, 6)
    torch.testing.assert_close(model.environment_state(z), std_units * 0.5 + torch.arange(6.0))
    assert model.environment_state(z[None].expand(3, -1, -1)).shape == (3, B, 6)  # any leading dims
    assert "env_state_mean" in model.state_dict() and "env_state_std" in model.state_dict()  # saved with weights
