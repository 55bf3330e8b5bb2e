"""Import a Python file by path: a benchmark script or another test folder's helpers (shared by tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def import_file(path: str | Path, name: str | None = None) -> ModuleType:
    """The module in ``path`` (relative paths are from the repository root), executed fresh."""
    path = Path(path)
    path = path if path.is_absolute() else REPO / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
