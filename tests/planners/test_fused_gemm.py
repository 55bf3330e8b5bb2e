"""The packed small-batch matrix product of the fused planning kernel (latent_vla/base/fused_gemm.py).

Against numpy's float32 product on the kernel's own shapes (8-row tiles, 128-row cost-head batches,
column counts off the 16-float panels) and on awkward ones (1 row, row tails, odd panel counts), on a
strided view, and with shapes that do not fit (refused, never read out of bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

from latent_vla.base.fused_rollout import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.mark.parametrize(
    "m, k, n",
    [(8, 76, 256), (8, 256, 256), (8, 256, 70), (128, 70, 128), (128, 128, 128), (1, 5, 3), (13, 7, 33),
     (9, 256, 16), (256, 76, 256)],
)  # fmt: skip
def test_matches_numpy(m: int, k: int, n: int) -> None:
    from latent_vla.base.fused_gemm import PANEL, matmul, pack

    rng = np.random.default_rng(m * 1000 + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    out = matmul(x, pack(w))
    assert out.shape == (m, -(-n // PANEL) * PANEL) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :n], x @ w, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    assert not out[:, n:].any()  # the zero padding of the last panel


def test_strided_rows_and_refused_shapes() -> None:
    from latent_vla.base.fused_gemm import matmul, matmul_into, pack

    rng = np.random.default_rng(0)
    wide = rng.standard_normal((8, 80)).astype(np.float32)
    w = rng.standard_normal((70, 40)).astype(np.float32)
    np.testing.assert_allclose(matmul(wide[:, :70], pack(w))[:, :40], wide[:, :70] @ w, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        matmul(wide[:, :69], pack(w))  # K differs
    with pytest.raises(ValueError, match="do not fit"):
        matmul_into(wide[:, :70], pack(w), np.empty((8, 40), np.float32))  # output not padded to the panels
    with pytest.raises(ValueError, match="do not fit"):
        matmul(np.asfortranarray(wide[:, :70]), pack(w))  # columns not contiguous


@pytest.mark.parametrize("rows, panels", [(8, 2), (8, 1), (4, 1), (1, 2), (1, 1)])
def test_every_tile_shape(rows: int, panels: int) -> None:
    """The micro-kernel tiles of both CPU families (AVX-512: 8 x 2 panels, AVX2: 4 x 1, and the tails), not
    only the host's: each writes its block of the product and nothing else."""
    from numba import njit

    from latent_vla.base.fused_gemm import PANEL, _micro_kernel, pack

    tile = _micro_kernel(rows, panels)

    @njit
    def one_tile(x, wp, m0, nb, out):  # noqa: ANN001, ANN202
        tile(x, m0, wp, nb, out)

    rng = np.random.default_rng(rows * 10 + panels)
    x = rng.standard_normal((rows + 3, 37)).astype(np.float32)
    w = rng.standard_normal((37, PANEL * (panels + 2))).astype(np.float32)
    out = np.full((rows + 3, w.shape[1]), 7.0, np.float32)
    one_tile(x, pack(w), 2, 1, out)  # rows 2 .. 2 + rows, panels 1 .. 1 + panels
    block = (slice(2, 2 + rows), slice(PANEL, PANEL * (1 + panels)))
    np.testing.assert_allclose(out[block], (x @ w)[block], rtol=1e-5, atol=1e-4)
    untouched = np.ones(out.shape, bool)
    untouched[block] = False
    assert (out[untouched] == 7.0).all()
