// Scalar device functions shared by the CUDA kernels: the same functions as cpu/ops.h and
// cpu/vec_math.h (sigmoid, silu, softplus_approx), here through CUDA's accurate expf / log1pf
// (a few ulp; the CPU's polynomials are within 4 ulp of the same values), and lane-group
// reductions.
#pragma once
#include <cuda_runtime.h>

namespace m3::cuda {

__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ inline float silu(float x) { return x * sigmoid(x); }

// softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^{−|x|}): no overflow for large x, and for
// x > 17 the second term is below half an ulp of x, so the result is x (PyTorch's threshold 20).
__device__ inline float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

// Sum of v over each aligned group of `width` lanes (a power of two ≤ 32); every lane of the
// group gets the sum. All 32 lanes of the warp must call it (the shuffles name the whole warp).
__device__ inline float lane_group_sum(float v, int width) {
  for (int off = width / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Max of v over each aligned group of `width` lanes, like lane_group_sum.
__device__ inline float lane_group_max(float v, int width) {
  for (int off = width / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

}  // namespace m3::cuda
