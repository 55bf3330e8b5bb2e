"""Hashing word tokenizer for instructions (numpy only; the ONNX runtime reuses it).

Words are lower-cased, split on anything that is not a letter or digit, and hashed with CRC-32 into
``num_buckets`` buckets, so unseen words never crash. Word bigrams are hashed too (when ``bigrams`` is
on), which gives a bag-of-words encoder a little word order ("red cube into green zone" vs "green cube
into red zone"). A trained model's tokenizer also lists the ids its training saw (``known_ids``, written
by ``latent-vla train``) and drops every other one: a word (or word pair) the model never read is
ignored, instead of being read as whatever untrained (random) embedding its bucket holds. A word that
shares a bucket with a trained one still reads as that word; the more buckets, the rarer.

Token id 0 is padding; word and bigram ids lie in ``1 .. num_buckets``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
PAD_ID = 0


@dataclass(frozen=True)
class Tokenizer:
    """Stateless hashing tokenizer.

    Attributes:
        num_buckets: number of hash buckets; ids are ``1 .. num_buckets`` (the embedding table of the
            model has ``num_buckets + 1`` rows, row 0 being padding).
        max_len: fixed output length ``L``; longer token lists are truncated, shorter ones padded with 0.
        bigrams: also emit one hashed token per pair of neighbouring words (after all unigrams).
        known_ids: the ids a model was trained on (sorted); :meth:`token_ids` drops every other id.
            ``None`` keeps all (the tokenizer a training run uses, and checkpoints from before
            2026-12-03). Training writes it; it is not a setting.
    """

    num_buckets: int = 4096
    max_len: int = 24
    bigrams: bool = True
    known_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_buckets < 2:
            raise ValueError(f"num_buckets must be >= 2, got {self.num_buckets}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.known_ids is not None:
            ids = tuple(sorted({int(i) for i in self.known_ids}))
            if ids and not 1 <= ids[0] <= ids[-1] <= self.num_buckets:
                raise ValueError(f"known_ids must lie in 1 .. {self.num_buckets}, got {ids[0]} .. {ids[-1]}")
            object.__setattr__(self, "known_ids", ids)

    @cached_property
    def _known(self) -> frozenset[int] | None:
        return None if self.known_ids is None else frozenset(self.known_ids)

    def with_known_ids(self, ids: Iterable[int] | None) -> Tokenizer:
        """This tokenizer with ``known_ids`` set to ``ids`` (padding 0 left out; ``None``: keep all)."""
        return replace(self, known_ids=None if ids is None else tuple(i for i in ids if i != PAD_ID))

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table the ids index: ``num_buckets + 1`` (0 = padding)."""
        return self.num_buckets + 1

    def words(self, text: str) -> list[str]:
        """Normalized words of ``text`` (lower case, letters and digits only)."""
        return _WORD.findall(text.lower())

    def _hash(self, piece: str) -> int:
        return 1 + zlib.crc32(piece.encode("utf-8")) % self.num_buckets

    def token_ids(self, text: str) -> list[int]:
        """Unpadded, untruncated ids of one text: unigrams, then bigrams (only ``known_ids``, when set)."""
        words = self.words(text)
        ids = [self._hash(w) for w in words]
        if self.bigrams:
            ids += [self._hash(f"{a} {b}") for a, b in zip(words[:-1], words[1:], strict=True)]
        return ids if self._known is None else [i for i in ids if i in self._known]

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        """Tokenize a batch of instructions.

        Args:
            texts: ``B`` strings (a single string is treated as a batch of one).

        Returns:
            ``(B, L)`` int64 ids with ``L = max_len``; 0 is padding. An empty string gives all zeros.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"instruction {i} is {type(text).__name__}, expected str")
            ids = self.token_ids(text)[: self.max_len]
            out[i, : len(ids)] = ids
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (saved as ``tokenizer.json`` in checkpoints and export bundles)."""
        data = asdict(self)
        data["known_ids"] = None if self.known_ids is None else list(self.known_ids)
        return {"kind": "hashing", **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        kind = data.pop("kind", "hashing")
        if kind != "hashing":
            raise ValueError(f"unknown tokenizer kind {kind!r}; this version supports 'hashing'")
        return cls(**data)
