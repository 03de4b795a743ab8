// Basic float32 CPU kernels on plain row-major arrays (threaded with OpenMP, GEMMs through
// OpenBLAS). Shapes are arguments; memory is the caller's.
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/vec_math.h"

namespace m3::cpu {

// Through exp_approx, so that loops applying them vectorise.
inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float silu(float x) { return x * sigmoid(x); }

// Below this much work (elements, or multiply-adds) a kernel runs on the calling thread: waking
// the OpenMP team costs more than it saves.
constexpr int64_t kParallelWork = 65536;

// y[T, out] = x[T, in] · W[out, in]ᵀ (+ bias[out] if not null). ldx/ldy: row strides of x and y.
// Up to kSmallRows rows stream W once (decode: the time is reading the weights); more go to
// OpenBLAS sgemm, whose packing of W pays off over many rows.
constexpr int64_t kSmallRows = 4;
void linear_fwd(float* y, const float* x, const float* W, const float* bias, int64_t T, int64_t in, int64_t out,
                int64_t ldx = -1, int64_t ldy = -1);

// y[T, D] = x / sqrt(mean(x²) + eps) ⊙ w. y may alias x.
void rmsnorm_fwd(float* y, const float* x, const float* w, int64_t T, int64_t D, float eps);
// y[T, D] = (x − mean) / sqrt(var + eps) ⊙ w + b. y may alias x.
void layernorm_fwd(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t D, float eps);

// Gated RMSNorm over groups of `group` channels of y[T, D] with gate z (row strides ldy, ldz);
// writes out[T, D] (may alias y). norm_before_gate: out = norm(y) ⊙ w ⊙ silu(z); otherwise
// out = norm(y ⊙ silu(z)) ⊙ w (spec/mamba2.md §3.4, spec/mamba3.md §4).
void gated_rmsnorm_fwd(float* out, const float* y, const float* z, const float* w, int64_t T, int64_t D,
                       int64_t group, float eps, bool norm_before_gate, int64_t ldy, int64_t ldz, int64_t ldo);

// out[T, D] = a ⊙ silu(b) with row strides.
void silu_gate_fwd(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                   int64_t ldo);

// out[T, D] = gelu(a) ⊙ b with row strides; gelu the exact one, x·Φ(x) = x/2·(1 + erf(x/√2))
// (transformers' ACT2FN["gelu"], Zamba2's MLP). Element-wise: out may alias a or b.
void gelu_gate_fwd(float* out, const float* a, const float* b, int64_t T, int64_t D, int64_t lda, int64_t ldb,
                   int64_t ldo);

}  // namespace m3::cpu
