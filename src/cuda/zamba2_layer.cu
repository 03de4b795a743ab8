// Zamba2's hybrid layer on the device, the pipeline of cpu/zamba2_layer.cpp (whose comment gives
// the math): RMSNorm_2d of the [h | e] rows → attention (2·d → d) → RMSNorm_d → fc1 → gelu(g) ⊙ u
// → fc2 → linear = t; then the Mamba-2 mixer on RMSNorm_d(h + t).
#include <string>

#include "cuda/check.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/weights.h"
#include "model/layer_parts.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

class Zamba2HybridLayer final : public Layer {
 public:
  Zamba2HybridLayer(Context& ctx, const ModelConfig& c, const ParamMap& p, const ParamMap& ssm_norm)
      : ctx_(ctx),
        c_(c),
        d_(c.d_model),
        I_(c.zamba2_mlp_hidden),
        eps_(float(c.norm_eps)),
        attn_(make_attention(ctx, c.attn, 2 * c.d_model, c.d_model, params_under(p, "attn."))),
        ssm_(make_mamba2(ctx, std::get<Mamba2Config>(c.ssm), c.d_model, params_under(p, "ssm."))),
        n_attn_buffers_(attn_->state_spec().size()),
        shared_norm_(upload_f32(ctx, p.at("shared_norm.weight"))),
        ff_norm_(upload_f32(ctx, p.at("ff_norm.weight"))),
        ssm_norm_(upload_f32(ctx, ssm_norm.at("weight"))),
        fc1_(upload_matrix(ctx, p.at("mlp.fc1.weight"))),
        fc2_(upload_matrix(ctx, p.at("mlp.fc2.weight"))),
        linear_(upload_matrix(ctx, p.at("linear.weight"))) {}

  // The CPU layer's line, character for character.
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
    if (T == 0) return;
    const int64_t d = d_, I = I_;
    // The attention's state buffers first, then the mixer's (zamba2_hybrid_state_spec).
    const StateBatch sa = state_buffers(s, 0, n_attn_buffers_);
    const StateBatch sm = state_buffers(s, n_attn_buffers_, s.buf.size() - n_attn_buffers_);
    float* cat = cat_.get(ctx_, size_t(T * 2 * d));
    rmsnorm_fwd(ctx_, cat, x, shared_norm_.get(), T, 2 * d, eps_);
    float* a = a_.get(ctx_, size_t(T * d));
    run_layer(*attn_, cat, a, sa);
    rmsnorm_fwd(ctx_, a, a, ff_norm_.get(), T, d, eps_);
    float* g = g_.get(ctx_, size_t(T * 2 * I));
    linear_fwd(ctx_, g, a, fc1_, nullptr, T, d, 2 * I);
    gelu_gate_fwd(ctx_, g, g, g + I, T, I, 2 * I, 2 * I, 2 * I);  // over the gate half [g | u]
    linear_fwd(ctx_, a, g, fc2_, nullptr, T, I, d, 2 * I, d);
    float* t = t_.get(ctx_, size_t(T * d));
    linear_fwd(ctx_, t, a, linear_, nullptr, T, d, d);
    // h (the first d columns of x's rows) into a contiguous array, h += t, then the mixer's norm.
    float* h = h_.get(ctx_, size_t(T * d));
    const size_t row = size_t(d) * sizeof(float);
    M3_CUDA_CHECK(cudaMemcpy2DAsync(h, row, x, 2 * row, row, size_t(T), cudaMemcpyDeviceToDevice, ctx_.stream));
    add_norm_fwd(ctx_, h, t, a, ssm_norm_.get(), nullptr, T, d, eps_);
    run_layer(*ssm_, a, y, sm);
  }

  Context& ctx_;
  ModelConfig c_;
  int64_t d_, I_;
  float eps_;
  std::unique_ptr<Layer> attn_, ssm_;
  size_t n_attn_buffers_;
  std::shared_ptr<float> shared_norm_, ff_norm_, ssm_norm_;
  Matrix fc1_, fc2_, linear_;
  // [T, 2·d] normed rows; [T, d] the attention's output, normed, then fc2's and the mixer's input;
  // [T, 2·I] fc1's output, gated in its first I columns; [T, d] linear's output; [T, d] h + t
  Scratch<float> cat_, a_, g_, t_, h_;
};

}  // namespace

std::unique_ptr<Layer> make_zamba2_hybrid(Context& ctx, const ModelConfig& c, ParamMap p, ParamMap ssm_norm) {
  return std::make_unique<Zamba2HybridLayer>(ctx, c, p, ssm_norm);
}

}  // namespace m3::cuda
