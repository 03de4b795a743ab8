// Zamba2's hybrid layer on the CPU (transformers' Zamba2HybridLayer). Input rows [h | e]: the
// residual stream h and the token embeddings e, 2·d wide. The shared transformer block (this use's
// adapters already folded into its weights, io/hf_hybrids.cpp):
//   a = attn(RMSNorm_2d([h | e]))        (in 2·d, out d; no residual)
//   f = fc2(gelu(g) ⊙ u),  [g | u] = fc1(RMSNorm_d(a))
//   t = linear · f
// then the Mamba-2 mixer on RMSNorm_d(h + t) (its input norm: the block's); t reaches the residual
// only through the mixer (Zamba2MambaDecoderLayer adds the mixer's output to h, not to h + t).
#include <vector>

#include "cpu/layers.h"
#include "cpu/ops.h"
#include "model/layer_parts.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

class Zamba2HybridLayer final : public Layer {
 public:
  Zamba2HybridLayer(const ModelConfig& c, ParamMap p, ParamMap ssm_norm)
      : c_(c), d_(c.d_model), I_(c.zamba2_mlp_hidden), eps_(float(c.norm_eps)), p_(std::move(p)),
        ssm_norm_(std::move(ssm_norm)) {
    attn_ = make_attention(c.attn, 2 * d_, d_, params_under(p_, "attn."));
    ssm_ = make_mamba2(std::get<Mamba2Config>(c.ssm), d_, params_under(p_, "ssm."));
    n_attn_buffers_ = attn_->state_spec().size();
    w_ = {p_.at("shared_norm.weight").f32(), p_.at("ff_norm.weight").f32(), p_.at("mlp.fc1.weight").f32(),
          p_.at("mlp.fc2.weight").f32(), p_.at("linear.weight").f32(), ssm_norm_.at("weight").f32()};
  }
  std::string describe() const override { return zamba2_hybrid_describe(c_); }
  LayerStateSpec state_spec() const override { return zamba2_hybrid_state_spec(c_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    run(x, y, pk.n_tokens(), s, [&](Layer& l, const float* in, float* out, const StateBatch& ls) {
      l.forward(in, out, pk, ls);
    });
  }
  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    run(x, y, n, s, [&](Layer& l, const float* in, float* out, const StateBatch& ls) { l.step(in, out, n, ls); });
  }

 private:
  template <class Run>
  void run(const float* x, float* y, int64_t T, const StateBatch& s, Run&& run_layer) {
    const int64_t d = d_, I = I_;
    // The attention's state buffers first, then the mixer's (zamba2_hybrid_state_spec).
    const StateBatch sa = state_buffers(s, 0, n_attn_buffers_);
    const StateBatch sm = state_buffers(s, n_attn_buffers_, s.buf.size() - n_attn_buffers_);
    cat_.resize(size_t(T * 2 * d));
    rmsnorm_fwd(cat_.data(), x, w_.shared_norm, T, 2 * d, eps_);
    a_.resize(size_t(T * d));
    run_layer(*attn_, cat_.data(), a_.data(), sa);
    rmsnorm_fwd(a_.data(), a_.data(), w_.ff_norm, T, d, eps_);
    g_.resize(size_t(T * 2 * I));
    linear_fwd(g_.data(), a_.data(), w_.fc1, nullptr, T, d, 2 * I);
    // transformers' ACT2FN["gelu"]: the exact (erf) GELU of the gate half, times the up half.
    gelu_gate_fwd(g_.data(), g_.data(), g_.data() + I, T, I, 2 * I, 2 * I, 2 * I);
    linear_fwd(a_.data(), g_.data(), w_.fc2, nullptr, T, I, d, 2 * I, d);
    u_.resize(size_t(T * d));
    linear_fwd(u_.data(), a_.data(), w_.linear, nullptr, T, d, d);
#pragma omp parallel for if (T * d > kParallelWork)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < d; ++i) u_[size_t(t * d + i)] += x[t * 2 * d + i];
    rmsnorm_fwd(u_.data(), u_.data(), w_.ssm_norm, T, d, eps_);
    run_layer(*ssm_, u_.data(), y, sm);
  }

  ModelConfig c_;
  int64_t d_, I_;
  float eps_;
  ParamMap p_, ssm_norm_;
  std::unique_ptr<Layer> attn_, ssm_;
  size_t n_attn_buffers_ = 0;
  struct {
    const float *shared_norm, *ff_norm, *fc1, *fc2, *linear, *ssm_norm;
  } w_;  // p_'s and ssm_norm_'s data
  std::vector<float> cat_, a_, g_, u_;
};

}  // namespace

std::unique_ptr<Layer> make_zamba2_hybrid(const ModelConfig& c, ParamMap p, ParamMap ssm_norm) {
  return std::make_unique<Zamba2HybridLayer>(c, std::move(p), std::move(ssm_norm));
}

}  // namespace m3::cpu
