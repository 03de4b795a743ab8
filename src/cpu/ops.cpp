#include "cpu/ops.h"

#include <cblas.h>

#include <algorithm>

namespace m3::cpu {

namespace {

// Below this many multiply-adds a kernel runs on the calling thread: waking the team costs more.
constexpr int64_t kParallelWork = 65536;

// y[T, out] for T ≤ kSmallRows: each thread takes a contiguous range of W's rows and streams it
// once, kRows rows at a time against every row of x (which stays in L1). A row's dot product is
// kLanes partial sums; one row alone is bound by the FMA latency of its two vector accumulator
// chains (~0.6 of the read bandwidth measured here), kRows rows give the core 2·kRows
// independent chains and share each load of x.
void linear_small(float* y, const float* x, const float* W, int64_t T, int64_t in, int64_t out, int64_t ldx,
                  int64_t ldy) {
  constexpr int64_t kLanes = 32, kRows = 4;
  const int64_t blocked = in / kLanes * kLanes, row_blocks = (out + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) if (T * in * out > kParallelWork)
  for (int64_t ob = 0; ob < row_blocks; ++ob) {
    const int64_t o0 = ob * kRows, nr = std::min(kRows, out - o0);
    // A short last block repeats its first row (read again from L1); its extra sums are dropped.
    const float* w[kRows];
    for (int64_t r = 0; r < kRows; ++r) w[r] = W + (o0 + (r < nr ? r : 0)) * in;
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * ldx;
      float acc[kRows][kLanes] = {};
      for (int64_t i = 0; i < blocked; i += kLanes)
#pragma omp simd
        for (int64_t j = 0; j < kLanes; ++j) {
          const float xv = xt[i + j];
          for (int64_t r = 0; r < kRows; ++r) acc[r][j] += w[r][i + j] * xv;
        }
      for (int64_t r = 0; r < nr; ++r) {
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < kLanes; ++j) s += acc[r][j];
        for (int64_t i = blocked; i < in; ++i) s += w[r][i] * xt[i];
        y[t * ldy + o0 + r] = s;
      }
    }
  }
}

}  // namespace

void linear_fwd(float* y, const float* x, const float* W, const float* bias, int64_t T, int64_t in, int64_t out,
                int64_t ldx, int64_t ldy) {
  if (ldx < 0) ldx = in;
  if (ldy < 0) ldy = out;
  if (T == 0 || out == 0) return;
  if (T <= kSmallRows)
    linear_small(y, x, W, T, in, out, ldx, ldy);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(out), int(in), 1.0f, x, int(ldx), W, int(in),
                0.0f, y, int(ldy));
  if (bias) {
#pragma omp parallel for if (T * out > kParallelWork)
    for (int64_t t = 0; t < T; ++t)
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) y[t * ldy + o] += bias[o];
  }
}

void rmsnorm_fwd(float* y, const float* x, const float* w, int64_t T, int64_t D, float eps) {
#pragma omp parallel for if (T * D > kParallelWork)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const float r = 1.0f / std::sqrt(ss / float(D) + eps);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * r * w[i];
  }
}

void layernorm_fwd(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t D, float eps) {
#pragma omp parallel for if (T * D > kParallelWork)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float mean = 0;
#pragma omp simd reduction(+ : mean)
    for (int64_t i = 0; i < D; ++i) mean += xr[i];
    mean /= float(D);
    float var = 0;
#pragma omp simd reduction(+ : var)
    for (int64_t i = 0; i < D; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float r = 1.0f / std::sqrt(var / float(D) + eps);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * r * w[i] + (b ? b[i] : 0.0f);
  }
}

void gated_rmsnorm_fwd(float* out, const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, bool norm_before_gate, int64_t ldy, int64_t ldz, int64_t ldo) {
#pragma omp parallel for if (T * D > kParallelWork)
  for (int64_t t = 0; t < T; ++t) {
    const float* yr = y + t * ldy;
    const float* zr = z + t * ldz;
    float* o = out + t * ldo;
    for (int64_t g0 = 0; g0 < D; g0 += group) {
      float ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t i = g0; i < g0 + group; ++i) {
        const float v = norm_before_gate ? yr[i] : yr[i] * silu(zr[i]);
        ss += v * v;
      }
      const float r = 1.0f / std::sqrt(ss / float(group) + eps);
#pragma omp simd
      for (int64_t i = g0; i < g0 + group; ++i) o[i] = yr[i] * silu(zr[i]) * r * w[i];
    }
  }
}

void silu_gate_fwd(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                   int64_t ldo) {
#pragma omp parallel for if (T * D > kParallelWork)
  for (int64_t t = 0; t < T; ++t)
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) out[t * ldo + i] = a[t * lda + i] * silu(b[t * ldb + i]);
}

}  // namespace m3::cpu
