// The Mamba-3 scan (spec/mamba3.md §3–§7) on the CPU, float32: the chunked parallel form for
// prefill and the recurrent form for decode, for SISO (R = 1) and MIMO (rank R), over a packed
// batch of sequences each carrying its own state.
#pragma once
#include <cstdint>

namespace m3::cpu {

// The largest MIMO rank the CPU scan is compiled for (ranks are padded to 1, 2, 4, 8 or 16).
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

// A [token, head] array with strides in floats (head stride 0 broadcasts one value to all heads).
struct TokenHeadView {
  const float* p;
  int64_t ts, hs;
  float at(int64_t t, int64_t h) const { return p[t * ts + h * hs]; }
};

// Inputs for a packed batch; token indices are rows of the packed batch.
struct Mamba3ScanInputs {
  const float* q;      // C after its RMSNorm: token t, rank r, group g at q[t*qk_ld + (r*G + g)*N]
  const float* k;      // B after its RMSNorm, same layout
  int64_t qk_ld;
  const float* q_bias;  // [H, R, N], added before rotation
  const float* k_bias;  // [H, R, N]
  const float* x;       // values: token t, head h at x[t*x_ld + h*P]
  int64_t x_ld;
  const float* mimo_x;  // [H, R, P] value projection per rank; null for SISO
  TokenHeadView adt;    // A·dt
  TokenHeadView dt;     // dt after softplus
  TokenHeadView trap;   // trapezoid logits (λ = sigmoid(trap))
  const float* angle;   // raw angle inputs: token t, head h, j at angle[t*angle_ld + h*angle_hs + j]
  int64_t angle_ld, angle_hs;
  const float* D;       // [H]
};

// One sequence's decode state (spec/mamba3.md §5).
struct Mamba3ScanState {
  float* angle;  // [H, S]
  float* ssm;    // [H, P, N]
  float* k;      // [R, H, N] rotated keys of the last token
  float* v;      // [H, P] values (x) of the last token
};

// Parallel form (prefill). cu_seqlens [n_seqs + 1]; states[i] is read and updated. Output y
// (before gating): token t, rank r, head h at y[t*y_ld + (r*H + h)*P]; D·v included. The CPU runs
// §6 with chunk length 1 (see mamba3_scan.cpp); `chunk` tokens are prepared (rotated, scaled) per
// block, which bounds the scratch memory and does not change the result. Ranks up to 16.
void mamba3_scan_chunked(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_seqlens,
                         int64_t n_seqs, const Mamba3ScanState* states, float* y, int64_t y_ld, int64_t chunk);

// Recurrent form: token i of the batch belongs to sequence i (one token each).
void mamba3_scan_step(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                      const Mamba3ScanState* states, float* y, int64_t y_ld);

}  // namespace m3::cpu
