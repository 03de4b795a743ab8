// Element-wise and normalisation kernels shared by the CUDA layers, float32 on ctx.stream; the
// same functions as cpu/ops.h (whose comments give the math), each tested against it.
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

// y[T, D] = x / sqrt(mean(x²) + eps) ⊙ w, rows at strides ldx / ldy (-1: D). y may alias x.
void rmsnorm_fwd(Context& ctx, float* y, const float* x, const float* w, int64_t T, int64_t D, float eps,
                 int64_t ldx = -1, int64_t ldy = -1);

// The pre-norm of a block fused with the residual add before it (model/backend.h BlockNorm):
// residual[T, D] += add (when not null), normed = RMSNorm (b null) or LayerNorm of residual.
void add_norm_fwd(Context& ctx, float* residual, const float* add, float* normed, const float* w, const float* b,
                  int64_t T, int64_t D, float eps);

// Gated RMSNorm over groups of `group` channels (spec/mamba2.md §3.4, spec/mamba3.md §4).
void gated_rmsnorm_fwd(Context& ctx, float* out, const float* y, const float* z, const float* w, int64_t T,
                       int64_t D, int64_t group, float eps, bool norm_before_gate, int64_t ldy, int64_t ldz,
                       int64_t ldo);

// out[T, D] = a ⊙ silu(b) with row strides. Element-wise: out may alias a (same pointer and stride).
void silu_gate_fwd(Context& ctx, float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda,
                   int64_t ldb, int64_t ldo);

// out[T, D] = gelu(a) ⊙ b with row strides, the exact (erf) GELU as cpu::gelu_gate_fwd.
// Element-wise: out may alias a or b.
void gelu_gate_fwd(Context& ctx, float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda,
                   int64_t ldb, int64_t ldo);

// x[i] = max(x[i], 0)² for n contiguous values (the hybrids' squared-ReLU MLP).
void relu2_fwd(Context& ctx, float* x, int64_t n);

// y[i] += x[i] for n contiguous values.
void add_fwd(Context& ctx, float* y, const float* x, int64_t n);

}  // namespace m3::cuda
