// Mixture-of-experts kernels on the CPU (transformers' NemotronHMLP, GraniteMoeHybridMoE,
// NemotronHMoE, JambaSparseMoeBlock): one feed-forward network over a
// block of rows, and the routing of tokens to experts. The MoE layer (moe_layer.cpp) groups the
// tokens of each expert into one block so that every expert runs one GEMM per projection.
#pragma once
#include <cstdint>
#include <vector>

#include "m3/config.h"

namespace m3::cpu {

// One feed-forward network. gated: in [2·hidden, d] holds [gate; up] (Granite's order) and
// h = silu(gate·x) ⊙ (up·x); otherwise in [hidden, d] and h = relu(in·x)². y = out · h (+ biases).
struct FfnWeights {
  const float *in = nullptr, *in_bias = nullptr, *out = nullptr, *out_bias = nullptr;
  int64_t hidden = 0;
  bool gated = false;
};

// y[T, d] = ffn(x[T, d]); h: scratch, resized as needed.
void ffn_rows(const FfnWeights& w, const float* x, int64_t T, int64_t d, float* y, std::vector<float>& h);

// For each of T tokens its top_k experts and their weights from the router logits [T, E] (and
// NemotronH's e_score_correction_bias [E]), as the family defines it (MoeConfig): idx, w [T, top_k].
void moe_route(const MoeConfig& c, const float* logits, const float* score_bias, int64_t T, int32_t* idx, float* w);

}  // namespace m3::cpu
