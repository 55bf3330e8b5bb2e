"""Small-batch matrix products for the fused planning kernel: ``x (M, K) @ W (K, N)`` with ``W`` packed once.

The planning step multiplies 8-row activations (one row per restart) by the same few weight matrices
~100 times per iteration. BLAS ``sgemm`` re-packs ``W`` on every call, which at 8 rows costs as much as
the arithmetic (OpenBLAS reaches 25-55 GFLOP/s on these shapes here). This module packs each weight
once, in column panels of 16 floats (one AVX-512 register; two AVX2 registers), and multiplies with a
register-tiled micro-kernel written in LLVM IR through a numba intrinsic: a tile of rows x panels lives
in vector accumulators while ``k`` runs over ``K``; each step loads the tile's panel vectors, broadcasts
one activation per row and issues rows x panels fused multiply-adds. The tile fits the host's vector
registers (:data:`TILE`): with AVX-512 (32 registers of 16 floats) 8 rows x 2 panels, 16 accumulators;
with AVX2 (16 registers of 8 floats, two per panel) 4 rows x 1 panel, 8 register pairs, since the
AVX-512 tile needs 32 and spills. Measured, one thread: on a 2-core Xeon (AVX-512) 75-85 GFLOP/s for
8 x 256 x 256 (BLAS 45-55; large-``sgemm`` peak 98); on a 2-core AMD EPYC (Zen 3, AVX2) 47 GFLOP/s
with the 4 x 1 tile against 26 with the 8 x 2 one (BLAS 17; peak 64).

The arithmetic is plain float32 multiply-adds in ``k`` order (``llvm.fmuladd``: fused where the CPU has
FMA), so results match BLAS to float32 rounding.
"""

# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

PANEL = 16
"""Floats per packed column panel (one 512-bit vector)."""


def _has_avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512 (``NUMBA_CPU_FEATURES`` when set, else the host's)."""
    from numba.core import config

    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


TILE = (8, 2) if _has_avx512() else (4, 1)
"""Rows and 16-float panels per micro-kernel tile for this CPU (see the module docstring)."""


def pack(w: np.ndarray) -> np.ndarray:
    """``w (K, N)`` -> ``(ceil(N / 16), K, 16)`` float32 column panels, zero-padded past ``N``; the
    product's output then has ``16 * ceil(N / 16)`` columns, of which the first ``N`` are ``x @ w``."""
    w = np.asarray(w, np.float32)
    k, n = w.shape
    panels = -(-n // PANEL)
    padded = np.zeros((k, panels * PANEL), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, panels, PANEL).transpose(1, 0, 2))


def _micro_kernel(rows: int, vectors: int):
    """An intrinsic ``tile(x, m0, wp, nb, out)``: ``out[m0:m0+rows, 16 nb : 16 (nb+vectors)] =
    x[m0:m0+rows] @ panels nb .. nb+vectors-1 of wp``; rows of ``x`` and ``out`` at their own strides."""

    @intrinsic
    def tile(typingctx, x, m0, wp, nb, out):
        sig = types.void(x, m0, wp, nb, out)

        def codegen(context, builder, signature, args):
            xa, m0v, wpa, nbv, oa = args
            xs = context.make_array(signature.args[0])(context, builder, xa)
            ps = context.make_array(signature.args[2])(context, builder, wpa)
            os_ = context.make_array(signature.args[4])(context, builder, oa)
            i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
            vec = ir.VectorType(f32, PANEL)
            fmuladd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{PANEL}f32"
            )
            k_len = builder.extract_value(xs.shape, 1)
            x_ld = builder.sdiv(builder.extract_value(xs.strides, 0), ir.Constant(i64, 4))  # floats per row
            o_ld = builder.sdiv(builder.extract_value(os_.strides, 0), ir.Constant(i64, 4))
            panel_len = builder.mul(k_len, ir.Constant(i64, PANEL))
            zero = ir.Constant(vec, [0.0] * PANEL)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)] for _ in range(rows)]

            def row(data, ld, r):  # pointer to row m0 + r of a matrix with ld floats per row
                return builder.gep(data, [builder.mul(builder.add(m0v, ir.Constant(i64, r)), ld)])

            x_rows = [row(xs.data, x_ld, r) for r in range(rows)]
            w_base = [builder.gep(ps.data, [builder.mul(builder.add(nbv, ir.Constant(i64, v)), panel_len)])
                      for v in range(vectors)]  # fmt: skip
            splat = ir.Constant(ir.VectorType(i32, PANEL), [0] * PANEL)
            undef = ir.Constant(vec, ir.Undefined)
            with cgutils.for_range(builder, k_len) as loop:
                off = builder.mul(loop.index, ir.Constant(i64, PANEL))
                w_vecs = [builder.load(builder.bitcast(builder.gep(b, [off]), vec.as_pointer()), align=4)
                          for b in w_base]  # fmt: skip
                for r in range(rows):
                    xv = builder.load(builder.gep(x_rows[r], [loop.index]))
                    xb = builder.shuffle_vector(builder.insert_element(undef, xv, ir.Constant(i32, 0)), undef, splat)
                    for v in range(vectors):
                        builder.store(builder.call(fmuladd, [xb, w_vecs[v], builder.load(acc[r][v])]), acc[r][v])
            col = builder.mul(nbv, ir.Constant(i64, PANEL))
            for r in range(rows):
                o_row = builder.gep(row(os_.data, o_ld, r), [col])
                for v in range(vectors):
                    dst = builder.bitcast(builder.gep(o_row, [ir.Constant(i64, v * PANEL)]), vec.as_pointer())
                    builder.store(builder.load(acc[r][v]), dst, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_ROWS, _PANELS = TILE
_tile, _tile_tail = _micro_kernel(_ROWS, _PANELS), _micro_kernel(_ROWS, 1)  # tail: panels past a whole tile
_row, _row_tail = _micro_kernel(1, _PANELS), _micro_kernel(1, 1)  # rows past the last whole tile


@njit(cache=True, error_model="numpy", nogil=True)
def matmul_into(x, wp, out):
    """``out (M, 16 * NB) = x (M, K) @ W`` for ``wp = pack(W) (NB, K, 16)``; ``x`` and ``out`` float32
    with unit column stride (row strides free: views of wider buffers work). Shapes are checked."""
    m, k = x.shape
    n_panels = wp.shape[0]
    if (wp.shape[1] != k or wp.shape[2] != PANEL or out.shape[0] != m or out.shape[1] != n_panels * PANEL
            or x.strides[1] != 4 or out.strides[1] != 4 or wp.strides[1] != 4 * PANEL
            or (n_panels > 1 and wp.strides[0] != 4 * PANEL * k)):  # fmt: skip
        raise ValueError("matmul_into: shapes or strides do not fit")
    whole = n_panels - n_panels % _PANELS
    m0 = 0
    while m0 + _ROWS <= m:
        for nb in range(0, whole, _PANELS):
            _tile(x, m0, wp, nb, out)
        for nb in range(whole, n_panels):
            _tile_tail(x, m0, wp, nb, out)
        m0 += _ROWS
    for r in range(m0, m):
        for nb in range(0, whole, _PANELS):
            _row(x, r, wp, nb, out)
        for nb in range(whole, n_panels):
            _row_tail(x, r, wp, nb, out)


@njit(cache=True, error_model="numpy", nogil=True)
def matmul(x, wp):
    """``x (M, K) @ W`` as a new ``(M, 16 * NB)`` array (see :func:`matmul_into`)."""
    out = np.empty((x.shape[0], wp.shape[0] * PANEL), np.float32)
    matmul_into(x, wp, out)
    return out
