// GatedMLP on the device (spec/model.md §3), as cpu/mlp_layer.cpp: fc1 → [y | gate] →
// y ⊙ silu(gate) (written over y: silu_gate_fwd is element-wise) → fc2; and the hybrids' MLP
// (transformers' NemotronHMLP, cpu::ffn_rows without gate): up_proj → relu² → down_proj.
#include <string>

#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/weights.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

class GatedMlpLayer final : public Layer {
 public:
  GatedMlpLayer(Context& ctx, int64_t d_model, int64_t hidden, const ParamMap& p)
      : ctx_(ctx),
        d_(d_model),
        h_(hidden),
        fc1_(upload_matrix(ctx, p.at("fc1.weight"))),
        fc2_(upload_matrix(ctx, p.at("fc2.weight"))) {}

  // The CPU layer's line, character for character.
  std::string describe() const override { return gated_mlp_describe(h_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override { run(x, y, pk.n_tokens()); }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { run(x, y, n); }

 private:
  void run(const float* x, float* y, int64_t T) {
    if (T == 0) return;
    float* a = a_.get(ctx_, size_t(T * 2 * h_));
    linear_fwd(ctx_, a, x, fc1_, nullptr, T, d_, 2 * h_);
    silu_gate_fwd(ctx_, a, a, a + h_, T, h_, 2 * h_, 2 * h_, 2 * h_);
    linear_fwd(ctx_, y, a, fc2_, nullptr, T, h_, d_, 2 * h_, d_);
  }

  Context& ctx_;
  int64_t d_, h_;
  Matrix fc1_, fc2_;
  Scratch<float> a_;  // [T, 2·hidden]: fc1's output, then the gated half in its first hidden columns
};

class MlpLayer final : public Layer {
 public:
  MlpLayer(Context& ctx, const MlpConfig& c, int64_t d_model, const ParamMap& p)
      : ctx_(ctx),
        c_(c),
        d_(d_model),
        up_(upload_matrix(ctx, p.at("up_proj.weight"))),
        down_(upload_matrix(ctx, p.at("down_proj.weight"))) {
    if (p.count("up_proj.bias")) up_bias_ = upload_f32(ctx, p.at("up_proj.bias"));
    if (p.count("down_proj.bias")) down_bias_ = upload_f32(ctx, p.at("down_proj.bias"));
  }

  std::string describe() const override { return mlp_describe(c_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override { run(x, y, pk.n_tokens()); }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { run(x, y, n); }

 private:
  void run(const float* x, float* y, int64_t T) {
    if (T == 0) return;
    const int64_t H = c_.hidden;
    float* h = h_.get(ctx_, size_t(T * H));
    linear_fwd(ctx_, h, x, up_, up_bias_.get(), T, d_, H);
    relu2_fwd(ctx_, h, T * H);
    linear_fwd(ctx_, y, h, down_, down_bias_.get(), T, H, d_);
  }

  Context& ctx_;
  MlpConfig c_;
  int64_t d_;
  Matrix up_, down_;
  std::shared_ptr<float> up_bias_, down_bias_;  // null: absent
  Scratch<float> h_;                            // [T, hidden]
};

}  // namespace

std::unique_ptr<Layer> make_mlp(Context& ctx, const MlpConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<MlpLayer>(ctx, c, d_model, p);
}

std::unique_ptr<Layer> make_gated_mlp(Context& ctx, int64_t d_model, int64_t hidden, ParamMap p) {
  return std::make_unique<GatedMlpLayer>(ctx, d_model, hidden, p);
}

}  // namespace m3::cuda
