// Depthwise causal conv1d with a decode window on the device (the CPU's cpu/conv1d.h gives the
// math, spec/mamba2.md §3.1 and §4), over a packed batch: sequence i holds rows
// [cu[i], cu[i+1]) of x and its window [C, W] (the last W inputs, oldest first) is
// windows[b] + slot[i]·window_stride, read before and advanced past the sequence.
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

// x: row t, channel c at x[t*ldx + c]; out likewise with ldo (out must not alias x). w [C, W],
// bias [C] or null; with silu_out, u ← silu(u). cu_dev: [n_seqs + 1] device offsets;
// slot_dev: [n_seqs] device slots; window_base: the pool's buffer for this layer's window.
void causal_conv1d_fwd(Context& ctx, float* out, int64_t ldo, const float* x, int64_t ldx, const int64_t* cu_dev,
                       int64_t n_seqs, int64_t max_len, int64_t C, const float* w, const float* bias, int64_t W,
                       float* window_base, const int32_t* slot_dev, int64_t window_stride, bool silu_out);

}  // namespace m3::cuda
