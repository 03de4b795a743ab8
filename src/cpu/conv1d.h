// Depthwise causal conv1d over the channels of one sequence, with a decode window
// (spec/mamba2.md §3.1 and §4; also MHA's optional conv and Mamba-1's): for channel c,
// u_t[c] = bias[c] + Σ_{k<W} w[c, k] · x_{t−(W−1)+k}[c], inputs before the sequence taken from
// the window (the last W inputs, oldest first), which is then advanced past the sequence.
#pragma once
#include <cstdint>

namespace m3::cpu {

// x: token t, channel c at x[t*ldx + c]; out likewise with ldo (may alias x). window [C, W].
// bias may be null. With silu_out, u ← silu(u).
void causal_conv1d_fwd(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t L, int64_t C, const float* w,
                       const float* bias, int64_t W, float* window, bool silu_out);

}  // namespace m3::cpu
