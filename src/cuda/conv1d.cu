// Implements cuda/conv1d.h (spec/mamba2.md §3.1 and §4) in two passes on the stream, so that the
// window is read by every output before it is advanced:
//  1. causal_conv1d_out: one thread per (sequence, channel, tile of kTokTile tokens); input
//     position j < 0 of a sequence (before its first row) is window entry W + j.
//  2. causal_conv1d_advance_window: one thread per (sequence, channel) owns that channel's
//     window and writes its new last W inputs, oldest first.
#include <climits>
#include <string>

#include "cuda/check.h"
#include "cuda/conv1d.h"
#include "cuda/device_math.cuh"

namespace m3::cuda {

namespace {

constexpr int kThreads = 128;  // channels per block
constexpr int kTokTile = 32;   // tokens per thread in the output pass

// u_t[c] = bias[c] + Σ_{k<W} w[c, k] · x_{t−(W−1)+k}[c], summed in the CPU's order (bias first,
// then k ascending). Block b covers channel block b % n_cblk of token tile (b / n_cblk) % n_tiles
// of sequence b / (n_cblk · n_tiles).
__global__ void causal_conv1d_out(float* out, int64_t ldo, const float* x, int64_t ldx, const int64_t* cu,
                                  int64_t n_cblk, int64_t n_tiles, int64_t C, const float* w, const float* bias,
                                  int64_t W, const float* window_base, const int32_t* slot, int64_t window_stride,
                                  bool silu_out) {
  const int64_t b = blockIdx.x, c = (b % n_cblk) * kThreads + threadIdx.x;
  const int64_t tile = (b / n_cblk) % n_tiles, i = b / (n_cblk * n_tiles);
  if (c >= C) return;
  const int64_t s0 = cu[i], L = cu[i + 1] - s0;
  const int64_t t_begin = tile * kTokTile, t_end = min(t_begin + int64_t(kTokTile), L);
  const float* win = window_base + int64_t(slot[i]) * window_stride + c * W;
  const float* wc = w + c * W;
  const float b0 = bias ? bias[c] : 0.0f;
  for (int64_t t = t_begin; t < t_end; ++t) {
    float acc = b0;
    for (int64_t k = 0; k < W; ++k) {
      const int64_t j = t - (W - 1) + k;  // input position within the sequence
      acc += wc[k] * (j >= 0 ? x[(s0 + j) * ldx + c] : win[W + j]);
    }
    out[(s0 + t) * ldo + c] = silu_out ? silu(acc) : acc;
  }
}

// The window after the sequence holds inputs L−W .. L−1, oldest first: position j ≥ 0 from x,
// j < 0 from the old window's entry W + j = m + L. Writing m in increasing order reads each old
// entry (m + L > m) before it is overwritten. A sequence of length 0 keeps its window.
__global__ void causal_conv1d_advance_window(const float* x, int64_t ldx, const int64_t* cu, int64_t n_cblk, int64_t C,
                                             int64_t W, float* window_base, const int32_t* slot,
                                             int64_t window_stride) {
  const int64_t b = blockIdx.x, c = (b % n_cblk) * kThreads + threadIdx.x, i = b / n_cblk;
  if (c >= C) return;
  const int64_t s0 = cu[i], L = cu[i + 1] - s0;
  if (L == 0) return;
  float* win = window_base + int64_t(slot[i]) * window_stride + c * W;
  for (int64_t m = 0; m < W; ++m) {
    const int64_t j = L - W + m;
    win[m] = j >= 0 ? x[(s0 + j) * ldx + c] : win[m + L];
  }
}

}  // namespace

void causal_conv1d_fwd(Context& ctx, float* out, int64_t ldo, const float* x, int64_t ldx, const int64_t* cu_dev,
                       int64_t n_seqs, int64_t max_len, int64_t C, const float* w, const float* bias, int64_t W,
                       float* window_base, const int32_t* slot_dev, int64_t window_stride, bool silu_out) {
  if (n_seqs == 0 || max_len == 0 || C == 0) return;
  const int64_t n_cblk = (C + kThreads - 1) / kThreads, n_tiles = (max_len + kTokTile - 1) / kTokTile;
  const int64_t out_blocks = n_seqs * n_tiles * n_cblk;
  check(out_blocks <= INT_MAX, "causal_conv1d_fwd: " + std::to_string(n_seqs) + " sequences of up to " +
                                   std::to_string(max_len) + " tokens × " + std::to_string(C) +
                                   " channels exceed one launch's grid");
  causal_conv1d_out<<<unsigned(out_blocks), kThreads, 0, ctx.stream>>>(out, ldo, x, ldx, cu_dev, n_cblk, n_tiles, C, w,
                                                                       bias, W, window_base, slot_dev, window_stride,
                                                                       silu_out);
  M3_CUDA_LAUNCH_CHECK();
  causal_conv1d_advance_window<<<unsigned(n_seqs * n_cblk), kThreads, 0, ctx.stream>>>(
      x, ldx, cu_dev, n_cblk, C, W, window_base, slot_dev, window_stride);
  M3_CUDA_LAUNCH_CHECK();
}

}  // namespace m3::cuda
