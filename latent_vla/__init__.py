"""latent-vla: see, understand an instruction, imagine in a learned latent world model, plan there.

Public names are re-exported lazily so that ``import latent_vla`` stays cheap and free of
PyTorch for the numpy-only runtime (``latent_vla.robot_spec`` needs numpy alone).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "RobotSpec": "latent_vla.robot_spec",
    "SO101": "latent_vla.robot_spec",
    "get_robot_spec": "latent_vla.robot_spec",
    "Tokenizer": "latent_vla.text",
    "Normalizer": "latent_vla.normalize",
    "ModelConfig": "latent_vla.model",
    "WorldModel": "latent_vla.model",
    "Checkpoint": "latent_vla.checkpoint",
    "CheckpointError": "latent_vla.checkpoint",
    "save_checkpoint": "latent_vla.checkpoint",
    "load_checkpoint": "latent_vla.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latent_vla' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
