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
