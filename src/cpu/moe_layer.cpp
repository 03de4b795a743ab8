// The MoE layer on the CPU (transformers' GraniteMoeHybridMoE, NemotronHMoE, JambaSparseMoeBlock):
// router GEMM, routing (cpu/moe.h), then each expert once over the block of the tokens routed to
// it (gathered, one GEMM per projection, scattered back with their weights), plus the shared
// experts over every token.
#include <vector>

#include "cpu/layers.h"
#include "cpu/moe.h"
#include "cpu/ops.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

class MoeLayer final : public Layer {
 public:
  MoeLayer(const MoeConfig& c, int64_t d_model, ParamMap p) : c_(c), d_(d_model), p_(std::move(p)) {
    const bool granite = c_.family == MoeConfig::Family::Granite, jamba = c_.family == MoeConfig::Family::Jamba;
    const int64_t I = c_.expert_hidden;
    router_ = p_.at(granite ? "router.layer.weight" : jamba ? "router.weight" : "gate.weight").f32();
    score_bias_ = granite || jamba ? nullptr : p_.at("gate.e_score_correction_bias").f32();
    for (int64_t e = 0; e < c_.n_experts; ++e) {
      if (jamba) {
        const std::string x = "experts." + std::to_string(e) + ".";
        experts_.push_back({p_.at(x + "gate_up_proj.weight").f32(), nullptr, p_.at(x + "down_proj.weight").f32(),
                            nullptr, I, true});
      } else if (granite) {
        experts_.push_back({p_.at("input_linear.weight").f32() + e * 2 * I * d_, nullptr,
                            p_.at("output_linear.weight").f32() + e * d_ * I, nullptr, I, true});
      } else {
        const std::string x = "experts." + std::to_string(e) + ".";
        experts_.push_back({p_.at(x + "up_proj.weight").f32(), nullptr, p_.at(x + "down_proj.weight").f32(), nullptr,
                            I, false});
      }
    }
    if (c_.shared_hidden > 0) {
      const char* pre = granite ? "shared_mlp." : "shared_experts.";
      const std::string in = std::string(pre) + (granite ? "input_linear.weight" : "up_proj.weight");
      const std::string out = std::string(pre) + (granite ? "output_linear.weight" : "down_proj.weight");
      shared_ = {p_.at(in).f32(), nullptr, p_.at(out).f32(), nullptr, c_.shared_hidden, granite};
    }
  }
  std::string describe() const override { return moe_describe(c_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override { run(x, y, pk.n_tokens()); }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { run(x, y, n); }

 private:
  void run(const float* x, float* y, int64_t T) {
    const int64_t E = c_.n_experts, K = c_.top_k;
    logits_.resize(size_t(T * E));
    linear_fwd(logits_.data(), x, router_, nullptr, T, d_, E);
    idx_.resize(size_t(T * K));
    w_.resize(size_t(T * K));
    moe_route(c_, logits_.data(), score_bias_, T, idx_.data(), w_.data());
    // Counting sort of the (token, slot) pairs by expert.
    start_.assign(size_t(E + 1), 0);
    for (int64_t i = 0; i < T * K; ++i) ++start_[size_t(idx_[size_t(i)] + 1)];
    for (int64_t e = 0; e < E; ++e) start_[size_t(e + 1)] += start_[size_t(e)];
    order_.resize(size_t(T * K));
    fill_ = start_;
    for (int64_t i = 0; i < T * K; ++i) order_[size_t(fill_[size_t(idx_[size_t(i)])]++)] = int32_t(i);
    if (shared_.in)
      ffn_rows(shared_, x, T, d_, y, h_);
    else
      std::fill(y, y + T * d_, 0.0f);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = start_[size_t(e + 1)] - start_[size_t(e)];
      if (n == 0) continue;
      const int32_t* rows = order_.data() + start_[size_t(e)];
      xe_.resize(size_t(n * d_));
      ye_.resize(size_t(n * d_));
      for (int64_t r = 0; r < n; ++r) std::copy_n(x + (rows[r] / K) * d_, d_, xe_.data() + r * d_);
      ffn_rows(experts_[size_t(e)], xe_.data(), n, d_, ye_.data(), h_);
      for (int64_t r = 0; r < n; ++r) {
        const float wt = w_[size_t(rows[r])];
        float* yt = y + (rows[r] / K) * d_;
        const float* ys = ye_.data() + r * d_;
#pragma omp simd
        for (int64_t k = 0; k < d_; ++k) yt[k] += wt * ys[k];
      }
    }
  }

  MoeConfig c_;
  int64_t d_;
  ParamMap p_;
  const float *router_, *score_bias_;
  std::vector<FfnWeights> experts_;
  FfnWeights shared_;
  std::vector<float> logits_, w_, xe_, ye_, h_;
  std::vector<int32_t> idx_, order_;
  std::vector<int64_t> start_, fill_;
};

}  // namespace

std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<MoeLayer>(c, d_model, std::move(p));
}

}  // namespace m3::cpu
