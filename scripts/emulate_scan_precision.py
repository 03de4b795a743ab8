#!/usr/bin/env python3
"""Float64 emulation of the roundings of the CUDA bf16 Mamba-2 layer (its tensor-core chunked scan,
src/cuda/mamba3_chunk_scan_bf16.cu, with λ = 1 and no rotation), against the same layer without
them, on the parameter draws of tests/cuda/test_cuda_layers.cpp's Mamba2_130mShape case (d_model
128, 4 heads × 64, d_state 128, one group, conv 4, gated RMSNorm; random_params' perturbations).
For each variant prints, over --draws random draws of one --tokens-long sequence, the median and
largest worst-row error (max |Δ| of a row of the layer's output over that row's max |value|, as
rows_near measures it) and the fraction of draws above the test's 2e-2.

Variants: 'gemm' rounds only the inputs of in_proj and out_proj to bf16 (what every BF16 layer
does); the others add the scan's operands: C, B (the scores and q̃Gᵀ), G (the state's copy), w·k̃,
V = x, M (the masked scores), each to bf16 or fp16 as named.

    python3 scripts/emulate_scan_precision.py --tokens 1300 --draws 30      (needs numpy)
"""
import argparse

import numpy as np

D_MODEL, N, P, H, W, CHUNK = 128, 128, 64, 4, 4, 64
DI = H * P


def bf16(a):
    u = np.asarray(a, np.float32).copy().view(np.uint32)
    u += 0x7FFF + ((u >> 16) & 1)  # round to nearest even
    u &= 0xFFFF0000
    return u.view(np.float32).astype(np.float64)


def fp16(a):
    return np.asarray(a, np.float16).astype(np.float64)


def exact(a):
    return a


# name: (in/out GEMM inputs, C, B, G, w·k̃, V, M), each a rounding function
VARIANTS = {
    "gemm": (bf16, exact, exact, exact, exact, exact, exact),
    "gemm + scan all bf16": (bf16, bf16, bf16, bf16, bf16, bf16, bf16),
    "gemm + C, B, G fp16, rest bf16": (bf16, fp16, fp16, fp16, bf16, bf16, bf16),
}


def layer(u, prm, rnd):
    r_io, r_c, r_b, r_g, r_w, r_v, r_m = rnd
    Win, cw, cb, dtb, Alog, Dp, nw, Wout = prm
    T = u.shape[0]
    zx = r_io(u) @ Win.T
    z, xbc, dt = zx[:, :DI], zx[:, DI:2 * DI + 2 * N], zx[:, 2 * DI + 2 * N:]
    pad = np.vstack([np.zeros((W - 1, xbc.shape[1])), xbc])
    conv = sum(pad[k:k + T] * cw[:, k] for k in range(W)) + cb
    xbc = conv / (1 + np.exp(-conv))
    x, B, C = xbc[:, :DI], xbc[:, DI:DI + N], xbc[:, DI + N:]
    dt = np.log1p(np.exp(-abs(dt + dtb))) + np.maximum(dt + dtb, 0)
    A = -np.exp(Alog)
    y = np.zeros((T, DI))
    for h in range(H):
        G = np.zeros((P, N))
        xh = x[:, h * P:(h + 1) * P]
        for t0 in range(0, T, CHUNK):
            sl = slice(t0, min(T, t0 + CHUNK))
            n = sl.stop - t0
            a = np.cumsum(A[h] * dt[sl, h])
            q, k, v = r_c(C[sl]), r_b(B[sl]), r_v(xh[sl])
            causal = np.arange(n)[:, None] >= np.arange(n)[None, :]
            coef = np.where(causal, np.exp(np.minimum(a[:, None] - a[None, :], 0)) * dt[sl, h][None, :], 0)
            M = r_m(coef * (q @ k.T))
            y[sl, h * P:(h + 1) * P] = np.exp(a)[:, None] * (q @ r_g(G).T) + M @ v + Dp[h] * xh[sl]
            wk = r_w(np.exp(a[-1] - a)[:, None] * dt[sl, h][:, None] * B[sl])
            G = np.exp(a[-1]) * G + v.T @ wk
    g = y * (z / (1 + np.exp(-z)))
    g = g / np.sqrt((g ** 2).mean(1, keepdims=True) + 1e-5) * nw
    return r_io(g) @ Wout.T


def params(rng):
    def lin(shape, fan):
        return rng.uniform(-1 / np.sqrt(fan), 1 / np.sqrt(fan), shape)
    return (bf16(lin((2 * DI + 2 * N + H, D_MODEL), D_MODEL)), lin((DI + 2 * N, W), W),
            lin((DI + 2 * N,), W) + 0.5 * rng.standard_normal(DI + 2 * N), -1 + 1.5 * rng.uniform(-1, 1, H),
            1.5 * rng.uniform(-1, 1, H), 1 + 0.5 * rng.standard_normal(H), 1 + 0.3 * rng.standard_normal(DI),
            bf16(lin((D_MODEL, DI), DI)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1300)
    ap.add_argument("--draws", type=int, default=30)
    a = ap.parse_args()
    worst = {name: [] for name in VARIANTS}
    none = (exact,) * 7
    for seed in range(a.draws):
        rng = np.random.default_rng(seed)
        prm = params(rng)
        u = rng.standard_normal((a.tokens, D_MODEL))
        want = layer(u, prm, none)
        for name, rnd in VARIANTS.items():
            got = layer(u, prm, rnd)
            worst[name].append((np.abs(got - want).max(1) / np.abs(want).max(1)).max())
    for name, w in worst.items():
        w = np.array(w)
        print(f"{name:32s} worst row: median {np.median(w):.4f}, max {w.max():.4f}; above 2e-2 in {np.mean(w > 0.02):.0%}")


if __name__ == "__main__":
    main()
