#include "cpu/ops.h"

#include <cblas.h>

namespace m3::cpu {

void linear_fwd(float* y, const float* x, const float* W, const float* bias, int64_t T, int64_t in, int64_t out,
                int64_t ldx, int64_t ldy) {
  if (ldx < 0) ldx = in;
  if (ldy < 0) ldy = out;
  if (T == 0 || out == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(out), int(in), 1.0f, x, int(ldx), W, int(in),
              0.0f, y, int(ldy));
  if (bias) {
#pragma omp parallel for if (T * out > 65536)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < out; ++o) y[t * ldy + o] += bias[o];
  }
}

void rmsnorm_fwd(float* y, const float* x, const float* w, int64_t T, int64_t D, float eps) {
#pragma omp parallel for if (T * D > 65536)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    float r = 1.0f / std::sqrt(ss / float(D) + eps);
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * r * w[i];
  }
}

void layernorm_fwd(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t D, float eps) {
#pragma omp parallel for if (T * D > 65536)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float mean = 0;
    for (int64_t i = 0; i < D; ++i) mean += xr[i];
    mean /= float(D);
    float var = 0;
    for (int64_t i = 0; i < D; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    float r = 1.0f / std::sqrt(var / float(D) + eps);
    for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * r * w[i] + (b ? b[i] : 0.0f);
  }
}

void gated_rmsnorm_fwd(float* out, const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, bool norm_before_gate, int64_t ldy, int64_t ldz, int64_t ldo) {
#pragma omp parallel for if (T * D > 65536)
  for (int64_t t = 0; t < T; ++t) {
    const float* yr = y + t * ldy;
    const float* zr = z + t * ldz;
    float* o = out + t * ldo;
    for (int64_t g0 = 0; g0 < D; g0 += group) {
      float ss = 0;
      for (int64_t i = g0; i < g0 + group; ++i) {
        float v = norm_before_gate ? yr[i] : yr[i] * silu(zr[i]);
        ss += v * v;
      }
      float r = 1.0f / std::sqrt(ss / float(group) + eps);
      for (int64_t i = g0; i < g0 + group; ++i) {
        float s = silu(zr[i]);
        o[i] = norm_before_gate ? yr[i] * r * w[i] * s : yr[i] * s * r * w[i];
      }
    }
  }
}

void silu_gate_fwd(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                   int64_t ldo) {
#pragma omp parallel for if (T * D > 65536)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) out[t * ldo + i] = a[t * lda + i] * silu(b[t * ldb + i]);
}

}  // namespace m3::cpu
