// The Mamba-1 selective scan (spec/mamba1.md §3 step 4) on the CPU, float32, over a packed
// batch of sequences each carrying its own state: per channel c and state index n,
//   h_t[c, n] = exp(Δ_t[c]·A[c, n]) · h_{t−1}[c, n] + Δ_t[c] · B_t[n] · u_t[c]
//   y_t[c]    = Σ_n h_t[c, n] · C_t[n] + D[c] · u_t[c].
// The decay depends on (c, n), so there is no matrix form: the kernel runs the recurrence itself,
// threads over (sequence, block of channels), each walking its sequence token by token with the
// innermost loop vectorised over the block's channels.
// Decode (the recurrent form) is the same call with one token per sequence.
#pragma once
#include <cstdint>

namespace m3::cpu {

// Inputs for a packed batch; token indices are rows of the batch, c < D channels, n < N.
struct SelectiveScanInputs {
  const float* u;      // token t, channel c at u[t*u_ld + c] (the conv output)
  int64_t u_ld;
  const float* delta;  // Δ after its softplus, at delta[t*delta_ld + c]
  int64_t delta_ld;
  const float* B;      // B_t[n] at B[t*bc_ld + n]
  const float* C;      // C_t[n] at C[t*bc_ld + n]
  int64_t bc_ld;
  const float* A;      // [D, N], A = −exp(A_log)
  const float* D;      // [D] skip weights
};

// cu_seqlens [n_seqs + 1]; ssm[i] is sequence i's state [D, N], read as its initial state and
// left as its state after its last token. y: token t, channel c at y[t*y_ld + c].
void selective_scan(int64_t D, int64_t N, const SelectiveScanInputs& in, const int64_t* cu_seqlens,
                    int64_t n_seqs, float* const* ssm, float* y, int64_t y_ld);

}  // namespace m3::cpu
