// GatedMLP on the CPU (spec/model.md §3): fc1 → [y | gate] → y ⊙ silu(gate) → fc2; and the
// hybrids' MLP (transformers' NemotronHMLP): up_proj → relu² → down_proj.
#include <vector>

#include "cpu/layers.h"
#include "cpu/moe.h"
#include "cpu/ops.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

class GatedMlpLayer final : public Layer {
 public:
  GatedMlpLayer(int64_t d_model, int64_t hidden, ParamMap p)
      : d_(d_model), h_(hidden), p_(std::move(p)), fc1_(p_.at("fc1.weight").f32()), fc2_(p_.at("fc2.weight").f32()) {}
  std::string describe() const override { return gated_mlp_describe(h_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override { run(x, y, pk.n_tokens()); }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { run(x, y, n); }

 private:
  void run(const float* x, float* y, int64_t T) {
    a_.resize(size_t(T * 2 * h_));
    linear_fwd(a_.data(), x, fc1_, nullptr, T, d_, 2 * h_);
    silu_gate_fwd(a_.data(), a_.data(), a_.data() + h_, T, h_, 2 * h_, 2 * h_, 2 * h_);
    linear_fwd(y, a_.data(), fc2_, nullptr, T, h_, d_, 2 * h_, d_);
  }
  int64_t d_, h_;
  ParamMap p_;
  const float *fc1_, *fc2_;  // p_'s weights
  std::vector<float> a_;
};

class MlpLayer final : public Layer {
 public:
  MlpLayer(const MlpConfig& c, int64_t d_model, ParamMap p) : c_(c), d_(d_model), p_(std::move(p)) {
    auto get = [&](const char* name) { return p_.count(name) ? p_.at(name).f32() : nullptr; };
    w_ = {get("up_proj.weight"), get("up_proj.bias"), get("down_proj.weight"), get("down_proj.bias"), c_.hidden, false};
  }
  std::string describe() const override { return mlp_describe(c_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override {
    ffn_rows(w_, x, pk.n_tokens(), d_, y, h_);
  }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { ffn_rows(w_, x, n, d_, y, h_); }

 private:
  MlpConfig c_;
  int64_t d_;
  ParamMap p_;
  FfnWeights w_;
  std::vector<float> h_;
};

}  // namespace

std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<MlpLayer>(c, d_model, std::move(p));
}

std::unique_ptr<Layer> make_gated_mlp(int64_t d_model, int64_t hidden, ParamMap p) {
  return std::make_unique<GatedMlpLayer>(d_model, hidden, std::move(p));
}

}  // namespace m3::cpu
