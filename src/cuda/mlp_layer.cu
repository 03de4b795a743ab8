// GatedMLP on the device (spec/model.md §3), as cpu/mlp_layer.cpp: fc1 → [y | gate] →
// y ⊙ silu(gate) (written over y: silu_gate_fwd is element-wise) → fc2.
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

}  // namespace

std::unique_ptr<Layer> make_gated_mlp(Context& ctx, int64_t d_model, int64_t hidden, ParamMap p) {
  return std::make_unique<GatedMlpLayer>(ctx, d_model, hidden, p);
}

}  // namespace m3::cuda
