// The Mamba-2 scan (SSD, spec/mamba2.md §3 steps 2–3) on the CPU, float32, over a packed batch of
// sequences each carrying its own state: per head h (group g = h / (H/G)), with a_t = exp(A[h]·dt_t[h]),
//   S_t = a_t · S_{t−1} + dt_t[h] · x_t[h] B_t[g]ᵀ     (S [P, N])
//   y_t[h] = S_t C_t[g] + D[h] ⊙ x_t[h].
// The chunked form (prefill) computes the same thing a chunk at a time with small GEMMs: the
// intra-chunk part as a masked, decay-weighted C·Bᵀ applied to dt ⊙ x, the carried state's part as
// a decayed S·C, and one rank-Q update of S per chunk (ssd_minimal.py's four steps). The recurrent
// form (decode) advances one token per sequence.
#pragma once
#include <cstdint>

namespace m3::cpu {

struct SsdScanDims {
  int64_t H;  // heads
  int64_t G;  // B/C groups
  int64_t P;  // headdim
  int64_t N;  // d_state
};

// Inputs for a packed batch; token indices are rows of the batch.
struct SsdScanInputs {
  const float* x;   // token t, head h at x[t*x_ld + h*P] (P values)
  int64_t x_ld;
  const float* B;   // token t, group g at B[t*bc_ld + g*N] (N values)
  const float* C;   // likewise
  int64_t bc_ld;
  const float* dt;  // dt after softplus and clamp: token t, head h at dt[t*dt_ld + h]
  int64_t dt_ld;
  const float* A;   // [H], A = −exp(A_log)
  const float* D;   // [H], or [H, P] when D_per_channel
  bool D_per_channel;
};

// cu_seqlens [n_seqs + 1]; ssm[i] is sequence i's state [H, P, N], read as its initial state and
// left as its state after its last token. y: token t, head h at y[t*y_ld + h*P].
void ssd_scan_chunked(const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_seqlens, int64_t n_seqs,
                      float* const* ssm, float* y, int64_t y_ld, int64_t chunk);

// Recurrent form: token i of the batch belongs to sequence i (one token each).
void ssd_scan_step(const SsdScanDims& d, const SsdScanInputs& in, int64_t n_seqs, float* const* ssm, float* y,
                   int64_t y_ld);

}  // namespace m3::cpu
