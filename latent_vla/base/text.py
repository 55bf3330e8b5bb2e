"""Hashing word tokenizer for instructions (numpy only; the ONNX runtime reuses it).

Words are lower-cased, split on anything that is not a letter or digit, and hashed with CRC-32 into
``num_buckets`` buckets, so unseen words never crash. Word bigrams are hashed too (when ``bigrams`` is
on), which gives a bag-of-words encoder a little word order ("red cube into green zone" vs "green cube
into red zone"). A trained model's tokenizer also lists the words and word pairs its training read
(``known_words``, written by ``latent-vla train``) and drops every other one: a word (or word pair) the
model never read is ignored, instead of being read as whatever its hash bucket holds, even where that
bucket is a trained word's (with 16,384 buckets and ~1,500 trained pieces, about one unseen piece in ten).
Checkpoints of 2026-12-03 and 12-04 list trained ids instead (``known_ids``), and read an unseen word
whose bucket a trained one shares as that word.

Token id 0 is padding; word and bigram ids lie in ``1 .. num_buckets``. With ``pretrained`` set (a table
of :mod:`latent_vla.base.pretrained_text`), the text's subword ids in that table follow, shifted to
``num_buckets + 1 ..``: the model reads them through a frozen table, so a word no training held still
carries its meaning.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from latent_vla.base.pretrained_text import check_name, subword_ids

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
        known_ids: the hashed ids a model was trained on (sorted); :meth:`token_ids` drops every other
            hashed id. ``None`` keeps all. Written by training on 2026-12-03 and 12-04 (read still, for
            their checkpoints); not a setting.
        known_words: the words and word pairs (``"red cube"``, as :meth:`pieces` gives them; sorted) a
            model was trained on; :meth:`token_ids` drops every other piece before hashing. ``None`` keeps
            all (the tokenizer a training run uses). Training writes it (since 2026-12-05); not a setting.
        pretrained: name of a shipped subword table (:data:`latent_vla.base.pretrained_text.TABLES`)
            whose ids follow the hashed ones, or ``None``. At most half of ``max_len`` goes to them.
    """

    num_buckets: int = 4096
    max_len: int = 24
    bigrams: bool = True
    known_ids: tuple[int, ...] | None = None
    pretrained: str | None = None
    known_words: tuple[str, ...] | None = None

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
        if self.known_words is not None:
            object.__setattr__(self, "known_words", tuple(sorted({str(w) for w in self.known_words})))
        if self.pretrained is not None:
            check_name(self.pretrained)

    @cached_property
    def _known(self) -> frozenset[int] | None:
        return None if self.known_ids is None else frozenset(self.known_ids)

    @cached_property
    def _known_pieces(self) -> frozenset[str] | None:
        return None if self.known_words is None else frozenset(self.known_words)

    def with_known_words(self, pieces: Iterable[str] | None) -> Tokenizer:
        """This tokenizer with ``known_words`` set to ``pieces`` (:meth:`pieces` of the texts a model
        read; ``None``: keep all)."""
        return replace(self, known_words=None if pieces is None else tuple(pieces))

    @property
    def vocab_size(self) -> int:
        """Rows of the learned embedding table the hashed ids index: ``num_buckets + 1`` (0 = padding);
        pretrained subword ids lie above it."""
        return self.num_buckets + 1

    def words(self, text: str) -> list[str]:
        """Normalized words of ``text`` (lower case, letters and digits only)."""
        return _WORD.findall(text.lower())

    def pieces(self, text: str) -> list[str]:
        """The words of ``text``, then (with ``bigrams``) its pairs of neighbouring words (``"red cube"``):
        what the hashed ids stand for."""
        words = self.words(text)
        pairs = [f"{a} {b}" for a, b in zip(words[:-1], words[1:], strict=True)] if self.bigrams else []
        return words + pairs

    def _hash(self, piece: str) -> int:
        return 1 + zlib.crc32(piece.encode("utf-8")) % self.num_buckets

    def token_ids(self, text: str) -> list[int]:
        """Unpadded, untruncated ids of one text: unigrams, then bigrams (only ``known_words`` /
        ``known_ids``, when set), then the pretrained subword ids shifted by ``vocab_size`` (when
        ``pretrained`` is set)."""
        pieces = self.pieces(text)
        if self._known_pieces is not None:
            pieces = [p for p in pieces if p in self._known_pieces]
        ids = [self._hash(p) for p in pieces]
        if self._known is not None:
            ids = [i for i in ids if i in self._known]
        if self.pretrained is not None:
            ids += [self.vocab_size + i for i in subword_ids(self.pretrained, text)]
        return ids

    def _fit(self, ids: list[int]) -> list[int]:
        """``ids`` cut to ``max_len``: the pretrained subword ids (the tail) to at most half of it."""
        hashed = [i for i in ids if i < self.vocab_size]
        sub = [i for i in ids if i >= self.vocab_size][: self.max_len // 2]
        return hashed[: self.max_len - len(sub)] + sub

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
            ids = self._fit(self.token_ids(text))
            out[i, : len(ids)] = ids
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (saved as ``tokenizer.json`` in checkpoints and export bundles)."""
        data = asdict(self)
        data["known_ids"] = None if self.known_ids is None else list(self.known_ids)
        data["known_words"] = None if self.known_words is None else list(self.known_words)
        return {"kind": "hashing", **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        kind = data.pop("kind", "hashing")
        if kind != "hashing":
            raise ValueError(f"unknown tokenizer kind {kind!r}; this version supports 'hashing'")
        return cls(**data)
