// The Mamba-2 prefill scan (cuda/ssd_scan.h's contract) on bf16 tensor cores, for `--dtype bf16`:
// Mamba-2's recurrence S_t = exp(A·dt_t) S_{t−1} + dt_t x_t B_tᵀ, y_t = S_t C_t + D x_t is Mamba-3's
// (spec/mamba3.md §4) with the trapezoid weight λ = 1 (no term of the previous token), no rotation
// (angle rate 0), no B/C biases and rank 1, so it runs through the Mamba-3 tensor-core scan
// (cuda/mamba3_chunk_scan_bf16.h) with those inputs: C as q, B as k, x as the values. Mamba-3's
// extra state (the angles, the last token's k̃ and x) lives in this object's scratch, per slot,
// and never affects the result (λ = 1 multiplies it by exactly 0). Float32 runs and decode steps
// keep ssd_scan.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/ssd_scan.h"

namespace m3::cuda {

// Whether the tensor-core form runs these dims: headdim 64, d_state 32, 64 or 128, D per head.
bool ssd_chunk_scan_bf16_supported(const SsdScanDims& d, bool D_per_channel);

class SsdChunkScanBf16 {
 public:
  // ssd_scan's contract; max_len: the longest sequence (how the scan splits them); max_slot: the
  // largest slot_dev entry (sizes the per-slot scratch).
  void prefill(Context& ctx, const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_dev, int64_t T,
               int64_t n_seqs, int64_t max_len, float* ssm_base, const int32_t* slot_dev, int64_t ssm_stride, int32_t max_slot,
               float* y, int64_t y_ld);

 private:
  Scratch<float> dt_, adt_;             // [T, H]: dt after softplus and clamp, A·dt
  Scratch<float> consts_;               // zero biases [H, N], zero angle input, trap logits [H]
  Scratch<float> angle_, k_, v_;        // Mamba-3's other state buffers, one entry per slot
  Scratch<float> split_;                // the scan's first-pass states when it splits sequences
};

}  // namespace m3::cuda
