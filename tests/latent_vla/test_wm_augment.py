"""Random-shift augmentation: whole-pixel shifts within the pad, edge-replicated, per image."""

from __future__ import annotations

import torch

from latent_vla.augment import random_shift


def test_random_shift_moves_each_image_by_at_most_pad_pixels():
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(16, 3, 20, 24)
    img[:, :, 8, 10] = 1.0  # one bright pixel away from the border
    out = random_shift(img, 3, generator=g)
    assert out.shape == img.shape and out.dtype == img.dtype
    offsets = set()
    for b in range(16):
        ys, xs = torch.nonzero(out[b, 0], as_tuple=True)
        assert len(ys) == 1  # the pixel moved intact, nothing else lit up
        dy, dx = 8 - int(ys[0]), 10 - int(xs[0])
        assert abs(dy) <= 3 and abs(dx) <= 3
        assert torch.equal(out[b, 1], out[b, 0])  # channels move together
        offsets.add((dy, dx))
    assert len(offsets) > 4  # independent per image


def test_random_shift_replicates_edges_and_zero_pad_is_identity():
    img = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert random_shift(img, 0) is img
    out = random_shift(img, 2, generator=torch.Generator().manual_seed(1))
    # every output value comes from the same image and channel (edge replication, no zeros)
    for b in range(2):
        for c in range(3):
            assert set(out[b, c].flatten().tolist()) <= set(img[b, c].flatten().tolist())
