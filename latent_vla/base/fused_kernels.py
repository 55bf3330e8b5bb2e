"""numba bodies of :mod:`latent_vla.base.fused_rollout` (imported only when numba is installed).

Compiled with ``fastmath`` (reassociation lets LLVM vectorize the row reductions; results agree with
autograd to ~1e-7), ``error_model="numpy"`` (no zero-division checks, which kept divisions scalar) and
an on-disk cache, so a process pays the ~15 s compilation once per machine.
"""
# ruff: noqa: ANN001, ANN201, N806

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from latent_vla.base.fused_gemm import matmul

_jit = njit(cache=True, fastmath=True, error_model="numpy", nogil=True)


@intrinsic
def _pow2(typingctx, kf):
    """``2**kf`` for an integral float32 ``kf`` in ``[-126, 127]``, built from its exponent bits in 32-bit
    integers (numba's own integer arithmetic widens to 64 bits, which kept the loops around it scalar)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return sig, codegen


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def fast_exp(v: np.float32) -> np.float32:
    """``exp(v)`` for float32 ``v`` clipped to ``[-87, 87]`` (Cephes ``expf``: range reduction + degree-6
    polynomial, about 1 ulp). Inlined into loops that LLVM vectorizes (libm's scalar ``expf`` was 70 % of
    the kernel's time; a version with numba integers, 64-bit, stayed scalar and took 2 ns an element)."""
    v = min(max(v, np.float32(-87.0)), np.float32(87.0))
    kf = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))  # round(v / ln 2)
    r = v - kf * np.float32(0.693359375) + kf * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    p = ((p * r + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
    p = (p + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
    return (p * r * r + r + np.float32(1.0)) * _pow2(kf)


@_jit
def exp_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out = exp(x)`` for 1-D float32 ``x`` (see :func:`fast_exp`); ``out`` must not be ``x`` (an
    aliased loop is not vectorized: 20x slower)."""
    for j in range(x.shape[0]):
        out[j] = fast_exp(x[j])


@_jit
def ln_silu_fwd(h, bias, gamma, beta, eps, xhat, rs, dsilu, out):
    """``out = silu(LayerNorm(h + bias))`` for ``h (B, N)`` (overwritten) and ``bias (N,)``; keeps
    ``xhat (B, N)``, ``rs (B,)`` (1/std) and ``dsilu (B, N)`` (silu' at the LayerNorm output) for the
    backward pass. All ``(B, N)`` arrays C-contiguous. The statistics are per row (rows taken as 1-D
    views: LLVM vectorizes those loops); the SiLU runs over the whole block as one flat loop, each loop
    writing one or two arrays (fewer runtime alias checks for the vectorizer)."""
    b, n = h.shape
    for i in range(b):
        hi, xi, oi = h[i], xhat[i], out[i]
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
        for j in range(n):
            oi[j] = xi[j] * gamma[j] + beta[j]  # the LayerNorm output v
    flat, dflat = out.reshape(b * n), dsilu.reshape(b * n)
    for j in range(b * n):
        v = flat[j]
        s = np.float32(1.0) / (np.float32(1.0) + fast_exp(-v))  # sigmoid(v)
        dflat[j] = s * (np.float32(1.0) + v * (np.float32(1.0) - s))
        flat[j] = v * s


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
def latent_step(delta, bias, z, learned, group, bound, soft, joint, states):
    """The next latents from the dynamics output ``delta (N, >= Z)`` (``bias (Z,)`` added in place) and
    the previous latents ``z (N, >= Z)``: ``softmax_groups(log max(z_l, 1e-6) + d_l)`` for the learned
    block, ``clip(z_p + d_p, -bound, bound)`` for the joints. Writes ``soft (N, L)`` (the softmax),
    ``joint (N, Z - L)`` (before the clip) and ``states (N, Z)``; the ``exp`` runs over all rows at once."""
    n, zd = states.shape
    shifted = np.empty((n, learned), np.float32)
    for i in range(n):
        di, sh = delta[i], shifted[i]
        for j in range(zd):
            di[j] += bias[j]
        for g in range(0, learned, group):  # softmax(log z + d) = z e^(d - max d) / sum
            mx = di[g]
            for j in range(g, g + group):
                mx = max(mx, di[j])
            for j in range(g, g + group):
                sh[j] = di[j] - mx
    exp_into(shifted.reshape(n * learned), soft.reshape(n * learned))
    for i in range(n):
        row, si, ji, zi, di = states[i], soft[i], joint[i], z[i], delta[i]
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


@_jit
def cost_head(states, th, p, eps, cx1, cr1, cd1, cx2, cr2, cd2, cact):
    """Cost-head logits ``(M,)`` of ``states (M, Z)`` for task projection ``th (C,)``; fills the
    head's tape ``cx*``/``cd*`` ``(M, C)``, ``cr*`` ``(M,)`` and uses ``cact (M, C)`` as scratch."""
    c_hid = cact.shape[1]
    ln_silu_fwd(matmul(states, p[24]), p[11] + th, p[13], p[14], eps, cx1, cr1, cd1, cact)
    ln_silu_fwd(matmul(cact, p[25]), p[16], p[17], p[18], eps, cx2, cr2, cd2, cact)
    out = np.full(states.shape[0], p[20][0], np.float32)
    for r in range(states.shape[0]):
        cr, wr = cact[r], p[19][0]
        for j in range(c_hid):
            out[r] += cr[j] * wr[j]
    return out


@_jit
def forward(z0, acts, th, w, p, learned, group, bound, eps, keep):
    """Rollout and weighted costs. ``z0 (Z,)``, ``acts (N, H, A)``, ``th (C,)`` (task projection),
    ``w (H,)``, ``p`` :attr:`FusedRollout.params`; returns ``(steps (N, H), tape)``, the tape holding
    what :func:`backward` needs. Without ``keep`` (costs only) the tape holds the last step alone and
    each step is scored as it is reached: the buffers stay ``N`` rows deep, in cache, instead of
    ``H * N`` (at ``N = 256`` fresh tape memory cost more than the arithmetic)."""
    n_plans, horizon, n_act = acts.shape
    zd, hid, c_hid = z0.shape[0], p[1].shape[0], p[14].shape[0]
    slots = horizon if keep else 1
    inp = np.empty((slots, n_plans, zd + n_act), np.float32)
    x1, d1 = np.empty((slots, n_plans, hid), np.float32), np.empty((slots, n_plans, hid), np.float32)
    x2, d2 = np.empty((slots, n_plans, hid), np.float32), np.empty((slots, n_plans, hid), np.float32)
    r1, r2 = np.empty((slots, n_plans), np.float32), np.empty((slots, n_plans), np.float32)
    soft = np.empty((slots, n_plans, learned), np.float32)
    joint = np.empty((slots, n_plans, zd - learned), np.float32)
    states = np.empty((slots * n_plans, zd), np.float32)  # row t * N + i
    m = slots * n_plans  # cost-head rows: every step at once, or one step at a time
    cx1, cd1 = np.empty((m, c_hid), np.float32), np.empty((m, c_hid), np.float32)
    cx2, cd2 = np.empty((m, c_hid), np.float32), np.empty((m, c_hid), np.float32)
    cr1, cr2, cact = np.empty(m, np.float32), np.empty(m, np.float32), np.empty((m, c_hid), np.float32)
    logits = np.empty((horizon, n_plans), np.float32)
    act = np.empty((n_plans, hid), np.float32)
    for t in range(horizon):
        s = t if keep else 0
        for i in range(n_plans):
            inp[s, i, :zd] = z0 if t == 0 else states[(s - 1 if keep else 0) * n_plans + i]
            inp[s, i, zd:] = acts[i, t]
        ln_silu_fwd(matmul(inp[s], p[21]), p[1], p[2], p[3], eps, x1[s], r1[s], d1[s], act)
        ln_silu_fwd(matmul(act, p[22]), p[5], p[6], p[7], eps, x2[s], r2[s], d2[s], act)
        z_next = states[s * n_plans : (s + 1) * n_plans]
        latent_step(matmul(act, p[23]), p[9], inp[s], learned, group, bound, soft[s], joint[s], z_next)
        if not keep:
            logits[t] = cost_head(z_next, th, p, eps, cx1, cr1, cd1, cx2, cr2, cd2, cact)
    if keep:
        logits[:] = cost_head(states, th, p, eps, cx1, cr1, cd1, cx2, cr2, cd2, cact).reshape(horizon, n_plans)
    steps = np.empty((n_plans, horizon), np.float32)
    gout = np.empty(horizon * n_plans, np.float32)  # d step cost / d logit, row t * N + i
    for t in range(horizon):
        for i in range(n_plans):
            o = logits[t, i]
            steps[i, t] = w[t] * (max(o, np.float32(0.0)) + np.float32(math.log1p(math.exp(-abs(o)))))
            gout[t * n_plans + i] = w[t] / (np.float32(1.0) + np.float32(math.exp(-o)))  # softplus' = sigmoid
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
    ln_silu_bwd(matmul(gh, p[26]), p[13], cx1, cr1, cd1, gh)
    g_states = matmul(gh, p[27])  # (m, Z padded to 16), row t * N + i
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
        ln_silu_bwd(matmul(gd, p[28]), p[6], x2[t], r2[t], d2[t], gb)
        ln_silu_bwd(matmul(gb, p[29]), p[2], x1[t], r1[t], d1[t], gb)
        g_in = matmul(gb, p[30])  # (N, Z + A padded to 16)
        for i in range(n_plans):
            gzi, gdi, gi, zi = gz[i], gd[i], g_in[i], inp[t, i]
            for j in range(width - zd):
                grad[i, t, j] = gi[zd + j]
            for j in range(learned):  # through log(max(z, 1e-6))
                gzi[j] = gi[j] + (gdi[j] / zi[j] if zi[j] >= np.float32(1e-6) else np.float32(0.0))
            for j in range(learned, zd):
                gzi[j] = gi[j] + gdi[j]
    return grad


@_jit
def costs_and_grad(z0, acts, th, w, p, learned, group, bound, eps):
    """:func:`forward` then :func:`backward` in one call (the tape never crosses into Python): ``(steps
    (N, H), d sum(steps) / d acts (N, H, A))``."""
    steps, tape = forward(z0, acts, th, w, p, learned, group, bound, eps, True)
    return steps, backward(tape, p, learned, group, bound)


@_jit
def costs(z0, acts, th, w, p, learned, group, bound, eps):
    """:func:`forward`'s weighted costs ``(N, H)`` alone (no gradient): the samplers' rollouts."""
    return forward(z0, acts, th, w, p, learned, group, bound, eps, False)[0]
