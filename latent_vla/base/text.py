"""Hashing word tokenizer for instructions (numpy only; the ONNX runtime reuses it).

Words are lower-cased, split on anything that is not a letter or digit, and hashed with CRC-32 into
``num_buckets`` buckets, so unseen words never crash: they land in some bucket the model has
(probably) not trained, which the instruction encoder treats like any other word. Word bigrams are
hashed too (when ``bigrams`` is on), which gives a bag-of-words encoder a little word order
("red cube into green zone" vs "green cube into red zone").

Token id 0 is padding; word and bigram ids lie in ``1 .. num_buckets``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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
    """

    num_buckets: int = 4096
    max_len: int = 24
    bigrams: bool = True

    def __post_init__(self) -> None:
        if self.num_buckets < 2:
            raise ValueError(f"num_buckets must be >= 2, got {self.num_buckets}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")

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
        """Unpadded, untruncated ids of one text: unigrams, then bigrams."""
        words = self.words(text)
        ids = [self._hash(w) for w in words]
        if self.bigrams:
            ids += [self._hash(f"{a} {b}") for a, b in zip(words[:-1], words[1:], strict=True)]
        return ids

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
        return {"kind": "hashing", **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        kind = data.pop("kind", "hashing")
        if kind != "hashing":
            raise ValueError(f"unknown tokenizer kind {kind!r}; this version supports 'hashing'")
        return cls(**data)
