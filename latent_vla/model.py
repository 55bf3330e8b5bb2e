"""The latent world model: encode, step/rollout, cost, success, policy, decode.

A plain ``nn.Module`` plus a config dataclass, decoupled from training (after nanoGPT), with the
handful of named methods of TD-MPC2's world model (Hansen et al., 2024) and the planning-in-latent
idea of DINO-WM (Zhou et al., 2024). The protocol planners see is ``step``/``rollout``/``cost``
(+ ``policy``); the full API is in ``docs/architecture.md``, section 4b.

Shapes: ``B`` batch, ``H`` horizon, ``Z`` latent size, ``A`` action size, ``K`` chunk length,
``T`` task-embedding size, ``L`` token length, ``S`` state size, ``(h, w)`` image size in pixels.
Actions are normalized to ``[-1, 1]``, states standardized, images float ``[0, 1]`` channels first
(see :mod:`latent_vla.base.normalize`).

The latent lives on a bounded manifold: SimNorm (softmax over groups of ``simnorm_dim`` entries, so
each group is a point on a simplex) or LayerNorm without affine parameters (a sphere of radius
``sqrt(Z)`` in the zero-mean hyperplane). ``step`` is a residual update that is the identity when the
dynamics network outputs zero, in both cases.

With ``proprio_latent`` (the default when state and action are the same joints) the latent ends in a
proprioceptive block: ``z = [learned (latent_dim) | joints (A)]``, the joints being the measured joint
positions in the action's ``[-1, 1]`` units, exactly, clamped to ``[-PROPRIO_BOUND, PROPRIO_BOUND]``.
The dynamics predict both blocks (an additive residual for the joints), so ``Z = latent_dim + A``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent_vla.base.pretrained_text import check_name, load_table
from latent_vla.sentence_encoder import FrozenSentenceEncoder

NORMS = ("simnorm", "layernorm")
PROPRIO_BOUND = 1.5
"""Bound of the latent's joint block (action units; the data range is ``[-1, 1]``)."""
TEXT_ENCODERS = ("bag", "gru")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`WorldModel`; dimensions come from the dataset, never from the user.

    It is also the schema of the ``model`` group of ``latent-vla train`` (``configs/model/*.yaml``):
    every field but ``state_dim``, ``action_dim``, ``vocab_size`` and ``env_state_dim`` is a setting
    there (see :func:`latent_vla.train.model_settings`).

    Attributes:
        camera_names: cameras the encoder reads, in order; ``decode`` draws the first one.
        state_dim: S, joint-state size.
        action_dim: A, action size.
        image_size: ``(h, w)`` pixels of the model's images.
        latent_dim: Z, latent size (a multiple of ``simnorm_dim`` with SimNorm).
        chunk_len: K, actions per policy chunk.
        vocab_size: rows of the word-embedding table (tokenizer buckets + 1 for padding).
        task_dim: T, instruction-embedding size.
        text_encoder: ``"bag"`` (masked mean of word/bigram embeddings + MLP) or ``"gru"``.
        pretrained_text: name of the frozen subword table the tokenizer's ids above ``vocab_size``
            index (:mod:`latent_vla.base.pretrained_text`; set from ``tokenizer.pretrained``), or None.
        word_dim: word-embedding size.
        channels: conv channels of the image encoder; each conv halves the resolution.
        image_feat: global features per camera after the conv encoder.
        keypoints: P, spatial-softmax keypoints per camera (0 = none); each adds an ``(x, y)``.
        film: modulate the conv blocks with the instruction (FiLM), so the encoder can look for
            what the instruction names.
        attention: instruction-queried spatial attention heads per camera (0 = none): each head
            scores every cell of the first block's map against the instruction and adds the expected
            ``(x, y)`` of its scores, i.e. *where the named thing is*, as two features.
        proprio_latent: append the measured joint positions (action units) to the latent and make
            the policy residual on them: its chunk is "where the joints are now" plus a learned offset
            per step. Needs ``state_dim == action_dim`` (joint-position robots), else it is ignored.
        state_feat: features of the joint-state MLP.
        hidden: width of the fusion, dynamics and policy MLPs.
        head_hidden: width of the cost and success heads.
        norm: latent normalization, ``"simnorm"`` or ``"layernorm"``.
        simnorm_dim: group size of SimNorm.
        dynamics_heads: latent dynamics networks sharing the encoder (>= 1). Head 0 is the model's
            dynamics (trained as always); every further head is trained alongside on the same
            transitions from the encoder's latents (detached: they never shape the encoder) and differs
            by its random initialization. Where they disagree, the model does not know: a planner's
            ``objective.disagreement_weight`` penalizes that (``planners.objectives``).
        env_state_dim: D, size of the auxiliary environment-state head (0 = none). Set from a dataset
            that records ``observation.environment_state`` (the named object's position, in sim);
            training regresses it from the latent so the latent must say where the named object is.
            Not on the planning path and not exported.
    """

    camera_names: tuple[str, ...]
    state_dim: int
    action_dim: int
    image_size: tuple[int, int] = (64, 64)
    latent_dim: int = 64
    chunk_len: int = 8
    vocab_size: int = 4097
    task_dim: int = 32
    text_encoder: str = "bag"
    pretrained_text: str | None = None
    word_dim: int = 32
    channels: tuple[int, ...] = (16, 32, 64, 64)
    image_feat: int = 128
    keypoints: int = 8
    film: bool = True
    attention: int = 0
    proprio_latent: bool = True
    state_feat: int = 64
    hidden: int = 256
    head_hidden: int = 128
    norm: str = "simnorm"
    simnorm_dim: int = 8
    dynamics_heads: int = 1
    env_state_dim: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera_names", tuple(self.camera_names))
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.camera_names:
            raise ValueError("a world model needs at least one camera")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (h, w) in pixels, got {list(self.image_size)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}")
        if self.pretrained_text is not None:
            check_name(self.pretrained_text)
        if self.norm == "simnorm" and self.latent_dim % self.simnorm_dim:
            raise ValueError(f"latent_dim {self.latent_dim} is not a multiple of simnorm_dim {self.simnorm_dim}")
        for name in ("state_dim", "action_dim", "latent_dim", "chunk_len", "vocab_size", "task_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.attention) < 0:
            raise ValueError(f"attention must be >= 0 heads, got {self.attention}")
        if int(self.dynamics_heads) < 1:
            raise ValueError(f"dynamics_heads must be >= 1, got {self.dynamics_heads}")
        if int(self.env_state_dim) < 0:
            raise ValueError(f"env_state_dim must be >= 0, got {self.env_state_dim}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``model.json`` in a checkpoint)."""
        d = asdict(self)
        for key in ("camera_names", "image_size", "channels"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


class SimNorm(nn.Module):
    """Simplicial normalization: softmax over consecutive groups of ``dim`` entries (TD-MPC2)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """``(..., Z)`` -> ``(..., Z)``, every group of ``dim`` entries sums to 1."""
        shape = x.shape
        return F.softmax(x.reshape(*shape[:-1], -1, self.dim), dim=-1).reshape(shape)


def _mlp(sizes: Sequence[int], out_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or out_act:
            layers += [nn.LayerNorm(b), nn.SiLU()]
    return nn.Sequential(*layers)


class SpatialSoftmax(nn.Module):
    """Feature maps ``(N, C, h, w)`` -> expected image coordinates ``(N, 2C)`` in ``[-1, 1]`` (Levine et al., 2016).

    Each channel's map becomes a distribution over pixels (a softmax; the layer that makes the maps
    sets its sharpness) whose mean ``(x, y)`` is a keypoint: a location the layers after it read as two
    numbers, not as a pattern of activations, which is what a policy that must touch an object needs.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        h, w = size
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, h), torch.linspace(-1.0, 1.0, w), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, 2C)``: ``x`` then ``y`` of every channel, interleaved."""
        n, c = x.shape[:2]
        probs = F.softmax(x.reshape(n, c, -1), dim=-1)  # (N, C, h*w)
        return (probs @ self.grid).reshape(n, 2 * c)  # (N, C, 2) -> (N, 2C)


class InstructionAttention(nn.Module):
    """Where in a feature map the instruction points: ``(N, C, h, w)``, task ``(N, T)`` -> ``(N, 2H)``.

    Each of ``H`` heads scores every cell by the dot product of a key (a 1x1 conv of the map and the
    cell's coordinates) with a query from the instruction, softmaxes the scores over the cells and
    returns their expected ``(x, y)`` in ``[-1, 1]`` (attention pooling, Vaswani et al., 2017, read out
    as a location like a spatial softmax). A policy that must touch "the red cube" needs exactly these
    two numbers. In a 150-second probe (this encoder, the fusion and the latent, joints blanked,
    regressing the named object's position on 1,000 reach layouts) two heads located it within 3 cm
    in 71 % of held-out first frames against 27 % without; in full 8-minute runs with the grounding
    phase it did not add (policy 80 % with two heads, 85 % without; docs/training.md, "Grounding phase").
    """

    def __init__(self, channels: int, task_dim: int, size: tuple[int, int], heads: int, key_dim: int = 16) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.key = nn.Conv2d(channels + 2, heads * key_dim, 1)
        self.query = nn.Linear(task_dim, heads * key_dim)
        self.softmax = SpatialSoftmax(size)
        h, w = size
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, h), torch.linspace(-1.0, 1.0, w), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)  # (1, 2, h, w)

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        """``(N, C, h, w)``, ``(N, T)`` -> ``(N, 2H)``: ``x`` then ``y`` of each head."""
        n, _, h, w = x.shape
        keys = self.key(torch.cat([x, self.coords.expand(n, -1, -1, -1)], dim=1))  # (N, H*d, h, w)
        keys = keys.reshape(n, self.heads, self.key_dim, h * w)
        query = self.query(task).reshape(n, self.heads, 1, self.key_dim)
        scores = (query @ keys).reshape(n, self.heads, h, w) / self.key_dim**0.5  # (N, H, h, w)
        return self.softmax(scores)


class ConvEncoder(nn.Module):
    """Images ``(N, 3, h, w)`` in ``[0, 1]`` + task ``(N, T)`` -> features ``(N, F + 2P + 2H)``.

    Strided convs (each halves the resolution) with GroupNorm; the instruction modulates every conv
    block's channels (FiLM: ``x * (1 + gamma(task)) + beta(task)``, Perez et al., 2018) so early
    filters can pick out what the instruction names (the red cube, the green zone). Two outputs,
    concatenated: a global feature (flatten + linear + LayerNorm, ``F`` numbers) and ``P`` spatial-softmax
    keypoints read off the first block's map (``2P`` coordinates in ``[-1, 1]``), then the ``2H``
    coordinates of ``H`` :class:`InstructionAttention` heads on that map (``attention``, off by default;
    they need the task even with ``film=False``).
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        channels: Sequence[int],
        out_dim: int,
        task_dim: int = 0,
        keypoints: int = 0,
        attention: int = 0,
        film: bool = True,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.films = nn.ModuleList()
        self.use_film = film
        c_in, h, w = 3, *image_size
        kp_size = None
        for i, c in enumerate(channels):
            self.blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(1, c)))
            film = nn.Linear(task_dim, 2 * c) if task_dim > 0 and self.use_film else None
            if film is not None:  # start as the identity modulation
                nn.init.zeros_(film.weight)
                nn.init.zeros_(film.bias)
            self.films.append(film if film is not None else nn.Identity())
            c_in, h, w = c, h // 2, w // 2
            if i == 0:
                kp_size = (h, w)
                c_kp = c
        if h < 1 or w < 1:
            raise ValueError(f"image size {image_size} is too small for {len(channels)} stride-2 convs")
        self.task_dim = task_dim
        self.keypoints = keypoints
        if keypoints > 0:
            assert kp_size is not None
            self.kp_conv = nn.Conv2d(c_kp, keypoints, 1)
            self.kp_softmax = SpatialSoftmax(kp_size)
        self.attention = attention if task_dim > 0 else 0
        if self.attention > 0:
            assert kp_size is not None
            self.attend = InstructionAttention(c_kp, task_dim, kp_size, self.attention)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, out_dim), nn.LayerNorm(out_dim))
        self.out_dim = out_dim + 2 * keypoints + 2 * self.attention

    def forward(self, x: Tensor, task: Tensor | None = None) -> Tensor:
        """``(N, 3, h, w)``, task ``(N, T)`` (needed when built with ``task_dim > 0``) -> ``(N, F + 2P + 2H)``."""
        if self.task_dim > 0 and task is None:
            raise ValueError("this image encoder is task-conditioned: pass the (N, T) task embedding")
        # NHWC is about 1.5x faster for these small convs on the CPU (oneDNN); a no-op for ONNX.
        x = (x * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)
        extra: list[Tensor] = []
        for i, (block, film) in enumerate(zip(self.blocks, self.films, strict=True)):
            x = block(x)
            if self.task_dim > 0 and self.use_film:
                gamma, beta = film(task).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # (N, c, 1, 1) each
                x = torch.addcmul(beta, x, gamma + 1.0)
            x = F.silu(x)
            if i == 0 and self.keypoints > 0:
                extra.append(self.kp_softmax(self.kp_conv(x)))  # (N, 2P)
            if i == 0 and self.attention > 0:
                assert task is not None
                extra.append(self.attend(x, task))  # (N, 2 heads)
        return torch.cat([self.head(x), *extra], dim=-1)


class ConvDecoder(nn.Module):
    """Latents ``(N, Z)`` -> images ``(N, 3, h, w)`` in ``[0, 1]`` with transposed convs."""

    def __init__(self, latent_dim: int, image_size: tuple[int, int], channels: Sequence[int]) -> None:
        super().__init__()
        n = len(channels)
        self.image_size = image_size
        self.h0, self.w0 = max(1, math.ceil(image_size[0] / 2**n)), max(1, math.ceil(image_size[1] / 2**n))
        chans = list(reversed(channels))
        self.fc = nn.Linear(latent_dim, chans[0] * self.h0 * self.w0)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans, [*chans[1:], chans[-1]], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(1, c_out), nn.SiLU()]
        layers.append(nn.Conv2d(chans[-1], 3, 3, padding=1))
        self.deconvs = nn.Sequential(*layers)
        self.c0 = chans[0]

    def forward(self, z: Tensor) -> Tensor:
        """``(N, Z)`` -> ``(N, 3, h, w)``."""
        x = self.fc(z).reshape(z.shape[0], self.c0, self.h0, self.w0)
        x = self.deconvs(x)
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class TextEncoder(nn.Module):
    """Token ids ``(B, L)`` (0 = padding) -> instruction embedding ``(B, T)``.

    Ids ``1 .. vocab_size - 1`` (hashed words and bigrams) index a table trained from scratch; with
    ``pretrained``, ids from ``vocab_size`` on index that frozen subword table (float16, not saved in
    checkpoints: it comes from its package), whose masked mean is projected and added to the pooled words;
    when ``pretrained`` names a sentence encoder, those ids are read by it instead
    (:class:`~latent_vla.sentence_encoder.FrozenSentenceEncoder`) and its vector is projected and added.
    """

    def __init__(
        self, vocab_size: int, word_dim: int, out_dim: int, kind: str = "bag", pretrained: str | None = None
    ) -> None:
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        if kind == "gru":
            self.gru = nn.GRU(word_dim, word_dim, batch_first=True)
        self.pretrained_proj: nn.Linear | None = None
        self.sentence: FrozenSentenceEncoder | None = None
        if pretrained is not None and check_name(pretrained).kind == "sentence":
            self.sentence = FrozenSentenceEncoder(pretrained)
            self.pretrained_proj = nn.Linear(self.sentence.dim, word_dim)
        elif pretrained is not None:
            table = torch.from_numpy(load_table(pretrained).copy())  # (V, D) float16
            self.register_buffer("pretrained_table", table, persistent=False)
            self.pretrained_proj = nn.Linear(table.shape[1], word_dim)
        self.out = nn.Sequential(
            nn.Linear(word_dim, out_dim), nn.LayerNorm(out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )
        self.norm = nn.LayerNorm(out_dim, elementwise_affine=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, L)`` int64 -> ``(B, T)`` float32 (LayerNorm-ed, so bounded)."""
        if tokens.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"tokens must be int64 ids, got {tokens.dtype}")
        vocab = self.embed.num_embeddings
        ids = tokens.long()
        words = torch.where(ids < vocab, ids, torch.zeros_like(ids))  # hashed ids; subwords -> padding
        mask = (words > 0).to(torch.float32)  # (B, L)
        emb = self.embed(words)  # (B, L, E)
        if self.kind == "gru":
            seq, _ = self.gru(emb)  # (B, L, E)
            last = (mask.sum(1).long() - 1).clamp(min=0)  # (B,)
            pooled = seq[torch.arange(tokens.shape[0], device=tokens.device), last]
        else:
            pooled = (emb * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        if self.sentence is not None:
            pooled = pooled + self.pretrained_proj(self.sentence(torch.where(ids >= vocab, ids - vocab, -1)))
        elif self.pretrained_proj is not None:
            pooled = pooled + self.pretrained_proj(self._pretrained_mean(ids - vocab))
        return self.norm(self.out(pooled))

    def _pretrained_mean(self, sub: Tensor) -> Tensor:
        """``(B, L)`` subword ids (negative = none) -> ``(B, D)`` unit-length mean of their frozen rows."""
        sub_mask = (sub >= 0).to(torch.float32).unsqueeze(-1)  # (B, L, 1)
        rows = self.pretrained_table[sub.clamp(min=0)].to(torch.float32)  # (B, L, D)
        mean = (rows * sub_mask).sum(1) / sub_mask.sum(1).clamp(min=1.0)
        return F.normalize(mean, dim=-1)


class TaskHead(nn.Module):
    """MLP on ``(z, task)``; the task projection is computed once and broadcast over ``z``'s dims."""

    def __init__(self, latent_dim: int, task_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.z_in = nn.Linear(latent_dim, hidden)
        self.t_in = nn.Linear(task_dim, hidden, bias=False)
        self.body = nn.Sequential(
            nn.LayerNorm(hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, z: Tensor, task: Tensor) -> Tensor:
        """``z`` ``(..., Z)``, ``task`` ``(B, T)`` or ``(1, T)`` with ``B = z.shape[0]`` -> ``(..., out)``."""
        t = self.t_in(task)  # (B|1, hidden)
        if z.ndim == 1:
            if t.shape[0] != 1:
                raise ValueError(f"an unbatched latent {tuple(z.shape)} needs a (1, T) task, got {tuple(task.shape)}")
            t = t[0]
        else:
            if t.shape[0] not in (1, z.shape[0]):
                raise ValueError(f"task batch {t.shape[0]} matches neither 1 nor the latent batch {z.shape[0]}")
            t = t.reshape(t.shape[0], *([1] * (z.ndim - 2)), t.shape[-1])  # (B|1, 1.., hidden)
        return self.body(self.z_in(z) + t)


class WorldModel(nn.Module):
    """Latent world model; see the module docstring and ``docs/architecture.md`` section 4b.

    Attributes:
        config: the :class:`ModelConfig` it was built from.
        action_dim: A.  latent_dim: Z.  chunk_len: K.  task_dim: T.
        dynamics_heads: how many dynamics networks :meth:`step` can use (``head`` 0 to this - 1).
        camera_names: cameras ``encode`` expects, in order.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.action_dim = int(config.action_dim)
        self.proprio_latent = bool(config.proprio_latent) and config.state_dim == config.action_dim
        self.proprio_dim = self.action_dim if self.proprio_latent else 0
        self.learned_dim = int(config.latent_dim)
        self.latent_dim = self.learned_dim + self.proprio_dim  # Z, what planners see
        self.chunk_len = int(config.chunk_len)
        self.task_dim = int(config.task_dim)
        self.state_dim = int(config.state_dim)
        self.camera_names = list(config.camera_names)
        self.image_size = tuple(config.image_size)
        n_cam = len(self.camera_names)
        Z, A, T, Hd = self.latent_dim, config.action_dim, config.task_dim, config.hidden
        Zl = self.learned_dim

        self.text = TextEncoder(config.vocab_size, config.word_dim, T, config.text_encoder, config.pretrained_text)
        self.image_encoder = ConvEncoder(
            self.image_size,
            config.channels,
            config.image_feat,
            task_dim=T if config.film or config.attention > 0 else 0,
            keypoints=config.keypoints,
            attention=config.attention,
            film=config.film,
        )
        feat = self.image_encoder.out_dim
        self.camera_embed = nn.Parameter(torch.zeros(n_cam, feat))
        self.state_encoder = _mlp([config.state_dim, config.state_feat, config.state_feat], out_act=True)
        self.fuse = _mlp([n_cam * feat + config.state_feat + T, Hd, Zl])
        self.dynamics = _mlp([Z + A, Hd, Hd, Z])
        self.cost_head = TaskHead(Z, T, config.head_hidden, 1)
        self.success_head = TaskHead(Z, T, config.head_hidden, 1)
        self.policy_head = TaskHead(Z, T, Hd, self.chunk_len * A)
        # Standardized state -> joint positions in action units: p = state * scale + shift. Set from
        # the dataset's statistics by `set_proprio_map` (saved with the weights).
        self.register_buffer("proprio_scale", torch.ones(self.proprio_dim))
        self.register_buffer("proprio_shift", torch.zeros(self.proprio_dim))
        self.decoder = ConvDecoder(Z, self.image_size, config.channels)
        self.env_state_dim = int(config.env_state_dim)
        if self.env_state_dim > 0:  # auxiliary: where the named object is (standardized units)
            self.env_state_head = _mlp([Z, config.head_hidden, config.head_hidden, self.env_state_dim])
            self.register_buffer("env_state_mean", torch.zeros(self.env_state_dim))
            self.register_buffer("env_state_std", torch.ones(self.env_state_dim))
        # Built last, so the other modules start as they would without it (the same seed, the same model).
        self.dynamics_heads = int(config.dynamics_heads)  # head 0: `dynamics`; k >= 1: `dynamics_ensemble[k-1]`
        if self.dynamics_heads > 1:
            self.dynamics_ensemble = nn.ModuleList(_mlp([Z + A, Hd, Hd, Z]) for _ in range(self.dynamics_heads - 1))
        self._simnorm = SimNorm(config.simnorm_dim)
        # Spread the initial latents over the simplex (a near-uniform softmax would start collapsed).
        fuse_out = self.fuse[-1]
        assert isinstance(fuse_out, nn.Linear)
        if config.norm == "simnorm":
            with torch.no_grad():
                fuse_out.weight.mul_(4.0)
        # Start the dynamics near the identity (small last layer) so early rollouts do not drift,
        # while gradients w.r.t. actions still flow from the first step.
        for k in range(self.dynamics_heads):
            last = self.dynamics_head(k)[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.weight.mul_(0.1)
                last.bias.zero_()

    def set_proprio_map(self, state_mean: Any, state_std: Any, action_min: Any, action_max: Any) -> None:
        """Store how standardized states map to action units (robot units, ``(S,)`` each); no-op without
        a proprioceptive block. ``p = 2 (state * std + mean - min) / (max - min) - 1``."""
        if not self.proprio_latent:
            return
        values = (state_mean, state_std, action_min, action_max)
        mean, std, lo, hi = (torch.as_tensor(v, dtype=torch.float32) for v in values)
        span = (hi - lo).clamp(min=1e-6)
        with torch.no_grad():
            self.proprio_scale.copy_(2.0 * std / span)
            self.proprio_shift.copy_(2.0 * (mean - lo) / span - 1.0)

    def set_env_state_stats(self, mean: Any, std: Any) -> None:
        """Store the dataset's ``observation.environment_state`` mean and std ``(D,)`` (its units, metres
        in sim), which :meth:`environment_state` un-standardizes with; no-op without the head."""
        if self.env_state_dim == 0:
            return
        with torch.no_grad():
            self.env_state_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.env_state_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6))

    # -- latent manifold --------------------------------------------------------------------
    def _norm_learned(self, x: Tensor) -> Tensor:
        if self.config.norm == "simnorm":
            return self._simnorm(x)
        return F.layer_norm(x, (x.shape[-1],))

    def normalize_latent(self, x: Tensor) -> Tensor:
        """Project pre-activations ``(..., Z)`` onto the latent manifold (SimNorm or LayerNorm on the
        learned block, a clamp to ``[-PROPRIO_BOUND, PROPRIO_BOUND]`` on the joint block)."""
        if not self.proprio_latent:
            return self._norm_learned(x)
        learned, joints = x.split([self.learned_dim, self.proprio_dim], dim=-1)
        return torch.cat([self._norm_learned(learned), joints.clamp(-PROPRIO_BOUND, PROPRIO_BOUND)], dim=-1)

    def _residual_learned(self, z: Tensor, delta: Tensor) -> Tensor:
        if self.config.norm == "simnorm":
            # softmax(log z + delta) == z exactly when delta == 0.
            return self._simnorm(torch.log(z.clamp(min=1e-6)) + delta)
        return F.layer_norm(z + delta, (z.shape[-1],))

    def _residual(self, z: Tensor, delta: Tensor) -> Tensor:
        if not self.proprio_latent:
            return self._residual_learned(z, delta)
        zl, zp = z.split([self.learned_dim, self.proprio_dim], dim=-1)
        dl, dp = delta.split([self.learned_dim, self.proprio_dim], dim=-1)
        return torch.cat([self._residual_learned(zl, dl), (zp + dp).clamp(-PROPRIO_BOUND, PROPRIO_BOUND)], dim=-1)

    def learned_part(self, z: Tensor) -> Tensor:
        """The learned block of a latent: ``(..., Z)`` -> ``(..., latent_dim)``."""
        return z[..., : self.learned_dim]

    # -- protocol ---------------------------------------------------------------------------
    def embed_task(self, tokens: Tensor) -> Tensor:
        """Instruction token ids ``(B, L)`` int64 -> task embedding ``(B, T)``."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, L), got {tuple(tokens.shape)}")
        return self.text(tokens)

    def encode(self, images: Mapping[str, Tensor], state: Tensor, task: Tensor) -> Tensor:
        """Observation -> latent.

        Args:
            images: ``{camera: (B, 3, h, w)}`` float in ``[0, 1]``, one entry per ``camera_names``.
            state: ``(B, S)`` standardized joint state.
            task: ``(B, T)`` or ``(1, T)`` instruction embedding.

        Returns:
            ``(B, Z)`` latent on the normalized manifold.
        """
        missing = [c for c in self.camera_names if c not in images]
        if missing:
            raise KeyError(f"encode: missing cameras {missing}; the model reads {self.camera_names}")
        x = torch.stack([images[c] for c in self.camera_names], dim=1)  # (B, C, 3, h, w)
        B, C = x.shape[:2]
        if tuple(x.shape[2:]) != (3, *self.image_size):
            raise ValueError(
                f"encode: images must be (B, 3, {self.image_size[0]}, {self.image_size[1]}), got {tuple(x.shape[1:])}"
            )
        if state.shape != (B, self.state_dim):
            raise ValueError(f"encode: state must be ({B}, {self.state_dim}), got {tuple(state.shape)}")
        task = task.expand(B, -1) if task.shape[0] == 1 else task
        conditioned = self.config.film or self.config.attention > 0
        cam_task = task.repeat_interleave(C, 0) if conditioned else None  # (B*C, T)
        feats = self.image_encoder(x.reshape(B * C, *x.shape[2:]), cam_task).reshape(B, C, -1)  # (B, C, F+2P)
        feats = (feats + self.camera_embed).reshape(B, -1)  # (B, C*(F+2P))
        h = torch.cat([feats, self.state_encoder(state), task], dim=-1)
        x = self.fuse(h)  # (B, latent_dim)
        if self.proprio_latent:  # the measured joints in action units
            x = torch.cat([x, state * self.proprio_scale + self.proprio_shift], dim=-1)
        return self.normalize_latent(x)  # (B, Z)

    def dynamics_head(self, head: int = 0) -> nn.Sequential:
        """The dynamics network of ``head`` (0: :attr:`dynamics`, ``k >= 1``: ``dynamics_ensemble[k-1]``)."""
        if not 0 <= head < self.dynamics_heads:
            n = self.dynamics_heads
            raise ValueError(f"dynamics head {head} does not exist: the model has {n} (0..{n - 1})")
        net = self.dynamics if head == 0 else self.dynamics_ensemble[head - 1]
        assert isinstance(net, nn.Sequential)
        return net

    def step(self, z: Tensor, a: Tensor, head: int = 0) -> Tensor:
        """One latent transition by dynamics ``head``: ``(B, Z)``, ``(B, A)`` -> ``(B, Z)`` (residual, on
        the manifold)."""
        net = self.dynamics if head == 0 else self.dynamics_head(head)
        return self._residual(z, net(torch.cat([z, a], dim=-1)))

    def rollout(self, z0: Tensor, actions: Tensor, head: int = 0) -> Tensor:
        """Unrolled dynamics ``head``: ``(B, Z)``, ``(B, H, A)`` -> ``(B, H, Z)`` (the state after each action)."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"rollout: actions must be (B, H, {self.action_dim}), got {tuple(actions.shape)}")
        z = z0.expand(actions.shape[0], -1) if z0.shape[0] == 1 else z0
        out = []
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t], head)
            out.append(z)
        return torch.stack(out, dim=1)

    def cost(self, z: Tensor, task: Tensor) -> Tensor:
        """Predicted distance to success, metres: ``(..., Z)``, ``(B, T)`` -> ``(...)`` >= 0 (plus
        ``train.loss.cost_dense`` x the gripper-to-object gap, and as a discounted cost-to-go with
        ``train.loss.cost_to_go``, when the model was trained with them)."""
        return F.softplus(self.cost_head(z, task)).squeeze(-1)

    def success_logit(self, z: Tensor, task: Tensor) -> Tensor:
        """Logit of :meth:`success`: ``(..., Z)``, ``(B, T)`` -> ``(...)``."""
        return self.success_head(z, task).squeeze(-1)

    def success(self, z: Tensor, task: Tensor) -> Tensor:
        """Probability that the task is solved: ``(..., Z)``, ``(B, T)`` -> ``(...)`` in ``[0, 1]``."""
        return torch.sigmoid(self.success_logit(z, task))

    def proprio(self, z: Tensor) -> Tensor:
        """Joint positions held by the latent, in action units: ``(..., Z)`` -> ``(..., A)``.

        Raises:
            RuntimeError: the latent has no joint block (``proprio_latent`` off, or state and action
                sizes differ).
        """
        if not self.proprio_latent:
            raise RuntimeError("this model's latent has no joint block (proprio_latent is off)")
        return z[..., self.learned_dim :]

    def policy(self, z: Tensor, task: Tensor) -> Tensor:
        """Action chunk: ``(B, Z)``, ``(B, T)`` -> ``(B, K, A)`` in ``[-1, 1]``.

        With ``proprio_latent`` the chunk is ``proprio(z) + offset_k`` (clamped to the box): an expert
        at 30 Hz sends targets a degree or two from where the joints are, so behaviour cloning learns
        a direction of motion rather than an absolute pose, far faster and more precisely.
        """
        raw = self.policy_head(z, task).reshape(*z.shape[:-1], self.chunk_len, self.action_dim)
        if not self.proprio_latent:
            return torch.tanh(raw)
        return (self.proprio(z).unsqueeze(-2) + raw).clamp(-1.0, 1.0)

    def env_state_standardized(self, z: Tensor) -> Tensor:
        """Auxiliary head, standardized units: ``(..., Z)`` -> ``(..., D)`` (training target space).

        Raises:
            RuntimeError: the model has no environment-state head (``env_state_dim == 0``).
        """
        if self.env_state_dim == 0:
            raise RuntimeError("this model has no environment-state head (its dataset had no environment_state)")
        return self.env_state_head(z)

    def environment_state(self, z: Tensor) -> Tensor:
        """What the latent says about the scene, in the dataset's units: ``(..., Z)`` -> ``(..., D)``
        (sim: the named object's and the goal's xyz, metres). For inspection; no planner needs it."""
        return self.env_state_standardized(z) * self.env_state_std + self.env_state_mean

    def decode(self, z: Tensor) -> Tensor:
        """Image of the first camera: ``(B, Z)`` -> ``(B, 3, h, w)`` in ``[0, 1]`` (inspection only)."""
        return self.decoder(z)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
