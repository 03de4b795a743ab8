// y[out] = W[out, in] · x[in] (+ bias) for a bf16 matrix and one row of x (a batch-1 decode step):
// a weight-streaming kernel instead of cuBLASLt, whose product at T = 1 reads the matrix well under
// the copy bandwidth and costs two more launches (rounding x, adding the bias). Same numbers as
// linear_fwd's bf16 path: x rounded to bf16, products accumulated in float32.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/weights.h"

namespace m3::cuda {

// Whether linear_bf16_gemv takes this product: one row, W bf16 with rows of a multiple of 8
// elements (16-byte loads), x's bf16 copy fitting in shared memory (in ≤ 49152).
bool linear_bf16_gemv_fits(const Matrix& W, int64_t T, int64_t in);

// Launched as a programmatic dependent launch (cuda/pdl.cuh): the first weights stream in while
// the kernel before it finishes.
void linear_bf16_gemv(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t in,
                      int64_t out);

}  // namespace m3::cuda
