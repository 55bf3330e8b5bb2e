"""Image augmentation for world-model training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by a random whole-pixel offset in ``[-pad, pad]`` (DrQ, Kostrikov et al. 2020).

    The image is padded by ``pad`` pixels with its edge values and cropped back to its size at a
    random offset, drawn independently per image. Small shifts keep a policy from keying on exact
    pixel positions of one layout and are the standard remedy for over-fitting in image-based control.

    Args:
        images: ``(B, C, H, W)`` float images.
        pad: largest shift, pixels (>= 0; 0 returns the input).
        generator: optional random generator for reproducible shifts.

    Returns:
        ``(B, C, H, W)`` shifted images, same dtype and device.
    """
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (B, C, H+2p, W+2p)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=images.device, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=images.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=images.device)[None]).clamp(max=h + 2 * pad - 1)  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=images.device)[None]).clamp(max=w + 2 * pad - 1)  # (B, W)
    idx_b = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
