"""Pretrained subword embeddings for instructions, shipped inside a package (numpy only, no hub download).

WordLlama's ``l2_supercat`` table (the ``wordllama`` package on PyPI carries it in its wheel: a Llama-2
subword tokenizer of 32,000 ids and a ``(32000, 256)`` float16 table distilled from the token embeddings
of large language models, MIT licence) gives any text, including words no training data held, a vector
in which paraphrases lie close ("make contact with" near "touch", "elevate" near "lift"). The hashing
:class:`~latent_vla.base.text.Tokenizer` appends these subword ids (after its own) when its ``pretrained``
field names a table here, and the model's text encoder averages their frozen rows beside the words it
learned (``latent_vla.model.TextEncoder``): unknown words are still never an error.

Only the package's data files are read (``importlib.resources``), never its loader, which would try to
download. The ONNX runtime uses this module as it is: ``tokenizers`` (Rust) and numpy, no PyTorch.
"""

from __future__ import annotations

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
    """

    package: str
    requirement: str
    weights: str
    tokenizer: str
    size: tuple[int, int]


TABLES: dict[str, PretrainedTable] = {
    "wordllama-l2-256": PretrainedTable(
        package="wordllama",
        requirement="wordllama==0.4.0.post1",
        weights="weights/l2_supercat_256.safetensors",
        tokenizer="tokenizers/l2_supercat_tokenizer_config.json",
        size=(32000, 256),
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
def _subword_tokenizer(name: str) -> Any:
    from tokenizers import Tokenizer as SubwordTokenizer  # a dependency of wordllama; only when used

    table = check_name(name)
    return SubwordTokenizer.from_file(str(_file(table, table.tokenizer)))


def subword_ids(name: str, text: str) -> list[int]:
    """Subword ids ``0 .. V-1`` of the lower-cased ``text`` in table ``name`` (no special tokens)."""
    return list(_subword_tokenizer(name).encode(text.lower(), add_special_tokens=False).ids)


@lru_cache(maxsize=2)
def load_table(name: str) -> np.ndarray:
    """The ``(V, D)`` float16 table called ``name`` (read once per process; read-only)."""
    from safetensors.numpy import load_file

    table = check_name(name)
    tensors = load_file(str(_file(table, table.weights)))
    if len(tensors) != 1:
        raise RuntimeError(f"{table.weights} holds {len(tensors)} tensors, expected one table")
    (array,) = tensors.values()
    if tuple(array.shape) != table.size:
        raise RuntimeError(f"{table.weights} is {tuple(array.shape)}, expected {table.size}")
    array = np.ascontiguousarray(array, dtype=np.float16)
    array.setflags(write=False)
    return array
