// Implements spec/mamba3.md §3 (per-token preprocessing), §4 (recurrence), §6 (parallel form),
// §7 (packed sequences). Work is split over (sequence, head) pairs.
//
// The parallel form runs §6 in its σ form with short chunks of kB tokens. With σ_t and c_t of §6,
// the state G_t = H_t + c_t Σ_r v_{t,r} k̃_{t,r}ᵀ obeys
//   G_t = α_t G_{t−1} + σ_t Σ_r v_{t,r} k̃_{t,r}ᵀ,   G_{−1} = Ĥ,   G_{L−1} = H_{L−1} (c_{L−1} = 0),
//   y_{t,r} = G_t q̃_{t,r} − c_t Σ_r' (q̃_{t,r}·k̃_{t,r'}) v_{t,r'} + D v_{t,r}.
// A block of kB tokens i entering with state G reads it once for all its queries and updates it
// once (A_i: the product of α from the block's start to token i; A = A_{kB−1}):
//   y_{i,r} = A_i G q̃_{i,r} + Σ_{s ≤ i, r'} m_{ir,sr'} v_{s,r'} + D v_{i,r},
//     m_{ir,sr'} = (A_i / A_s) σ_s (q̃_{i,r}·k̃_{s,r'}) for s < i, (σ_i − c_i)(q̃_{i,r}·k̃_{i,r'}) for s = i;
//   G ← A G + Σ_{i,r} u_{i,r} k̃_{i,r}ᵀ,   u_{i,r} = (A / A_i) σ_i v_{i,r}.
// Every factor is a product of α ≤ 1 (no division by a decay, spec §8). The sweep over the state
// costs 2·kB·R + 1 multiply-adds per element and block, 2.25 per token for SISO (kB = 4), at the
// FMA rate from L1: the state is swept in column blocks of kPB values that stay in L1 across the
// tokens of a prepared chunk. (The reference's chunk of 64 costs ~2.75 per token in GEMMs.)
#include "cpu/mamba3_scan.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/omp_exceptions.h"
#include "cpu/ops.h"
#include "cpu/vec_math.h"
#include "m3/error.h"

namespace m3::cpu {

namespace {

constexpr float kTwoPi = 6.283185307179586f;
constexpr float kPi = 3.14159265358979f;
// Value dims (state columns) per sweep of the prefill kernel: the block's accumulators, its
// scaled values and the state column block stay in registers.
constexpr int64_t kPB = 32;

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Per-thread buffers, grown on first use and kept (OpenMP threads persist across calls).
struct Scratch {
  std::vector<float> G;              // [N][Pp] one head's state, transposed, columns ≥ P zero
  std::vector<float> q, k, v, u;     // per token of a chunk: q̃, k̃ [Rp][N]; v, u [Rp][Pp]
  std::vector<float> alpha, sig, cw, decay;  // per token: α, σ, c (spec §6), A_i within its block
  std::vector<float> mix;            // per token: m_{ir,sr'} [R][kB][R] over the s of its block
  std::vector<float> cs, sn;         // [S]
  std::vector<float> vprev, kprev;   // the previous token's β·v [Rp][Pp] and k̃ [Rp][N]
  int64_t zeroed_for[4] = {};        // (C, kR, N, Pp) of the last zero-fill of q, k, v, u
  template <class V>
  static float* fit(V& b, int64_t n) {
    if (b.size() < size_t(n)) b.resize(size_t(n));
    return b.data();
  }
};
thread_local Scratch tls;

// θ ← (θ + π·tanh(angle)·dt) mod 2π, kept in [0, 2π) as the reference does; cos/sin out.
void advance_angles(float* theta, const float* angle_raw, float dt, int64_t S, float* cs, float* sn) {
#pragma omp simd
  for (int64_t j = 0; j < S; ++j) {
    float th = theta[j] + kPi * tanh_approx(angle_raw[j]) * dt;
    th -= kTwoPi * floor_small(th / kTwoPi);
    theta[j] = th;
    sincos_approx(th, sn[j], cs[j]);
  }
}

// out = Rot_θ(in + bias): SISO pairs (2j, 2j+1), MIMO pairs (j, j + N/2); unrotated dims copied.
void rotate(float* out, const float* in, const float* bias, const float* cs, const float* sn, int64_t N, int64_t S,
            bool halves) {
#pragma omp simd
  for (int64_t n = 0; n < N; ++n) out[n] = in[n] + bias[n];
  const int64_t step = halves ? 1 : 2, other = halves ? N / 2 : 1;
#pragma omp simd
  for (int64_t j = 0; j < S; ++j) {
    const int64_t i0 = j * step, i1 = i0 + other;
    const float a = out[i0], b = out[i1];
    out[i0] = a * cs[j] - b * sn[j];
    out[i1] = a * sn[j] + b * cs[j];
  }
}

// Rotated q̃, k̃ of every rank for token t and head h, rank stride N; advances θ by this token.
void token_qk(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t t, int64_t h, float* theta, float* cs,
              float* sn, float* qt, float* kt) {
  const int64_t g = h / (d.H / d.G);
  advance_angles(theta, in.angle + t * in.angle_ld + h * in.angle_hs, in.dt.at(t, h), d.S, cs, sn);
  for (int64_t r = 0; r < d.R; ++r) {
    const int64_t off = t * in.qk_ld + (r * d.G + g) * d.N;
    rotate(qt + r * d.N, in.q + off, in.q_bias + (h * d.R + r) * d.N, cs, sn, d.N, d.S, d.halves_pairing);
    rotate(kt + r * d.N, in.k + off, in.k_bias + (h * d.R + r) * d.N, cs, sn, d.N, d.S, d.halves_pairing);
  }
}

// v_r = scale · x[h] ⊙ mimo_x[h, r] (SISO: scale · x[h]), rank stride ld.
void token_v(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const float* xh, int64_t h, float scale, float* v,
             int64_t ld) {
  for (int64_t r = 0; r < d.R; ++r) {
    float* vr = v + r * ld;
    if (in.mimo_x) {
      const float* mx = in.mimo_x + (h * d.R + r) * d.P;
#pragma omp simd
      for (int64_t p = 0; p < d.P; ++p) vr[p] = scale * xh[p] * mx[p];
    } else {
#pragma omp simd
      for (int64_t p = 0; p < d.P; ++p) vr[p] = scale * xh[p];
    }
  }
}

// a·b for short vectors (a row of the state): one vector accumulator; its chain is short.
float dot(const float* a, const float* b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Tokens per block of the prefill sweep: four for SISO; fewer for MIMO, whose ranks already
// multiply the work per element (and the registers a block needs).
template <int kR>
constexpr int kBlock = kR == 1 ? 4 : kR == 2 ? 2 : 1;

// One block of kB tokens through columns [0, kPB) of the transposed state G [N][ldg]:
// acc_{i,r} = G q̃_{i,r} for the state entering the block, then G ← A G + Σ_{i,r} u_{i,r} k̃_{i,r}ᵀ.
// q, k: token i at q + i·tok_qk, rank stride N; u: token i at u + i·tok_u, rank stride ldu.
template <int kR, int kB>
void sweep(float* G, int64_t ldg, int64_t N, float A, const float* q, const float* k, int64_t tok_qk, const float* u,
           int64_t tok_u, int64_t ldu, float* acc) {
  float ua[kB][kR][kPB], ac[kB][kR][kPB] = {};
  for (int i = 0; i < kB; ++i)
    for (int r = 0; r < kR; ++r)
      for (int64_t p = 0; p < kPB; ++p) ua[i][r][p] = u[i * tok_u + r * ldu + p];
  for (int64_t n = 0; n < N; ++n) {
    float* g = G + n * ldg;
    float qs[kB][kR], ks[kB][kR];
    for (int i = 0; i < kB; ++i)
      for (int r = 0; r < kR; ++r) qs[i][r] = q[i * tok_qk + r * N + n], ks[i][r] = k[i * tok_qk + r * N + n];
#pragma omp simd
    for (int64_t p = 0; p < kPB; ++p) {
      const float gp = g[p];
      float x = A * gp;
      for (int i = 0; i < kB; ++i)
        for (int r = 0; r < kR; ++r) {
          ac[i][r][p] += gp * qs[i][r];
          x += ua[i][r][p] * ks[i][r];
        }
      g[p] = x;
    }
  }
  for (int i = 0; i < kB; ++i)
    for (int r = 0; r < kR; ++r)
      for (int64_t p = 0; p < kPB; ++p) acc[(i * kR + r) * kPB + p] = ac[i][r][p];
}

// Calls f.template operator()<kR>() with the smallest compiled rank kR ≥ R.
template <class F>
void with_rank(int64_t R, F&& f) {
  if (R == 1) return f.template operator()<1>();
  if (R == 2) return f.template operator()<2>();
  if (R <= 4) return f.template operator()<4>();
  if (R <= 8) return f.template operator()<8>();
  if (R <= kMamba3MaxRank) return f.template operator()<16>();
  throw Error("Mamba-3 MIMO rank " + std::to_string(R) + ": the CPU scan supports ranks up to " +
              std::to_string(kMamba3MaxRank));
}

// One (sequence, head) of the parallel form: rows [t0, t0 + L) of the packed batch, L > 0.
template <int kR>
void prefill_head(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t t0, int64_t L, int64_t h,
                  const Mamba3ScanState& st, float* y, int64_t y_ld, int64_t chunk) {
  constexpr int kB = kBlock<kR>;
  // A chunk longer than the sequence is the sequence: the same single chunk, with scratch sized
  // by the tokens there are rather than by config.json's chunk_size.
  const int64_t R = d.R, N = d.N, P = d.P, Pp = round_up(P, kPB), C = round_up(std::min(chunk, L), kB);
  const int64_t tq = kR * N, tv = kR * Pp;  // per-token strides of the q̃, k̃ and v, u slots
  Scratch& s = tls;
  float* G = Scratch::fit(s.G, N * Pp);
  float* q = Scratch::fit(s.q, C * tq);
  float* k = Scratch::fit(s.k, C * tq);
  float* v = Scratch::fit(s.v, C * tv);
  float* u = Scratch::fit(s.u, C * tv);
  float* alpha = Scratch::fit(s.alpha, C);
  float* sig = Scratch::fit(s.sig, C);
  float* cw = Scratch::fit(s.cw, C);
  float* decay = Scratch::fit(s.decay, C);
  float* mix = Scratch::fit(s.mix, C * R * kB * R);
  float* cs = Scratch::fit(s.cs, d.S);
  float* sn = Scratch::fit(s.sn, d.S);
  // Padding ranks and columns are never written, so they stay zero from one fill per layout:
  // they add nothing to G and their outputs are dropped.
  if (const int64_t key[4] = {C, kR, N, Pp}; !std::equal(key, key + 4, s.zeroed_for)) {
    std::fill(q, q + C * tq, 0.0f);
    std::fill(k, k + C * tq, 0.0f);
    std::fill(v, v + C * tv, 0.0f);
    std::fill(u, u + C * tv, 0.0f);
    std::copy_n(key, 4, s.zeroed_for);
  }
  float* theta = st.angle + h * d.S;
  float* Hs = st.ssm + h * P * N;
  auto lam = [&](int64_t t) { return sigmoid(in.trap.at(t, h)); };

  // G_{−1} = Ĥ = H₋ + (1 − λ₀) dt₀ Σ_r v₋_r k̃₋_rᵀ, transposed (spec §6).
  {
    float* vp = Scratch::fit(s.vprev, kR * Pp);
    std::fill(vp, vp + kR * Pp, 0.0f);
    token_v(d, in, st.v + h * P, h, (1.0f - lam(t0)) * in.dt.at(t0, h), vp, Pp);
    for (int64_t n = 0; n < N; ++n) {
      float* g = G + n * Pp;
#pragma omp simd
      for (int64_t p = 0; p < Pp; ++p) g[p] = p < P ? Hs[p * N + n] : 0.0f;
      for (int64_t r = 0; r < R; ++r) {
        const float kn = st.k[(r * d.H + h) * N + n];
#pragma omp simd
        for (int64_t p = 0; p < Pp; ++p) g[p] += vp[r * Pp + p] * kn;
      }
    }
  }

  for (int64_t c0 = 0; c0 < L; c0 += C) {
    const int64_t n = std::min(C, L - c0), nb = round_up(n, kB);
    // Per token: α, c_i = (1 − λ_{i+1}) dt_{i+1} (0 for the sequence's last token), σ. Slots past
    // the last token pad the last block with tokens that change nothing (α = 1, k̃ = u = 0).
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t t = t0 + c0 + i;
      alpha[i] = i < n ? exp_approx(in.adt.at(t, h)) : 1.0f;
      cw[i] = c0 + i + 1 < L ? (1.0f - lam(t + 1)) * in.dt.at(t + 1, h) : 0.0f;
      sig[i] = i < n ? lam(t) * in.dt.at(t, h) + cw[i] : 0.0f;
    }
    // A_i from the block's start, and u_i = (A / A_i) σ_i v_i. The loads of x (one packed row
    // apart per token) get a loop of their own, so that they overlap.
    for (int64_t b0 = 0; b0 < nb; b0 += kB) {
      float a = 1.0f, w = 1.0f;
      for (int i = 0; i < kB; ++i) decay[b0 + i] = a *= alpha[b0 + i];
      for (int i = kB - 1; i >= 0; --i) {
        const int64_t j = b0 + i;
        if (j < n) {
          token_v(d, in, in.x + (t0 + c0 + j) * in.x_ld + h * P, h, 1.0f, v + j * tv, Pp);
          const float f = w * sig[j];
#pragma omp simd
          for (int64_t e = 0; e < tv; ++e) u[j * tv + e] = f * v[j * tv + e];
        } else {
          std::fill(u + j * tv, u + (j + 1) * tv, 0.0f);
        }
        w *= alpha[j];
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      if (i < n)
        token_qk(d, in, t0 + c0 + i, h, theta, cs, sn, q + i * tq, k + i * tq);
      else
        std::fill(k + i * tq, k + (i + 1) * tq, 0.0f);
    }
    // m_{ir,sr'} for the tokens i of each block and the s ≤ i of the same block.
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b0 = i / kB * kB;
      float* mi = mix + i * R * kB * R;
      std::fill(mi, mi + R * kB * R, 0.0f);
      float f = 1.0f;  // A_i / A_s
      for (int64_t j = i; j >= b0; --j) {
        const float coef = j == i ? sig[i] - cw[i] : f * sig[j];
        for (int64_t r = 0; r < R; ++r)
          for (int64_t r2 = 0; r2 < R; ++r2)
            mi[(r * kB + (j - b0)) * R + r2] = coef * dot(q + i * tq + r * N, k + j * tq + r2 * N, N);
        f *= alpha[j];
      }
    }
    // The state sweep, a column block at a time through the chunk's blocks; then each token's
    // output on those columns.
    float acc[kB * kR * kPB];
    for (int64_t pb = 0; pb < Pp; pb += kPB) {
      const int64_t width = std::min(kPB, P - pb);
      for (int64_t b0 = 0; b0 < nb; b0 += kB) {
        sweep<kR, kB>(G + pb, Pp, N, decay[b0 + kB - 1], q + b0 * tq, k + b0 * tq, tq, u + b0 * tv + pb, tv, Pp, acc);
        for (int64_t i = b0; i < std::min(b0 + kB, n); ++i) {
          const float* mi = mix + i * R * kB * R;
          for (int64_t r = 0; r < R; ++r) {
            const float* ai = acc + ((i - b0) * kR + r) * kPB;
            const float* vi = v + i * tv + r * Pp + pb;
            const float Ai = decay[i], Dh = in.D[h];
            float o[kPB];
#pragma omp simd
            for (int64_t p = 0; p < kPB; ++p) o[p] = Ai * ai[p] + Dh * vi[p];
            for (int64_t j = b0; j <= i; ++j)
              for (int64_t r2 = 0; r2 < R; ++r2) {
                const float m = mi[(r * kB + (j - b0)) * R + r2];
                const float* vj = v + j * tv + r2 * Pp + pb;
#pragma omp simd
                for (int64_t p = 0; p < kPB; ++p) o[p] += m * vj[p];
              }
            float* out = y + (t0 + c0 + i) * y_ld + (r * d.H + h) * P + pb;
#pragma omp simd
            for (int64_t p = 0; p < width; ++p) out[p] = o[p];
          }
        }
      }
    }
    if (c0 + n == L) {
      for (int64_t r = 0; r < R; ++r) std::copy_n(k + (n - 1) * tq + r * N, N, st.k + (r * d.H + h) * N);
      std::copy_n(in.x + (t0 + L - 1) * in.x_ld + h * P, P, st.v + h * P);
    }
  }
  // H_{L−1} = G_{L−1}, back to the [P, N] layout.
  for (int64_t p = 0; p < P; ++p)
    for (int64_t n = 0; n < N; ++n) Hs[p * N + n] = G[n * Pp + p];
}

}  // namespace

void mamba3_scan_chunked(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_seqlens,
                         int64_t n_seqs, const Mamba3ScanState* states, float* y, int64_t y_ld, int64_t chunk) {
  const int64_t work = n_seqs * d.H;
  OmpExceptions errors;  // a scratch buffer's bad_alloc
  with_rank(d.R, [&]<int kR>() {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t i = w / d.H, h = w % d.H;
      const int64_t L = cu_seqlens[i + 1] - cu_seqlens[i];
      if (L == 0 || errors.failed()) continue;
      try {
        prefill_head<kR>(d, in, cu_seqlens[i], L, h, states[i], y, y_ld, chunk);
      } catch (...) {
        errors.capture();
      }
    }
  });
  errors.rethrow();
}

void mamba3_scan_step(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                      const Mamba3ScanState* states, float* y, int64_t y_ld) {
  const int64_t R = d.R, N = d.N, P = d.P;
  OmpExceptions errors;  // a scratch buffer's bad_alloc
  with_rank(R, [&]<int kR>() {
#pragma omp parallel for schedule(static) if (n_seqs * d.H * P * N > kParallelWork)
    for (int64_t w = 0; w < n_seqs * d.H; ++w) {
      if (errors.failed()) continue;
      try {
        const int64_t t = w / d.H, h = w % d.H;
        const Mamba3ScanState& st = states[t];
        Scratch& s = tls;
        float* q = Scratch::fit(s.q, kR * N);
        float* k = Scratch::fit(s.k, kR * N);
        float* v = Scratch::fit(s.v, kR * P);
        float* vp = Scratch::fit(s.vprev, kR * P);
        float* kp = Scratch::fit(s.kprev, kR * N);
        float* cs = Scratch::fit(s.cs, d.S);
        float* sn = Scratch::fit(s.sn, d.S);
        // Padding ranks stay zero.
        std::fill(q, q + kR * N, 0.0f), std::fill(k, k + kR * N, 0.0f), std::fill(kp, kp + kR * N, 0.0f);
        std::fill(v, v + kR * P, 0.0f), std::fill(vp, vp + kR * P, 0.0f);
        const float dt = in.dt.at(t, h), lam = sigmoid(in.trap.at(t, h));
        const float alpha = exp_approx(in.adt.at(t, h)), beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;
        token_qk(d, in, t, h, st.angle + h * d.S, cs, sn, q, k);
        token_v(d, in, in.x + t * in.x_ld + h * P, h, 1.0f, v, P);
        token_v(d, in, st.v + h * P, h, beta, vp, P);
        for (int64_t r = 0; r < R; ++r) std::copy_n(st.k + (r * d.H + h) * N, N, kp + r * N);
        float* Hs = st.ssm + h * P * N;
        // H_t = α H + Σ_r (β v_{t−1,r} k̃_{t−1,r}ᵀ + γ v_{t,r} k̃_{t,r}ᵀ), y_r = H q̃_r + D v_r (spec §4),
        // a row at a time: the update, then the dot products while the row is in L1 (measured
        // faster than one loop that also carries the reductions).
        for (int64_t p = 0; p < P; ++p) {
          float* row = Hs + p * N;
          float bp[kR], gp[kR];
          for (int r = 0; r < kR; ++r) bp[r] = vp[r * P + p], gp[r] = gamma * v[r * P + p];
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) {
            float x = alpha * row[n];
            for (int r = 0; r < kR; ++r) x += bp[r] * kp[r * N + n] + gp[r] * k[r * N + n];
            row[n] = x;
          }
          for (int64_t r = 0; r < R; ++r)
            y[t * y_ld + (r * d.H + h) * P + p] = dot(row, q + r * N, N) + in.D[h] * v[r * P + p];
        }
        for (int64_t r = 0; r < R; ++r) std::copy_n(k + r * N, N, st.k + (r * d.H + h) * N);
        std::copy_n(in.x + t * in.x_ld + h * P, P, st.v + h * P);
      } catch (...) {
        errors.capture();
      }
    }
  });
  errors.rethrow();
}

}  // namespace m3::cpu
