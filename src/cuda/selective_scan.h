// The Mamba-1 selective scan (spec/mamba1.md §3 steps 3–4) on the device, float32, over a packed
// batch of sequences each carrying its state in a pool slot: per channel c and state index n,
//   Δ_t[c]    = softplus(delta_t[c])   (delta: dt_proj's output, bias included)
//   h_t[c, n] = exp(Δ_t[c]·A[c, n]) · h_{t−1}[c, n] + Δ_t[c] · B_t[n] · u_t[c]
//   y_t[c]    = Σ_n h_t[c, n] · C_t[n] + D[c] · u_t[c].
// The decay depends on (c, n), so the kernel runs the recurrence itself: a group of lanes per
// (sequence, channel) holds the channel's N states in registers and walks the sequence's tokens in
// order; the sum over n is a sum over the group. Decode is the same call with one token per
// sequence. The same function as cpu/selective_scan.h, with the softplus of Δ moved inside.
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

constexpr int64_t kSelectiveScanMaxN = 512;  // d_state limit: 32 lanes × 16 registers

// Device inputs for a packed batch; token indices are rows of the batch, c < D channels, n < N.
struct SelectiveScanInputs {
  const float* u;      // token t, channel c at u[t*u_ld + c] (the conv output)
  int64_t u_ld;
  const float* delta;  // Δ before its softplus, at delta[t*delta_ld + c]
  int64_t delta_ld;
  const float* B;      // B_t[n] at B[t*bc_ld + n]
  const float* C;      // C_t[n] at C[t*bc_ld + n]
  int64_t bc_ld;
  const float* A;      // [D, N], A = −exp(A_log)
  const float* D;      // [D] skip weights
};

// cu_dev [n_seqs + 1] device offsets (decode: 0, 1, …, n_seqs). Sequence i's state [D, N] is
// ssm_base + slot_dev[i]·ssm_stride, read as its initial state and left as its state after its
// last token (untouched when its length is 0). y: token t, channel c at y[t*y_ld + c].
void selective_scan(Context& ctx, int64_t D, int64_t N, const SelectiveScanInputs& in, const int64_t* cu_dev,
                    int64_t n_seqs, float* ssm_base, const int32_t* slot_dev, int64_t ssm_stride, float* y,
                    int64_t y_ld);

}  // namespace m3::cuda
