// Float64 reference implementations written straight from the specs (spec/model.md §3–§4,
// spec/mamba3.md §2–§5, spec/mamba2.md §3–§4), naive loops and one token at a time,
// sharing no code with the engine. The kernel and layer tests compare the float32 CPU code with
// these on random inputs.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "m3/config.h"
#include "model/layer.h"

namespace m3::ref {

using Vec = std::vector<double>;
// Parameters by name (relative to the layer's key prefix), row-major as in the checkpoint.
using Params = std::map<std::string, Vec>;

// The engine's float32 data, widened (exactly) to float64 for the references.
Vec widen(const std::vector<float>& v);
Params widen(const ParamMap& p);

// Row-wise ops on T rows of a row-major [T, ·] array.
// y[T, out] = x[T, in] · W[out, in]ᵀ (+ bias[out] when bias is not empty).
Vec linear(const Vec& x, const Vec& W, const Vec& bias, int64_t T, int64_t in, int64_t out);
Vec rmsnorm(const Vec& x, const Vec& w, int64_t T, int64_t D, double eps);
Vec layernorm(const Vec& x, const Vec& w, const Vec& b, int64_t T, int64_t D, double eps);
// Per group of `group` channels: norm_before_gate: RMSNorm(y) ⊙ w ⊙ silu(z); otherwise
// RMSNorm(y ⊙ silu(z)) ⊙ w.
Vec gated_rmsnorm(const Vec& y, const Vec& z, const Vec& w, int64_t T, int64_t D, int64_t group, double eps,
                  bool norm_before_gate);
// a ⊙ silu(b), elementwise.
Vec silu_gate(const Vec& a, const Vec& b);
// Depthwise causal conv1d of one sequence x [L, C] with weights w [C, W] and bias [C] (or empty):
// u_t[c] = bias[c] + Σ_k w[c, k] x_{t−(W−1)+k}[c], where x_{−j} = window[c, W − j] (the window holds
// the W inputs before the sequence, oldest first). The window is left holding the last W inputs.
Vec causal_conv1d(const Vec& x, int64_t L, int64_t C, const Vec& w, const Vec& bias, int64_t W, Vec& window,
                  bool silu_out);
// GatedMLP (spec/model.md §3): fc2(y ⊙ silu(gate)) with [y | gate] = fc1(x).
Vec gated_mlp(const Vec& x, const Params& p, int64_t T, int64_t d_model, int64_t hidden);

// Mamba-3 decode state of one sequence (spec/mamba3.md §5): angle [H, S], ssm [H, P, N],
// k [R, H, N], v [H, P].
struct Mamba3State {
  Vec angle, ssm, k, v;
};
// The mixer over one sequence x [L, d_model] → [L, d_model], token by token (§3 preprocessing,
// §4 recurrence and output, out_proj), from `st`, which is left as the state after the last token.
// Reads only the primary hyperparameters of `c` (d_state, expand, headdim, ngroups,
// rope_fraction, A_floor, is_outproj_norm, is_mimo, mimo_rank) and derives every size itself.
Vec mamba3(const Mamba3Config& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, Mamba3State& st);
Mamba3State mamba3_zero_state(const Mamba3Config& c, int64_t d_model);

// Everything MHA has seen of one sequence: the qkv inputs before the conv, and the rotated keys
// and the values, one row per position.
struct AttnState {
  std::vector<Vec> qkv_in, keys, values;
};
// MHA (spec/model.md §4) over one call of L new tokens x [L, d_model] of a sequence whose earlier
// tokens are in `st`: queries see the earlier tokens and the new ones (causal: up to their own
// position). c.mlp_dim is taken as stored (already rounded to a multiple of 256). Output rows are
// d_out wide (0: d_model; Zamba2's shared attention reads 2·d_model and writes d_model).
Vec attention(const AttnConfig& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, AttnState& st,
              int64_t d_out = 0);

// One token of spec/mamba2.md §3 step 3 for every head: S ← a S + dt x Bᵀ; y = S C + D ⊙ x.
// x [H, P], B and C [G, N], dt [H]; A [H]; D [H] or [H, P]; S [H, P, N].
void ssd_token(int64_t H, int64_t G, int64_t P, int64_t N, const double* x, const double* B, const double* C,
               const double* dt, const double* A, const Vec& D, double* S, double* y);

// The sizes of spec/mamba2.md §1–§2, derived here from the primary hyperparameters.
struct Mamba2Sizes {
  int64_t N, W, P, G, DI, DS, DM, H, GN, CD, D_in;
  Mamba2Sizes(const Mamba2Config& c, int64_t d_model)
      : N(c.d_state), W(c.d_conv), P(c.headdim), G(c.ngroups), DI(c.expand * d_model), DS(c.d_ssm), DM(DI - DS),
        H(DS / P), GN(G * N), CD(DS + 2 * GN), D_in(2 * DI + 2 * GN + H) {}
};

// The Mamba-2 mixer over one sequence x [L, d_model] → [L, d_model], token by token (spec/mamba2.md
// §3, with the conv computed from the decode window as §4 describes), from the decode state conv
// [conv_dim, d_conv] (oldest first) and ssm [H, P, N], left as the state after the last token.
Vec mamba2(const Mamba2Config& c, int64_t d_model, const Params& p, const Vec& x, int64_t L, Vec& conv, Vec& ssm);

}  // namespace m3::ref
