// Mixture of experts: parameters under each family's names (transformers' GraniteMoeHybridMoE,
// NemotronHMoE and JambaSparseMoeBlock).
#include <cmath>
#include <cstdio>
#include <string>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> moe_param_specs(const MoeConfig& c, int64_t d_model, int64_t n_layer) {
  const int64_t E = c.n_experts, I = c.expert_hidden, S = c.shared_hidden;
  const float rescale = std::sqrt(float(n_layer));
  std::vector<ParamSpec> p;
  if (c.family == MoeConfig::Family::Granite) {
    p.push_back({"router.layer.weight", {E, d_model}, init::linear_uniform(d_model)});
    p.push_back({"input_linear.weight", {E, 2 * I, d_model}, init::linear_uniform(d_model)});
    p.push_back({"output_linear.weight", {E, d_model, I}, init::linear_uniform(I, rescale)});
    if (S > 0) {
      p.push_back({"shared_mlp.input_linear.weight", {2 * S, d_model}, init::linear_uniform(d_model)});
      p.push_back({"shared_mlp.output_linear.weight", {d_model, S}, init::linear_uniform(S, rescale)});
    }
    return p;
  }
  if (c.family == MoeConfig::Family::Jamba) {
    p.push_back({"router.weight", {E, d_model}, init::linear_uniform(d_model)});
    for (int64_t e = 0; e < E; ++e) {
      const std::string x = "experts." + std::to_string(e) + ".";
      p.push_back({x + "gate_up_proj.weight", {2 * I, d_model}, init::linear_uniform(d_model)});
      p.push_back({x + "down_proj.weight", {d_model, I}, init::linear_uniform(I, rescale)});
    }
    return p;
  }
  p.push_back({"gate.weight", {E, d_model}, init::normal(0.02f)});
  p.push_back({"gate.e_score_correction_bias", {E}, init::zeros()});
  for (int64_t e = 0; e < E; ++e) {
    const std::string x = "experts." + std::to_string(e) + ".";
    p.push_back({x + "up_proj.weight", {I, d_model}, init::linear_uniform(d_model)});
    p.push_back({x + "down_proj.weight", {d_model, I}, init::linear_uniform(I, rescale)});
  }
  if (S > 0) {
    p.push_back({"shared_experts.up_proj.weight", {S, d_model}, init::linear_uniform(d_model)});
    p.push_back({"shared_experts.down_proj.weight", {d_model, S}, init::linear_uniform(S, rescale)});
  }
  return p;
}

std::string moe_describe(const MoeConfig& c) {
  const char* family = c.family == MoeConfig::Family::Granite  ? "granite"
                       : c.family == MoeConfig::Family::Jamba ? "jamba"
                                                              : "nemotron_h";
  std::string s = std::string("MoE ") + family + " " +
                  std::to_string(c.n_experts) + " experts top-" + std::to_string(c.top_k) + " hidden " +
                  std::to_string(c.expert_hidden);
  if (c.shared_hidden > 0) s += " shared " + std::to_string(c.shared_hidden);
  if (c.family == MoeConfig::Family::NemotronH) {
    char num[32];
    std::snprintf(num, sizeof num, "%g", c.routed_scaling_factor);
    s += " groups " + std::to_string(c.n_group) + " topk_group " + std::to_string(c.topk_group) +
         (c.norm_topk_prob ? " renormalised" : "") + " scale " + num;
  }
  return s;
}

}  // namespace m3
