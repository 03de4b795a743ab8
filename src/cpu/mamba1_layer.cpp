// Mamba-1 mixer on the CPU (spec/mamba1.md §3): in_proj → [x | z]; u = silu(causal conv1d(x));
// x_proj(u) → [δ | B | C] (FalconMamba, §5: each then through a weightless RMSNorm; Jamba: an
// RMSNorm with a weight);
// Δ = softplus(dt_proj(δ)); the selective scan (cpu/selective_scan); y ⊙ silu(z); out_proj.
// Decode is the same pipeline over one token per sequence.
#include <cmath>
#include <string>
#include <vector>

#include "cpu/conv1d.h"
#include "cpu/layers.h"
#include "cpu/ops.h"
#include "cpu/selective_scan.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

// Buffers of the state, in mamba1_state_spec's order.
enum : size_t { kConv, kSsm };

// v[n] ← v / sqrt(mean(v²) + eps), times w when given: FalconMamba's RMSNorm without weight,
// Jamba's with one (spec/mamba1.md §5).
void rms_normalize(float* v, int64_t n, float eps, const float* w) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += v[i] * v[i];
  const float r = 1.0f / std::sqrt(ss / float(n) + eps);
  if (w) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = w[i] * (v[i] * r);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] *= r;
  }
}

class Mamba1Layer final : public Layer {
 public:
  Mamba1Layer(const Mamba1Config& c, int64_t d_model, ParamMap p) : c_(c), d_model_(d_model), p_(std::move(p)) {
    // A = −exp(A_log) is constant while the layer lives; computing it once keeps decode cheap.
    const Tensor& a_log = p_.at("A_log");
    A_.resize(static_cast<size_t>(a_log.numel()));
    for (size_t i = 0; i < A_.size(); ++i) A_[i] = -std::exp(a_log.f32()[i]);
  }

  std::string describe() const override { return mamba1_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba1_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override { run(x, y, pk, s); }
  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    Packing pk;
    for (int64_t i = 0; i <= n; ++i) pk.cu_seqlens.push_back(i);
    run(x, y, pk, s);
  }

 private:
  int64_t xbc_dim() const { return c_.dt_rank + 2 * c_.d_state; }
  const float* bias_or_null(const char* name) const { return p_.count(name) ? p_.at(name).f32() : nullptr; }

  void run(const float* x, float* y, const Packing& pk, const StateBatch& s) {
    const int64_t T = pk.n_tokens(), DI = c_.d_inner, N = c_.d_state, R = c_.dt_rank, W = c_.d_conv;
    // xz: [T, 2·DI], x in the first half (replaced in place by u), z in the second.
    xz_.resize(static_cast<size_t>(T * 2 * DI));
    linear_fwd(xz_.data(), x, p_.at("in_proj.weight").f32(), bias_or_null("in_proj.bias"), T, d_model_, 2 * DI);
    std::vector<float*> ssm(static_cast<size_t>(pk.n_seqs()));
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      float* xi = xz_.data() + pk.start(i) * 2 * DI;
      causal_conv1d_fwd(xi, 2 * DI, xi, 2 * DI, pk.len(i), DI, p_.at("conv1d.weight").f32(), bias_or_null("conv1d.bias"),
                        W, s.at(kConv, i), true);
      ssm[size_t(i)] = s.at(kSsm, i);
    }
    // dbc: [T, R + 2N] = [δ | B | C]; delta: [T, DI] = softplus(dt_proj(δ)).
    dbc_.resize(static_cast<size_t>(T * xbc_dim()));
    linear_fwd(dbc_.data(), xz_.data(), p_.at("x_proj.weight").f32(), nullptr, T, DI, xbc_dim(), 2 * DI);
    if (c_.bcdt_rmsnorm) {
      const float eps = float(c_.bcdt_rms_eps);
      const float* w_dt = c_.bcdt_norm_weight ? p_.at("dt_layernorm.weight").f32() : nullptr;
      const float* w_b = c_.bcdt_norm_weight ? p_.at("b_layernorm.weight").f32() : nullptr;
      const float* w_c = c_.bcdt_norm_weight ? p_.at("c_layernorm.weight").f32() : nullptr;
#pragma omp parallel for if (T * xbc_dim() > kParallelWork)
      for (int64_t t = 0; t < T; ++t) {
        float* row = dbc_.data() + t * xbc_dim();
        rms_normalize(row, R, eps, w_dt);
        rms_normalize(row + R, N, eps, w_b);
        rms_normalize(row + R + N, N, eps, w_c);
      }
    }
    delta_.resize(static_cast<size_t>(T * DI));
    linear_fwd(delta_.data(), dbc_.data(), p_.at("dt_proj.weight").f32(), p_.at("dt_proj.bias").f32(), T, R, DI,
               xbc_dim());
    float* delta = delta_.data();
#pragma omp parallel for simd if (T * DI > kParallelWork)
    for (int64_t k = 0; k < T * DI; ++k) delta[k] = softplus_approx(delta[k]);
    const SelectiveScanInputs in{xz_.data(), 2 * DI, delta_.data(), DI, dbc_.data() + R, dbc_.data() + R + N,
                                 xbc_dim(), A_.data(), p_.at("D").f32()};
    ys_.resize(static_cast<size_t>(T * DI));
    selective_scan(DI, N, in, pk.cu_seqlens.data(), pk.n_seqs(), ssm.data(), ys_.data(), DI);
    silu_gate_fwd(ys_.data(), ys_.data(), xz_.data() + DI, T, DI, DI, 2 * DI, DI);
    linear_fwd(y, ys_.data(), p_.at("out_proj.weight").f32(), bias_or_null("out_proj.bias"), T, DI, d_model_);
  }

  Mamba1Config c_;
  int64_t d_model_;
  ParamMap p_;
  std::vector<float> A_;                        // −exp(A_log) [DI, N]
  std::vector<float> xz_, dbc_, delta_, ys_;  // scratch, reused across calls
};

}  // namespace

std::unique_ptr<Layer> make_mamba1(const Mamba1Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba1Layer>(c, d_model, std::move(p));
}

}  // namespace m3::cpu
