"""A frozen BERT sentence encoder (sentence-transformers' mean pooling) read from a shipped weights file.

The model's text encoder uses it when the tokenizer's ``pretrained`` field names a ``"sentence"`` entry of
:data:`latent_vla.base.pretrained_text.TABLES` (``minilm-l6``). Its weights are buffers, not parameters,
and are not saved in checkpoints: they come from their package. It is written with plain tensor ops so
that ``torch.export`` traces it into the bundle's ``task_embed`` graph, which onnxruntime runs.

Training embeds many reworded instructions; as the encoder is frozen, each distinct id row is encoded
once and remembered (``cache_size`` rows, least recently used dropped), in one cache per weights file that
every copy of the model shares (the training target and the weight average are deep copies). A fresh
rewording per window would still cost a BERT run each (about 2 ms on the 2-core CPU, 16 a step in the
multi-task recipe); ``train.rephrase_pool`` bounds the rewordings so that each is encoded once.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent_vla.base.pretrained_text import load_sentence_weights

LAYER_NORM_EPS = 1e-12
"""BERT's LayerNorm epsilon."""
_CACHES: dict[tuple[str, int], OrderedDict[bytes, Tensor]] = {}
"""Per (weights name, cache size): compact id row bytes -> ``(D,)`` vector, shared by every copy of a model."""


class FrozenSentenceEncoder(nn.Module):
    """``(B, L)`` WordPiece ids (negative = none) -> ``(B, D)`` unit-length sentence vectors.

    Args:
        name: a ``"sentence"`` entry of :data:`latent_vla.base.pretrained_text.TABLES`.
        heads: attention heads of that BERT (12 for MiniLM-L6).
        cache_size: id rows whose vectors are remembered outside tracing (0: none).
    """

    def __init__(self, name: str, heads: int = 12, cache_size: int = 200_000) -> None:
        super().__init__()
        weights = load_sentence_weights(name)
        self.name, self.heads, self.cache_size = name, heads, cache_size
        self.layers = sum(1 for k in weights if k.endswith("attention.self.query.weight"))
        for key, array in weights.items():
            if key != "embeddings.position_ids":
                self.register_buffer(key.replace(".", "__"), torch.from_numpy(array.copy()), persistent=False)
        self.dim = int(self._w("embeddings.word_embeddings.weight").shape[1])

    @property
    def _cache(self) -> OrderedDict[bytes, Tensor]:
        return _CACHES.setdefault((self.name, self.cache_size), OrderedDict())

    def _w(self, key: str) -> Tensor:
        return getattr(self, key.replace(".", "__"))

    def _linear(self, x: Tensor, key: str) -> Tensor:
        return F.linear(x, self._w(f"{key}.weight"), self._w(f"{key}.bias"))

    def _norm(self, x: Tensor, key: str) -> Tensor:
        return F.layer_norm(x, (self.dim,), self._w(f"{key}.weight"), self._w(f"{key}.bias"), LAYER_NORM_EPS)

    def forward(self, ids: Tensor) -> Tensor:
        """``(B, L)`` ids, negative where a row has none -> ``(B, D)`` float32 (zeros for an empty row)."""
        if self.cache_size == 0 or _tracing():
            return self.encode(ids)
        cache = self._cache
        rows = [row[row >= 0] for row in ids.detach().cpu().numpy()]
        keys = [row.tobytes() for row in rows]
        first: dict[bytes, int] = {}  # uncached key -> the first row that holds it
        for i, key in enumerate(keys):
            if key not in cache:
                first.setdefault(key, i)
        if first:
            missing = list(first.values())
            packed = np.full((len(missing), max(len(rows[i]) for i in missing) or 1), -1, dtype=np.int64)
            for j, i in enumerate(missing):
                packed[j, : len(rows[i])] = rows[i]  # the row's own ids only: a short BERT run
            with torch.no_grad():
                fresh = self.encode(torch.from_numpy(packed).to(ids.device))
            cache.update(zip(first, fresh, strict=True))
        for key in keys:
            cache.move_to_end(key)
        out = torch.stack([cache[k].to(ids.device) for k in keys])  # no-op on the device they were made on
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return out

    def encode(self, ids: Tensor) -> Tensor:
        """The BERT run on ``ids`` ``(B, L)`` (no cache): positions count the row's own ids only, so they
        may sit anywhere in the row; the output is the masked mean of the last layer, unit length."""
        mask = (ids >= 0).to(torch.float32)  # (B, L)
        positions = (mask.cumsum(1) - 1).clamp(min=0).long()
        x = self._w("embeddings.word_embeddings.weight")[ids.clamp(min=0)]
        x = x + self._w("embeddings.position_embeddings.weight")[positions]
        x = self._norm(x + self._w("embeddings.token_type_embeddings.weight")[0], "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e4  # (B, 1, 1, L)
        for i in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{i}")
        mean = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return F.normalize(mean, dim=-1)

    def _layer(self, x: Tensor, bias: Tensor, key: str) -> Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = (split(self._linear(x, f"{key}.attention.self.{p}")) for p in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias, dim=-1)
        h = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = self._norm(x + self._linear(h, f"{key}.attention.output.dense"), f"{key}.attention.output.LayerNorm")
        f = F.gelu(self._linear(x, f"{key}.intermediate.dense"))
        return self._norm(x + self._linear(f, f"{key}.output.dense"), f"{key}.output.LayerNorm")


def _tracing() -> bool:
    """Whether a tracer (jit, dynamo, ``torch.export``, ONNX) runs this: then the ops, not the cache."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())
