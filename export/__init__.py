"""ONNX export of latent-vla world models and the PyTorch-free runtime (``export.runtime``).

Public names are re-exported lazily: ``import export.runtime`` must never pull in PyTorch, while the
exporter (``export.exporter``) needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ExportSettings": "export.exporter",
    "ExportResult": "export.exporter",
    "ExportError": "export.exporter",
    "export_bundle": "export.exporter",
    "load_bundle": "export.runtime",
    "load_bundle_brain": "export.runtime",
    "BundleBrain": "export.runtime",
    "BundleError": "export.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


__all__ = list(_LAZY)
