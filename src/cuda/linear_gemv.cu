// The one-row bf16 product (cuda/linear_gemv.h). It is a stream of the matrix (2·in·out bytes)
// against in·out multiply-adds, so the kernel only has to keep enough weight bytes in flight. One
// warp per output row (rows strided over the grid), each lane loading 16 16-byte pieces of the row
// at once (8 KB per warp in flight: a whole row of in ≤ 4096), x staged once per block in shared
// memory as bf16, one warp reduction per row. Measured on the H200 (bench/RESULTS.md) it beats
// cuBLASLt at one row on every 1.4B-preset shape; at two rows and more its per-weight work
// (unpacking x, the multiply-adds) makes it slower on two of three, so T > 1 stays with cuBLASLt.
#include <cuda_bf16.h>

#include <algorithm>
#include <mutex>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/linear_gemv.h"
#include "cuda/pdl.cuh"

namespace m3::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kUnroll = 16;             // 16-byte weight pieces per lane in flight
constexpr size_t kMaxSmem = 96 * 1024;  // x as bf16: in ≤ 49152

// The two bf16 halves of a 32-bit word as floats (low half first: little-endian element order).
__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ float dot8(const uint4& w, const uint4& x, float acc) {
  acc = fmaf(bf16_lo(w.x), bf16_lo(x.x), acc);
  acc = fmaf(bf16_hi(w.x), bf16_hi(x.x), acc);
  acc = fmaf(bf16_lo(w.y), bf16_lo(x.y), acc);
  acc = fmaf(bf16_hi(w.y), bf16_hi(x.y), acc);
  acc = fmaf(bf16_lo(w.z), bf16_lo(x.z), acc);
  acc = fmaf(bf16_hi(w.z), bf16_hi(x.z), acc);
  acc = fmaf(bf16_lo(w.w), bf16_lo(x.w), acc);
  return fmaf(bf16_hi(w.w), bf16_hi(x.w), acc);
}

// W: [out, in/8] pieces of 8 bf16; xs (shared): [in/8] pieces.
__global__ void __launch_bounds__(kThreads) linear_bf16_gemv_rows(float* __restrict__ y, const float* __restrict__ x,
                                                                  const uint4* __restrict__ W,
                                                                  const float* __restrict__ bias, int64_t in,
                                                                  int64_t out) {
  extern __shared__ uint4 xs[];
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t pieces = in / 8;
  const int64_t stride = int64_t(gridDim.x) * kWarps;
  int64_t row = int64_t(blockIdx.x) * kWarps + warp;
  uint4 w[kUnroll];
  auto load = [&](int64_t r, int64_t p0) {
    const uint4* wr = W + r * pieces;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = p0 + u * 32 + lane;
      w[u] = p < pieces ? __ldg(wr + p) : make_uint4(0, 0, 0, 0);
    }
  };
  // No earlier kernel writes the weights: their first pieces load before the previous kernel ends.
  if (row < out) load(row, 0);
  pdl_wait();

  // x rounded to bf16 (nearest even), as linear_fwd rounds it for cuBLASLt.
  auto* xs2 = reinterpret_cast<__nv_bfloat162*>(xs);
  for (int64_t i = threadIdx.x; i < in / 2; i += kThreads) xs2[i] = __floats2bfloat162_rn(x[2 * i], x[2 * i + 1]);
  __syncthreads();

  for (; row < out; row += stride) {
    float acc = 0.0f;
    for (int64_t p0 = 0; p0 < pieces; p0 += kUnroll * 32) {
      if (p0 > 0) load(row, p0);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p = p0 + u * 32 + lane;
        if (p >= pieces) break;
        acc = dot8(w[u], xs[p], acc);
      }
    }
    // The next row's first pieces are in flight during this row's reduction.
    if (row + stride < out) load(row + stride, 0);
    const float v = lane_group_sum(acc, 32);
    if (lane == 0) y[row] = v + (bias ? bias[row] : 0.0f);
  }
}

}  // namespace

bool linear_bf16_gemv_fits(const Matrix& W, int64_t T, int64_t in) {
  return W.bf16 && T == 1 && in > 0 && in % 8 == 0 && size_t(in) * 2 <= kMaxSmem &&
         reinterpret_cast<uintptr_t>(W.data) % 16 == 0;
}

void linear_bf16_gemv(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t in,
                      int64_t out) {
  check(linear_bf16_gemv_fits(W, 1, in) && W.rows == out && W.cols == in,
        "linear_bf16_gemv: a " + std::to_string(W.rows) + "x" + std::to_string(W.cols) +
            (W.bf16 ? " bf16" : " f32") + " matrix is not one it takes");
  if (out <= 0) return;
  static std::once_flag attr_once;
  std::call_once(attr_once, [] {
    M3_CUDA_CHECK(cudaFuncSetAttribute(linear_bf16_gemv_rows, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(kMaxSmem)));
  });
  const size_t smem = size_t(in) * 2;
  int per_sm = 0;
  M3_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, linear_bf16_gemv_rows, kThreads, smem));
  const int64_t want = (out + kWarps - 1) / kWarps;
  const int64_t resident = int64_t(std::max(per_sm, 1)) * ctx.prop.multiProcessorCount;
  launch_pdl(linear_bf16_gemv_rows, dim3(unsigned(std::min(want, resident))), dim3(kThreads), smem, ctx.stream, y, x,
             static_cast<const uint4*>(W.data), bias, in, out);
}

}  // namespace m3::cuda
