"""The one reading of a ``device`` setting (training, ``eval ckpt=``, ``run brain=<run dir>``).

Kept apart from :mod:`latent_vla.train` so that loading a checkpoint for planning does not import the
training loop's dependencies (TensorBoard, the dataset reader).
"""

from __future__ import annotations

import torch

from latent_vla.base.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device, key: str = "device") -> torch.device:
    """A ``device`` setting as a ``torch.device`` this machine has.

    Args:
        name: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, any other
            ``torch.device`` string, or a ``torch.device``.
        key: the setting's name, for the message.

    Raises:
        UserError: ``name`` is not a torch device, or a CUDA device this machine does not have (one line
            here, instead of torch's failure at the first tensor moved there).
    """
    if isinstance(name, str) and name.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"{key}={name!r} is not a torch device; use {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(
                f"{key}={name!r}: CUDA is not available here (torch {torch.__version__} finds no CUDA device); "
                f"use {key}=cpu or {key}=auto"
            )
        if device.index is not None and device.index >= count:
            raise UserError(f"{key}={name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device
