// Row kernels: one block per row (or per row and group), block-wide sums in float32; the same
// formulas as cpu/ops.cpp.
#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/ops.h"
#include "cuda/pdl.cuh"
#include "cuda/reduce.cuh"

namespace m3::cuda {

namespace {

constexpr int kRowThreads = 256;

int grid_rows(int64_t rows) {
  check(rows <= int64_t(0x7fffffff), "too many rows for one launch: " + std::to_string(rows));
  return int(rows);
}

__global__ void rmsnorm_rows(float* y, const float* x, const float* __restrict__ w, int64_t D, float eps, int64_t ldx,
                             int64_t ldy) {
  const float* xr = x + blockIdx.x * ldx;
  float* yr = y + blockIdx.x * ldy;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
  const float r = rsqrtf(block_sum(ss) / float(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = xr[i] * r * w[i];
}

// residual += add (if any); normed = RMSNorm or LayerNorm (b non-null) of residual.
__global__ void add_norm_rows(float* __restrict__ residual, const float* __restrict__ add, float* __restrict__ normed,
                              const float* __restrict__ w, const float* __restrict__ b, int64_t D, float eps) {
  pdl_trigger();  // the next product's weights start streaming (cuda/pdl.cuh)
  pdl_wait();
  float* r = residual + blockIdx.x * D;
  float* o = normed + blockIdx.x * D;
  float s = 0, ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float v = r[i];
    if (add) {
      v += add[blockIdx.x * D + i];
      r[i] = v;
    }
    s += v;
    ss += v * v;
  }
  if (b) {
    const float mean = block_sum(s) / float(D);
    float var = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) var += (r[i] - mean) * (r[i] - mean);
    const float rs = rsqrtf(block_sum(var) / float(D) + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) o[i] = (r[i] - mean) * rs * w[i] + b[i];
  } else {
    const float rs = rsqrtf(block_sum(ss) / float(D) + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) o[i] = r[i] * rs * w[i];
  }
}

// Block (t, g): group g of row t.
__global__ void gated_rmsnorm_groups(float* out, const float* y, const float* z, const float* __restrict__ w,
                                     int64_t group, int64_t n_groups, float eps, bool norm_before_gate, int64_t ldy,
                                     int64_t ldz, int64_t ldo) {
  const int64_t t = blockIdx.x / n_groups, g0 = (blockIdx.x % n_groups) * group;
  const float* yr = y + t * ldy + g0;
  const float* zr = z + t * ldz + g0;
  float* o = out + t * ldo + g0;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) {
    const float v = norm_before_gate ? yr[i] : yr[i] * silu(zr[i]);
    ss += v * v;
  }
  const float r = rsqrtf(block_sum(ss) / float(group) + eps);
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) o[i] = yr[i] * silu(zr[i]) * r * w[g0 + i];
}

__global__ void silu_gate(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                          int64_t ldo) {
  const int64_t n = T * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i - t * D;
    out[t * ldo + c] = a[t * lda + c] * silu(b[t * ldb + c]);
  }
}

__global__ void gelu_gate(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                          int64_t ldo) {
  const int64_t n = T * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i - t * D;
    const float g = a[t * lda + c];
    out[t * ldo + c] = 0.5f * g * (1.0f + erff(g * float(M_SQRT1_2))) * b[t * ldb + c];
  }
}

__global__ void relu2(float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float r = fmaxf(x[i], 0.0f);
    x[i] = r * r;
  }
}

__global__ void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}

int grid_elems(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535 * 16)); }

}  // namespace

void relu2_fwd(Context& ctx, float* x, int64_t n) {
  if (n <= 0) return;
  relu2<<<grid_elems(n), 256, 0, ctx.stream>>>(x, n);
  M3_CUDA_LAUNCH_CHECK();
}

void add_fwd(Context& ctx, float* y, const float* x, int64_t n) {
  if (n <= 0) return;
  add_into<<<grid_elems(n), 256, 0, ctx.stream>>>(y, x, n);
  M3_CUDA_LAUNCH_CHECK();
}

void rmsnorm_fwd(Context& ctx, float* y, const float* x, const float* w, int64_t T, int64_t D, float eps, int64_t ldx,
                 int64_t ldy) {
  if (T <= 0) return;
  rmsnorm_rows<<<grid_rows(T), kRowThreads, 0, ctx.stream>>>(y, x, w, D, eps, ldx < 0 ? D : ldx, ldy < 0 ? D : ldy);
  M3_CUDA_LAUNCH_CHECK();
}

void add_norm_fwd(Context& ctx, float* residual, const float* add, float* normed, const float* w, const float* b,
                  int64_t T, int64_t D, float eps) {
  if (T <= 0) return;
  launch_pdl(add_norm_rows, dim3(grid_rows(T)), dim3(kRowThreads), 0, ctx.stream, residual, add, normed, w, b, D, eps);
}

void gated_rmsnorm_fwd(Context& ctx, float* out, const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, bool norm_before_gate, int64_t ldy, int64_t ldz, int64_t ldo) {
  if (T <= 0 || D <= 0) return;
  check(group > 0 && D % group == 0, "gated_rmsnorm_fwd: group " + std::to_string(group) + " does not divide " +
                                         std::to_string(D));
  const int64_t n_groups = D / group;
  gated_rmsnorm_groups<<<grid_rows(T * n_groups), kRowThreads, 0, ctx.stream>>>(out, y, z, w, group, n_groups, eps,
                                                                                norm_before_gate, ldy, ldz, ldo);
  M3_CUDA_LAUNCH_CHECK();
}

void silu_gate_fwd(Context& ctx, float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda,
                   int64_t ldb, int64_t ldo) {
  const int64_t n = T * D;
  if (n <= 0) return;
  silu_gate<<<grid_elems(n), 256, 0, ctx.stream>>>(out, a, b, T, D, lda, ldb, ldo);
  M3_CUDA_LAUNCH_CHECK();
}

void gelu_gate_fwd(Context& ctx, float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda,
                   int64_t ldb, int64_t ldo) {
  const int64_t n = T * D;
  if (n <= 0) return;
  gelu_gate<<<grid_elems(n), 256, 0, ctx.stream>>>(out, a, b, T, D, lda, ldb, ldo);
  M3_CUDA_LAUNCH_CHECK();
}

}  // namespace m3::cuda
