// The Mamba-2 scan (spec/mamba2.md §3 steps 2–3) on the device, float32, over a packed batch of
// sequences each carrying its state in a pool slot: per head h (group g = h / (H/G)),
//   dt_t = clamp(softplus(dt_raw_t[h] + dt_bias[h]), dt_min, dt_max),  a_t = exp(A[h]·dt_t),
//   S_t = a_t · S_{t−1} + dt_t · x_t[h] B_t[g]ᵀ     (S [P, N])
//   y_t[h] = S_t C_t[g] + D[h] ⊙ x_t[h].
// The recurrent form for prefill and decode alike (decode: one token per sequence): the rows p
// of S are independent recurrences, so each warp owns one (sequence, head, row), keeps the row's
// N entries in registers and walks the sequence's tokens in order; y's dot product over N is a
// warp sum. The same function as cpu/ssd_scan.h (whose chunked form is the same math).
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

struct SsdScanDims {
  int64_t H;  // heads
  int64_t G;  // B/C groups
  int64_t P;  // headdim
  int64_t N;  // d_state, at most kSsdScanMaxN
};
constexpr int64_t kSsdScanMaxN = 1024;

// Device inputs for a packed batch; token indices are rows of the batch.
struct SsdScanInputs {
  const float* x;   // token t, head h at x[t*x_ld + h*P] (P values)
  int64_t x_ld;
  const float* B;   // token t, group g at B[t*bc_ld + g*N] (N values)
  const float* C;   // likewise
  int64_t bc_ld;
  const float* dt;  // dt as in_proj gives it (before dt_bias, softplus, clamp): dt[t*dt_ld + h]
  int64_t dt_ld;
  const float* dt_bias;  // [H]
  float dt_min, dt_max;  // the clamp (dt_limit); dt_max may be +inf
  const float* A;   // [H], A = −exp(A_log)
  const float* D;   // [H], or [H, P] when D_per_channel
  bool D_per_channel;
};

// cu_dev [n_seqs + 1] device offsets (decode: 0, 1, …, n_seqs). Sequence i's state [H, P, N] is
// ssm_base + slot_dev[i]·ssm_stride, read as its initial state and left as its state after its
// last token (untouched when its length is 0). y: token t, head h at y[t*y_ld + h*P].
void ssd_scan(Context& ctx, const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_dev, int64_t n_seqs,
              float* ssm_base, const int32_t* slot_dev, int64_t ssm_stride, float* y, int64_t y_ld);

}  // namespace m3::cuda
