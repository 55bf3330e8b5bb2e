"""numba bodies of :mod:`latent_vla.base.fused_rollout` (imported only when numba is installed).

Compiled with ``fastmath`` (reassociation lets LLVM vectorize the row reductions; results agree with
autograd to ~1e-7), ``error_model="numpy"`` (no zero-division checks, which kept divisions scalar) and
an on-disk cache, so a process pays the ~15 s compilation once per machine.
"""
# ruff: noqa: ANN001, ANN201, N806

from __future__ import annotations

import math

import numpy as np
from numba import njit

_jit = njit(cache=True, fastmath=True, error_model="numpy", nogil=True)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def exp_parts(v: np.float32) -> tuple[np.float32, np.int32]:
    """``exp(v) = poly * 2**k`` (Cephes ``expf``: range reduction + degree-6 polynomial, about 1 ulp;
    ``v`` clipped to ``[-87, 87]``): returns ``poly`` and the float32 bits of ``2**k``. Inlined into
    loops that store the bits in an int32 array and multiply by its float32 view afterwards, which LLVM
    vectorizes (libm's scalar ``expf`` was 70 % of the kernel's time)."""
    v = min(max(v, np.float32(-87.0)), np.float32(87.0))
    k = np.int32(v * np.float32(1.4426950408889634) + np.float32(126.5)) - np.int32(126)  # round(v / ln 2)
    kf = np.float32(k)
    r = v - kf * np.float32(0.693359375) + kf * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    p = ((p * r + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
    p = (p + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
    return p * r * r + r + np.float32(1.0), (k + np.int32(127)) << np.int32(23)


@_jit
def exp_into(x: np.ndarray, out: np.ndarray, bits: np.ndarray) -> None:
    """``out = exp(x)`` for 1-D float32 ``x`` (see :func:`exp_parts`); ``bits``: int32 scratch of ``x``'s
    size; ``out`` must not be ``x`` (an aliased loop is not vectorized: 20x slower)."""
    scale = bits.view(np.float32)
    for j in range(x.shape[0]):
        out[j], bits[j] = exp_parts(x[j])
    for j in range(x.shape[0]):
        out[j] *= scale[j]


@_jit
def ln_silu_fwd(h, bias, gamma, beta, eps, xhat, rs, dsilu, out, tmp, bits):
    """``out = silu(LayerNorm(h + bias))`` for ``h (B, N)`` (overwritten) and ``bias (N,)``; keeps
    ``xhat (B, N)``, ``rs (B,)`` (1/std) and ``dsilu (B, N)`` (silu' at the LayerNorm output) for the
    backward pass. ``tmp``: float32 ``(N,)``. Rows are taken as 1-D views first: LLVM vectorizes those
    loops (2x faster than 2-D indexing)."""
    n = h.shape[1]
    scale = bits.view(np.float32)
    for i in range(h.shape[0]):
        hi, xi, oi, di = h[i], xhat[i], out[i], dsilu[i]
        mu = np.float32(0.0)
        for j in range(n):
            hi[j] += bias[j]
            mu += hi[j]
        mu /= np.float32(n)
        var = np.float32(0.0)
        for j in range(n):
            var += (hi[j] - mu) * (hi[j] - mu)
        r = np.float32(1.0) / np.sqrt(var / np.float32(n) + eps)
        rs[i] = r
        for j in range(n):
            xi[j] = (hi[j] - mu) * r
            oi[j] = xi[j] * gamma[j] + beta[j]  # the LayerNorm output v
            tmp[j], bits[j] = exp_parts(-oi[j])
        for j in range(n):
            s = np.float32(1.0) / (np.float32(1.0) + tmp[j] * scale[j])  # sigmoid(v)
            v = oi[j]
            di[j] = s * (np.float32(1.0) + v * (np.float32(1.0) - s))
            oi[j] = v * s


@_jit
def ln_silu_bwd(g, gamma, xhat, rs, dsilu, out):
    """Gradient through ``silu(LayerNorm(h))``: ``g (B, N)`` at the output -> ``out (B, N)`` at ``h``."""
    n = g.shape[1]
    for i in range(g.shape[0]):
        gi, xi, di, oi = g[i], xhat[i], dsilu[i], out[i]
        m1 = np.float32(0.0)
        m2 = np.float32(0.0)
        for j in range(n):
            gg = gi[j] * di[j] * gamma[j]
            oi[j] = gg
            m1 += gg
            m2 += gg * xi[j]
        m1 /= np.float32(n)
        m2 /= np.float32(n)
        r = rs[i]
        for j in range(n):
            oi[j] = r * (oi[j] - m1 - xi[j] * m2)


@_jit
def forward(z0, acts, th, w, p, learned, group, bound, eps):
    """Rollout and weighted costs. ``z0 (Z,)``, ``acts (N, H, A)``, ``th (C,)`` (task projection),
    ``w (H,)``, ``p`` :attr:`FusedRollout.params`; returns ``(steps (N, H), tape)``, the tape holding
    what :func:`backward` needs."""
    n_plans, horizon, n_act = acts.shape
    zd = z0.shape[0]
    hid = p[1].shape[0]
    inp = np.empty((horizon, n_plans, zd + n_act), np.float32)
    x1 = np.empty((horizon, n_plans, hid), np.float32)
    r1 = np.empty((horizon, n_plans), np.float32)
    d1 = np.empty((horizon, n_plans, hid), np.float32)
    x2 = np.empty((horizon, n_plans, hid), np.float32)
    r2 = np.empty((horizon, n_plans), np.float32)
    d2 = np.empty((horizon, n_plans, hid), np.float32)
    soft = np.empty((horizon, n_plans, learned), np.float32)
    joint = np.empty((horizon, n_plans, zd - learned), np.float32)
    states = np.empty((horizon * n_plans, zd), np.float32)  # row t * N + i
    act = np.empty((n_plans, hid), np.float32)
    tmp = np.empty(max(hid, learned), np.float32)
    bits = np.empty(max(hid, learned), np.int32)
    w1t, w2t, w3t = p[21], p[22], p[23]  # transposed (in, out) copies
    for t in range(horizon):
        for i in range(n_plans):
            zprev = z0 if t == 0 else states[(t - 1) * n_plans + i]
            inp[t, i, :zd] = zprev
            inp[t, i, zd:] = acts[i, t]
        ln_silu_fwd(np.dot(inp[t], w1t), p[1], p[2], p[3], eps, x1[t], r1[t], d1[t], act, tmp, bits)
        ln_silu_fwd(np.dot(act, w2t), p[5], p[6], p[7], eps, x2[t], r2[t], d2[t], act, tmp, bits)
        delta = np.dot(act, w3t)
        for i in range(n_plans):
            row, si, ji, zi, di = states[t * n_plans + i], soft[t, i], joint[t, i], inp[t, i], delta[i]
            for j in range(zd):
                di[j] += p[9][j]
            for g in range(0, learned, group):  # softmax(log z + d) = z e^(d - max d) / sum
                mx = di[g]
                for j in range(g, g + group):
                    mx = max(mx, di[j])
                for j in range(g, g + group):
                    tmp[j] = di[j] - mx
            exp_into(tmp[:learned], si, bits[:learned])
            for g in range(0, learned, group):
                tot = np.float32(0.0)
                for j in range(g, g + group):
                    si[j] *= max(zi[j], np.float32(1e-6))
                    tot += si[j]
                for j in range(g, g + group):
                    si[j] /= tot
                    row[j] = si[j]
            for j in range(zd - learned):
                ji[j] = zi[learned + j] + di[learned + j]
                row[learned + j] = min(max(ji[j], -bound), bound)
    m = horizon * n_plans
    c_hid = p[14].shape[0]
    cx1, cd1 = np.empty((m, c_hid), np.float32), np.empty((m, c_hid), np.float32)
    cx2, cd2 = np.empty((m, c_hid), np.float32), np.empty((m, c_hid), np.float32)
    cr1, cr2 = np.empty(m, np.float32), np.empty(m, np.float32)
    cact = np.empty((m, c_hid), np.float32)
    ctmp, cbits = np.empty(c_hid, np.float32), np.empty(c_hid, np.int32)
    ln_silu_fwd(np.dot(states, p[24]), p[11] + th, p[13], p[14], eps, cx1, cr1, cd1, cact, ctmp, cbits)
    ln_silu_fwd(np.dot(cact, p[25]), p[16], p[17], p[18], eps, cx2, cr2, cd2, cact, ctmp, cbits)
    out = np.dot(cact, p[19][0]) + p[20][0]  # (m,) cost-head logits
    steps = np.empty((n_plans, horizon), np.float32)
    gout = np.empty(m, np.float32)
    for r in range(m):
        t, i = r // n_plans, r % n_plans
        o = out[r]
        steps[i, t] = w[t] * (max(o, np.float32(0.0)) + np.float32(math.log1p(math.exp(-abs(o)))))
        gout[r] = w[t] / (np.float32(1.0) + np.float32(math.exp(-o)))  # d softplus = sigmoid
    return steps, (inp, x1, r1, d1, x2, r2, d2, soft, joint, cx1, cr1, cd1, cx2, cr2, cd2, gout)


@_jit
def backward(tape, p, learned, group, bound):
    """``d sum(steps) / d acts (N, H, A)`` from :func:`forward`'s tape."""
    inp, x1, r1, d1, x2, r2, d2, soft, joint, cx1, cr1, cd1, cx2, cr2, cd2, gout = tape
    horizon, n_plans, width = inp.shape
    zd = soft.shape[2] + joint.shape[2]
    m = gout.shape[0]
    c_hid = cx1.shape[1]
    g = np.empty((m, c_hid), np.float32)
    for r in range(m):
        for j in range(c_hid):
            g[r, j] = gout[r] * p[19][0, j]
    gh = np.empty((m, c_hid), np.float32)
    ln_silu_bwd(g, p[17], cx2, cr2, cd2, gh)
    ln_silu_bwd(np.dot(gh, p[15]), p[13], cx1, cr1, cd1, gh)
    g_states = np.dot(gh, p[10])  # (m, Z), row t * N + i
    grad = np.empty((n_plans, horizon, width - zd), np.float32)
    gz = np.zeros((n_plans, zd), np.float32)
    gd = np.empty((n_plans, zd), np.float32)
    hid = x1.shape[2]
    gb = np.empty((n_plans, hid), np.float32)
    for t in range(horizon - 1, -1, -1):
        for i in range(n_plans):
            gzi, gdi, si, ji, gsi = gz[i], gd[i], soft[t, i], joint[t, i], g_states[t * n_plans + i]
            for j in range(zd):
                gzi[j] += gsi[j]
            for s in range(0, learned, group):  # softmax backward
                dot = np.float32(0.0)
                for j in range(s, s + group):
                    dot += gzi[j] * si[j]
                for j in range(s, s + group):
                    gdi[j] = si[j] * (gzi[j] - dot)
            for j in range(zd - learned):  # clip backward (torch passes the gradient on the bounds)
                inside = -bound <= ji[j] <= bound
                gdi[learned + j] = gzi[learned + j] if inside else np.float32(0.0)
        ln_silu_bwd(np.dot(gd, p[8]), p[6], x2[t], r2[t], d2[t], gb)
        ln_silu_bwd(np.dot(gb, p[4]), p[2], x1[t], r1[t], d1[t], gb)
        g_in = np.dot(gb, p[0])  # (N, Z + A)
        for i in range(n_plans):
            gzi, gdi, gi, zi = gz[i], gd[i], g_in[i], inp[t, i]
            for j in range(width - zd):
                grad[i, t, j] = gi[zd + j]
            for j in range(learned):  # through log(max(z, 1e-6))
                gzi[j] = gi[j] + (gdi[j] / zi[j] if zi[j] >= np.float32(1e-6) else np.float32(0.0))
            for j in range(learned, zd):
                gzi[j] = gi[j] + gdi[j]
    return grad
