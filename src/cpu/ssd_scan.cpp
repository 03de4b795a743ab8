// Implements spec/mamba2.md §3 steps 2–3 (recurrence) and its parallel (SSD) form. Work is split
// over (sequence, head) pairs; each pair runs its chunks in order, with small GEMMs through
// OpenBLAS on the calling thread, reading x, B and C in place through their row strides.
#include "cpu/ssd_scan.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/omp_exceptions.h"
#include "cpu/ops.h"
#include "cpu/vec_math.h"

namespace m3::cpu {

namespace {

struct Scratch {
  std::vector<double> a;     // cumulative log-decay Σ_{s≤i} A·dt_s within the chunk
  std::vector<float> dt;     // [Q] the chunk's dt, contiguous
  std::vector<float> gram;   // [Q, Q] masked decay-weighted C·Bᵀ
  std::vector<float> cs;     // [Q, N] exp(a_i) C_i: the carried state's read-out
  std::vector<float> bw;     // [Q, N] exp(a_end − a_i) dt_i B_i: the chunk's write into the state
  void resize(const SsdScanDims& d, int64_t Q) {
    a.resize(size_t(Q)), dt.resize(size_t(Q)), gram.resize(size_t(Q * Q));
    cs.resize(size_t(Q * d.N)), bw.resize(size_t(Q * d.N));
  }
};

float D_of(const SsdScanInputs& in, int64_t P, int64_t h, int64_t p) {
  return in.D_per_channel ? in.D[h * P + p] : in.D[h];
}

// One (sequence, head): rows [t0, t0 + L) of the packed batch; S is the head's state [P, N].
void scan_head(const SsdScanDims& d, const SsdScanInputs& in, int64_t t0, int64_t L, int64_t h, float* S, float* y,
               int64_t y_ld, int64_t Q, Scratch& s) {
  const int64_t N = d.N, P = d.P, g = h / (d.H / d.G);
  const double A = in.A[h];
  for (int64_t c0 = 0; c0 < L; c0 += Q) {
    const int64_t n = std::min(Q, L - c0), t = t0 + c0;
    const float* x = in.x + t * in.x_ld + h * P;
    const float* B = in.B + t * in.bc_ld + g * N;
    const float* C = in.C + t * in.bc_ld + g * N;
    const float* dt = in.dt + t * in.dt_ld + h;
    float* yc = y + t * y_ld + h * P;
    // Accumulated in double: the decays are exponentials of differences of these sums, and a
    // float sum over a long chunk would lose the small differences. (The differences themselves
    // fit a float; the Q²/2 exponentials are taken in float, vectorised, which keeps them cheap.)
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      s.dt[size_t(i)] = dt[i * in.dt_ld];
      s.a[size_t(i)] = acc += A * s.dt[size_t(i)];
    }
    // Intra-chunk: y_i = Σ_{j≤i} exp(a_i − a_j) dt_j (C_i·B_j) x_j.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(n), int(N), 1.0f, C, int(in.bc_ld), B,
                int(in.bc_ld), 0.0f, s.gram.data(), int(n));
    for (int64_t i = 0; i < n; ++i) {
      float* row = s.gram.data() + i * n;
      const double ai = s.a[size_t(i)];
      const double* a = s.a.data();
      const float* dtc = s.dt.data();
#pragma omp simd
      for (int64_t j = 0; j <= i; ++j) row[j] *= exp_approx(float(ai - a[j])) * dtc[j];
      std::fill(row + i + 1, row + n, 0.0f);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(P), int(n), 1.0f, s.gram.data(), int(n), x,
                int(in.x_ld), 0.0f, yc, int(y_ld));
    // Carried state: y_i += exp(a_i) S C_i.
    for (int64_t i = 0; i < n; ++i) {
      const float e = float(std::exp(s.a[size_t(i)]));
      for (int64_t k = 0; k < N; ++k) s.cs[size_t(i * N + k)] = e * C[i * in.bc_ld + k];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(P), int(N), 1.0f, s.cs.data(), int(N), S, int(N),
                1.0f, yc, int(y_ld));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < P; ++p) yc[i * y_ld + p] += D_of(in, P, h, p) * x[i * in.x_ld + p];
    // State: S ← exp(a_end) S + Σ_j exp(a_end − a_j) dt_j x_j B_jᵀ.
    const double a_end = s.a[size_t(n - 1)];
    for (int64_t i = 0; i < n; ++i) {
      const float w = float(std::exp(a_end - s.a[size_t(i)])) * s.dt[size_t(i)];
      for (int64_t k = 0; k < N; ++k) s.bw[size_t(i * N + k)] = w * B[i * in.bc_ld + k];
    }
    const float decay = float(std::exp(a_end));
    for (int64_t k = 0; k < P * N; ++k) S[k] *= decay;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(P), int(N), int(n), 1.0f, x, int(in.x_ld), s.bw.data(),
                int(N), 1.0f, S, int(N));
  }
}

}  // namespace

void ssd_scan_chunked(const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_seqlens, int64_t n_seqs,
                      float* const* ssm, float* y, int64_t y_ld, int64_t chunk) {
  OmpExceptions errors;  // a scratch buffer's bad_alloc
#pragma omp parallel
  {
    Scratch s;
    errors.run([&] { s.resize(d, chunk); });
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < n_seqs * d.H; ++w) {
      const int64_t i = w / d.H, h = w % d.H;
      const int64_t L = cu_seqlens[i + 1] - cu_seqlens[i];
      if (L > 0) errors.run([&] { scan_head(d, in, cu_seqlens[i], L, h, ssm[i] + h * d.P * d.N, y, y_ld, chunk, s); });
    }
  }
  errors.rethrow();
}

void ssd_scan_step(const SsdScanDims& d, const SsdScanInputs& in, int64_t n_seqs, float* const* ssm, float* y,
                   int64_t y_ld) {
  const int64_t N = d.N, P = d.P;
#pragma omp parallel for schedule(static) if (n_seqs * d.H * P * N > kParallelWork)
  for (int64_t w = 0; w < n_seqs * d.H; ++w) {
    const int64_t t = w / d.H, h = w % d.H, g = h / (d.H / d.G);
    const float dt = in.dt[t * in.dt_ld + h];
    const float a = std::exp(in.A[h] * dt);
    const float* x = in.x + t * in.x_ld + h * P;
    const float* B = in.B + t * in.bc_ld + g * N;
    const float* C = in.C + t * in.bc_ld + g * N;
    float* S = ssm[t] + h * P * N;
    for (int64_t p = 0; p < P; ++p) {
      float* row = S + p * N;
      const float u = dt * x[p];
      float acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < N; ++k) {
        row[k] = a * row[k] + u * B[k];
        acc += row[k] * C[k];
      }
      y[t * y_ld + h * P + p] = acc + D_of(in, P, h, p) * x[p];
    }
  }
}

}  // namespace m3::cpu
