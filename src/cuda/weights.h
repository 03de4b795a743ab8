// Parameters on the device. Matrices (the in/out projections, MLP, lm_head) in the context's
// precision: BF16 (float32 accumulation in every product) or F32; vectors (biases, norms, A, D,
// dt_bias, conv weights, MIMO factors) always float32 (the brief: SSM parameters stay precise).
#pragma once
#include <cstdint>
#include <memory>

#include "cuda/context.h"
#include "m3/tensor.h"

namespace m3::cuda {

// Row-major [rows, cols] = [out, in] like the checkpoint's nn.Linear weight.
struct Matrix {
  std::shared_ptr<void> mem;
  const void* data = nullptr;
  bool bf16 = false;
  int64_t rows = 0, cols = 0;
};

// Any float32 host tensor of 2 dimensions; converted to bf16 (round to nearest even) under BF16.
Matrix upload_matrix(Context& ctx, const Tensor& w);

// A float32 copy of any float32 host tensor (any shape); .get() is the device pointer.
std::shared_ptr<float> upload_f32(Context& ctx, const Tensor& t);

}  // namespace m3::cuda
