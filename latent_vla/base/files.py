"""Reading small metadata files (JSON) so that every way they can be broken is one error of the caller's class.

``json.loads`` alone lets a non-UTF-8 file surface as ``UnicodeDecodeError``, a deeply nested one as
``RecursionError`` and a huge one as a memory spike. The checkpoint and bundle loaders read their
JSON through here and get their own error class (``CheckpointError``, ``ManifestError``) with the
file named instead. Standard library only: the PyTorch-free runtime uses it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_METADATA_BYTES = 64 << 20  # 64 MiB: far above any manifest, stats or config we write


def read_small_file(path: str | os.PathLike[str], error: type[Exception], max_bytes: int = MAX_METADATA_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, checked before it is read whole.

    Raises:
        error: the file is missing, not a regular file, unreadable or larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise error(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{path} is {st.st_size} bytes, more than the {max_bytes} a metadata file may have")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{path} grew past {max_bytes} bytes while being read")
    return data


def loads_json(data: bytes, where: str, error: type[Exception]) -> Any:
    """Parse UTF-8 JSON ``data``; ``where`` names the source in the message.

    Raises:
        error: the bytes are not UTF-8, not valid JSON, nested too deeply, or hold an absurd number.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise error(f"{where} is nested too deeply to be one of our JSON files") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise error(f"{where} holds a value JSON cannot represent here: {exc}") from None


def read_json(path: str | os.PathLike[str], error: type[Exception], max_bytes: int = MAX_METADATA_BYTES) -> Any:
    """:func:`read_small_file` then :func:`loads_json`: a JSON file's content, or ``error`` naming it."""
    return loads_json(read_small_file(path, error, max_bytes), str(path), error)
