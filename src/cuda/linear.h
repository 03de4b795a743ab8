// Linear layers through cuBLASLt: y[T, out] = x[T, in] · Wᵀ (+ bias). Activations are float32; a
// BF16 matrix multiplies x rounded to bf16 with float32 accumulation and output; an F32 matrix
// runs in full float32 (CUBLAS_COMPUTE_32F, no TF32), the `--dtype f32` checking path.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/weights.h"

namespace m3::cuda {

// ldx, ldy: row strides of x and y in floats (-1: in and out). bias [out] float32 or null. A bf16
// product of one row (batch-1 decode) runs the weight-streaming kernel of cuda/linear_gemv.h, every
// other one cuBLASLt.
void linear_fwd(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t T, int64_t in,
                int64_t out, int64_t ldx = -1, int64_t ldy = -1);

// The same product always through cuBLASLt (the baseline the one-row kernel is measured against).
void linear_fwd_cublaslt(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t T,
                         int64_t in, int64_t out, int64_t ldx = -1, int64_t ldy = -1);

}  // namespace m3::cuda
