// The Mamba-3 scan on the device (spec/mamba3.md §3 rotations, §4 recurrence, §7 packed
// sequences), float32, SISO and MIMO rank R ≤ kMamba3MaxRank: prefill over a packed batch and the
// decode step are one kernel, walking each sequence's tokens in order. The math is the CPU's
// (cpu/mamba3_scan.h), whose layouts the inputs follow.
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

// Ranks are compiled as 1, 2, 4, 8 or 16 (a rank in between runs in the next one up).
constexpr int64_t kMamba3MaxRank = 16;

struct Mamba3ScanDims {
  int64_t H;  // value heads
  int64_t G;  // B/C groups (value head h reads group h / (H / G))
  int64_t P;  // headdim
  int64_t N;  // d_state
  int64_t S;  // rotary angles
  int64_t R;  // MIMO rank (1 for SISO)
  bool halves_pairing;  // rotary pairs (j, j + N/2) (MIMO) instead of (2j, 2j + 1) (SISO)
};

// Inputs of the tokens of one call, device pointers; token indices are rows of the packed batch.
struct Mamba3ScanInputs {
  const float* q;       // C after its RMSNorm: token t, rank r, group g at q[t*qk_ld + (r*G + g)*N]
  const float* k;       // B after its RMSNorm, same layout
  int64_t qk_ld;
  const float* q_bias;  // [H, R, N], added before rotation
  const float* k_bias;  // [H, R, N]
  const float* x;       // values: token t, head h at x[t*x_ld + h*P]
  int64_t x_ld;
  const float* mimo_x;  // [H, R, P] value projection per rank; null for SISO
  const float* adt;     // [T, H] A·dt
  const float* dt;      // [T, H] dt after softplus
  const float* trap;    // trapezoid logits (λ = sigmoid(trap)): token t, head h at trap[t*trap_ld + h]
  int64_t trap_ld;
  const float* angle;   // raw angle inputs, shared by all heads: token t, j at angle[t*angle_ld + j]
  int64_t angle_ld;
  const float* D;       // [H]
};

// The pool's four buffers of this layer (model/specs.h order: angle [H, S], ssm [H, P, N],
// k [R, H, N] rotated keys of the last token, v [H, P] values x of the last token); sequence i's
// are at base + slot[i]·stride (slot in device memory).
struct Mamba3ScanStates {
  float *angle, *ssm, *k, *v;
  int64_t angle_stride, ssm_stride, k_stride, v_stride;
  const int32_t* slot;
};

// m3::Error when the device cannot run the scan for these sizes (headdim over 1024, a state
// beyond the block's shared memory, a rank above kMamba3MaxRank).
void check_mamba3_scan_supported(const Context& ctx, const Mamba3ScanDims& d);

// Parallel form (prefill): cu_dev [n_seqs + 1] device offsets; each sequence starts from its
// state and leaves its state after its last token there (length 0: unchanged). Output y (before
// gating): token t, rank r, head h at y[t*y_ld + (r*H + h)*P], D·v included.
void mamba3_scan_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_dev,
                         int64_t n_seqs, const Mamba3ScanStates& st, float* y, int64_t y_ld);

// Recurrent form: token i of the batch belongs to sequence i (one token each).
void mamba3_scan_step(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                      const Mamba3ScanStates& st, float* y, int64_t y_ld);

}  // namespace m3::cuda
