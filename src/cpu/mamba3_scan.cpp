// Implements spec/mamba3.md §3 (per-token preprocessing), §4 (recurrence), §6 (chunked form),
// §7 (packed sequences). Work is split over (sequence, head) pairs; each pair runs its chunks in
// order, with small GEMMs through OpenBLAS on the calling thread.
#include "cpu/mamba3_scan.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"

namespace m3::cpu {

namespace {

constexpr float kTwoPi = 6.283185307179586f;
constexpr float kPi = 3.14159265358979f;

// θ ← (θ + π·tanh(angle)·dt) mod 2π, kept in [0, 2π) as the reference does; cos/sin out.
void advance_angles(float* theta, const float* angle_raw, float dt, int64_t S, float* cs, float* sn) {
  for (int64_t j = 0; j < S; ++j) {
    float th = theta[j] + kPi * std::tanh(angle_raw[j]) * dt;
    th -= kTwoPi * std::floor(th / kTwoPi);
    theta[j] = th;
    cs[j] = std::cos(th);
    sn[j] = std::sin(th);
  }
}

// out = Rot_θ(in + bias): SISO pairs (2j, 2j+1), MIMO pairs (j, j + N/2); unrotated dims copied.
void rotate(float* out, const float* in, const float* bias, const float* cs, const float* sn, int64_t N, int64_t S,
            bool halves) {
  for (int64_t n = 0; n < N; ++n) out[n] = in[n] + bias[n];
  for (int64_t j = 0; j < S; ++j) {
    int64_t i0 = halves ? j : 2 * j, i1 = halves ? j + N / 2 : 2 * j + 1;
    float a = out[i0], b = out[i1];
    out[i0] = a * cs[j] - b * sn[j];
    out[i1] = a * sn[j] + b * cs[j];
  }
}

// Rotated q̃, k̃ of every rank for token t and head h; advances θ by this token.
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

// v_r = x[h] ⊙ mimo_x[h, r] (SISO: x[h]).
void token_v(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const float* xh, int64_t h, float* v) {
  for (int64_t r = 0; r < d.R; ++r)
    for (int64_t p = 0; p < d.P; ++p) v[r * d.P + p] = xh[p] * (in.mimo_x ? in.mimo_x[(h * d.R + r) * d.P + p] : 1.0f);
}

struct Scratch {
  std::vector<float> q, k, v, qs, kw, g, yc, a, sig, corr, dt, lam, cs, sn;
  void resize(const Mamba3ScanDims& d, int64_t C) {
    const int64_t CR = C * d.R;
    q.resize(CR * d.N), k.resize(CR * d.N), qs.resize(CR * d.N), kw.resize(CR * d.N);
    v.resize(CR * d.P), yc.resize(CR * d.P), g.resize(CR * CR);
    a.resize(C), sig.resize(C), corr.resize(C), dt.resize(C + 1), lam.resize(C + 1);
    cs.resize(d.S), sn.resize(d.S);
  }
};

// One (sequence, head): rows [t0, t0 + L) of the packed batch.
void scan_head(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t t0, int64_t L, int64_t h,
               const Mamba3ScanState& st, float* y, int64_t y_ld, int64_t C, Scratch& s) {
  const int64_t R = d.R, N = d.N, P = d.P;
  float* theta = st.angle + h * d.S;
  float* Hs = st.ssm + h * P * N;
  // Carried-in trapezoid term: Ĥ = H₋ + (1 − λ₀) dt₀ Σ_r v₋_r k̃₋_rᵀ (spec §6).
  {
    const float w0 = (1.0f - sigmoid(in.trap.at(t0, h))) * in.dt.at(t0, h);
    token_v(d, in, st.v + h * P, h, s.v.data());
    for (int64_t r = 0; r < R; ++r) {
      const float* kp = st.k + (r * d.H + h) * N;
      const float* vp = s.v.data() + r * P;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t n = 0; n < N; ++n) Hs[p * N + n] += w0 * vp[p] * kp[n];
    }
  }
  for (int64_t c0 = 0; c0 < L; c0 += C) {
    const int64_t n = std::min(C, L - c0), nR = n * R;
    const bool has_next = c0 + n < L;  // the look-ahead token is in the next chunk of this sequence
    for (int64_t i = 0; i < n + (has_next ? 1 : 0); ++i) {
      s.dt[i] = in.dt.at(t0 + c0 + i, h);
      s.lam[i] = sigmoid(in.trap.at(t0 + c0 + i, h));
    }
    float acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = t0 + c0 + i;
      token_qk(d, in, t, h, theta, s.cs.data(), s.sn.data(), s.q.data() + i * R * N, s.k.data() + i * R * N);
      token_v(d, in, in.x + t * in.x_ld + h * P, h, s.v.data() + i * R * P);
      acc += in.adt.at(t, h);
      s.a[i] = acc;
      // σ_i = λ_i dt_i + (1 − λ_{i+1}) dt_{i+1}; the second term is the next step's β / α.
      const bool next = i + 1 < n || has_next;
      s.corr[i] = next ? (1.0f - s.lam[i + 1]) * s.dt[i + 1] : 0.0f;
      s.sig[i] = s.lam[i] * s.dt[i] + s.corr[i];
    }
    // Intra-chunk: M[(i,r),(j,r')] = exp(a_i − a_j) σ_j (q̃_{i,r}·k̃_{j,r'}) for j < i, (σ_i − c_i)(…) on j = i.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nR), int(nR), int(N), 1.0f, s.q.data(), int(N),
                s.k.data(), int(N), 0.0f, s.g.data(), int(nR));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < R; ++r) {
        float* row = s.g.data() + (i * R + r) * nR;
        for (int64_t j = 0; j < i; ++j) {
          const float w = std::exp(s.a[i] - s.a[j]) * s.sig[j];
          for (int64_t r2 = 0; r2 < R; ++r2) row[j * R + r2] *= w;
        }
        for (int64_t r2 = 0; r2 < R; ++r2) row[i * R + r2] *= s.sig[i] - s.corr[i];
        std::fill(row + (i + 1) * R, row + nR, 0.0f);
      }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nR), int(P), int(nR), 1.0f, s.g.data(), int(nR),
                s.v.data(), int(P), 0.0f, s.yc.data(), int(P));
    // Inter-chunk: y_i += exp(a_i) · H q̃_i.
    for (int64_t i = 0; i < n; ++i) {
      const float e = std::exp(s.a[i]);
      for (int64_t x = 0; x < R * N; ++x) s.qs[i * R * N + x] = e * s.q[i * R * N + x];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nR), int(P), int(N), 1.0f, s.qs.data(), int(N), Hs,
                int(N), 1.0f, s.yc.data(), int(P));
    const float Dh = in.D[h];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < R; ++r) {
        float* out = y + (t0 + c0 + i) * y_ld + (r * d.H + h) * P;
        const float* yc = s.yc.data() + (i * R + r) * P;
        const float* v = s.v.data() + (i * R + r) * P;
        for (int64_t p = 0; p < P; ++p) out[p] = yc[p] + Dh * v[p];
      }
    // State: H ← exp(a_end) H + Σ_j exp(a_end − a_j) σ_j Σ_r v_{j,r} k̃_{j,r}ᵀ.
    const float a_end = s.a[n - 1];
    for (int64_t i = 0; i < n; ++i) {
      const float w = std::exp(a_end - s.a[i]) * s.sig[i];
      for (int64_t x = 0; x < R * N; ++x) s.kw[i * R * N + x] = w * s.k[i * R * N + x];
    }
    const float decay = std::exp(a_end);
    for (int64_t x = 0; x < P * N; ++x) Hs[x] *= decay;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(P), int(N), int(nR), 1.0f, s.v.data(), int(P),
                s.kw.data(), int(N), 1.0f, Hs, int(N));
    if (!has_next) {
      for (int64_t r = 0; r < R; ++r)
        std::copy_n(s.k.data() + ((n - 1) * R + r) * N, N, st.k + (r * d.H + h) * N);
      std::copy_n(in.x + (t0 + L - 1) * in.x_ld + h * P, P, st.v + h * P);
    }
  }
}

}  // namespace

void mamba3_scan_chunked(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_seqlens,
                         int64_t n_seqs, const Mamba3ScanState* states, float* y, int64_t y_ld, int64_t chunk) {
  const int64_t work = n_seqs * d.H;
#pragma omp parallel
  {
    Scratch s;
    s.resize(d, chunk);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t i = w / d.H, h = w % d.H;
      const int64_t L = cu_seqlens[i + 1] - cu_seqlens[i];
      if (L > 0) scan_head(d, in, cu_seqlens[i], L, h, states[i], y, y_ld, chunk, s);
    }
  }
}

void mamba3_scan_step(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                      const Mamba3ScanState* states, float* y, int64_t y_ld) {
  const int64_t R = d.R, N = d.N, P = d.P;
#pragma omp parallel
  {
    std::vector<float> q(R * N), k(R * N), v(R * P), vprev(R * P), cs(d.S), sn(d.S);
#pragma omp for schedule(static)
    for (int64_t w = 0; w < n_seqs * d.H; ++w) {
      const int64_t t = w / d.H, h = w % d.H;
      const Mamba3ScanState& st = states[t];
      const float dt = in.dt.at(t, h), lam = sigmoid(in.trap.at(t, h));
      const float alpha = std::exp(in.adt.at(t, h)), beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;
      token_qk(d, in, t, h, st.angle + h * d.S, cs.data(), sn.data(), q.data(), k.data());
      token_v(d, in, in.x + t * in.x_ld + h * P, h, v.data());
      token_v(d, in, st.v + h * P, h, vprev.data());
      float* Hs = st.ssm + h * P * N;
      // H_t = α H + β Σ_r v_{t−1,r} k̃_{t−1,r}ᵀ + γ Σ_r v_{t,r} k̃_{t,r}ᵀ (spec §4).
      for (int64_t p = 0; p < P; ++p) {
        float* row = Hs + p * N;
        for (int64_t n = 0; n < N; ++n) row[n] *= alpha;
        for (int64_t r = 0; r < R; ++r) {
          const float bp = beta * vprev[r * P + p], gp = gamma * v[r * P + p];
          const float* kp = st.k + (r * d.H + h) * N;
          const float* kc = k.data() + r * N;
          for (int64_t n = 0; n < N; ++n) row[n] += bp * kp[n] + gp * kc[n];
        }
      }
      // y_r = H q̃_r + D v_r.
      for (int64_t r = 0; r < R; ++r) {
        float* out = y + t * y_ld + (r * d.H + h) * P;
        const float* qr = q.data() + r * N;
        for (int64_t p = 0; p < P; ++p) {
          const float* row = Hs + p * N;
          float acc = 0;
          for (int64_t n = 0; n < N; ++n) acc += row[n] * qr[n];
          out[p] = acc + in.D[h] * v[r * P + p];
        }
      }
      for (int64_t r = 0; r < R; ++r) std::copy_n(k.data() + r * N, N, st.k + (r * d.H + h) * N);
      std::copy_n(in.x + t * in.x_ld + h * P, P, st.v + h * P);
    }
  }
}

}  // namespace m3::cpu
