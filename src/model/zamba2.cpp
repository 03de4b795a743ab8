// Zamba2's hybrid layer (transformers' Zamba2HybridLayer): parameters and description.
#include <cmath>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> zamba2_hybrid_param_specs(const ModelConfig& c) {
  const int64_t d = c.d_model, I = c.zamba2_mlp_hidden, ctx = c.attn.num_heads * c.attn.head_dim;
  const float depth = std::sqrt(float(c.n_layer));
  std::vector<ParamSpec> p = {
      {"shared_norm.weight", {2 * d}, init::ones()},
      {"attn.in_proj.weight", {c.attn.qkv_dim(), 2 * d}, init::linear_uniform(2 * d)},
      {"attn.out_proj.weight", {d, ctx}, init::linear_uniform(ctx, depth)},
      {"ff_norm.weight", {d}, init::ones()},
      {"mlp.fc1.weight", {2 * I, d}, init::linear_uniform(d)},
      {"mlp.fc2.weight", {d, I}, init::linear_uniform(I, depth)},
      {"linear.weight", {d, d}, init::linear_uniform(d)}};
  for (ParamSpec& s : mamba2_param_specs(std::get<Mamba2Config>(c.ssm), d, c.n_layer)) {
    s.name = "ssm." + s.name;
    p.push_back(std::move(s));
  }
  return p;
}

LayerStateSpec zamba2_hybrid_state_spec(const ModelConfig& c) {
  LayerStateSpec s = attention_state_spec(c.attn);
  const LayerStateSpec m = mamba2_state_spec(std::get<Mamba2Config>(c.ssm));
  s.insert(s.end(), m.begin(), m.end());
  return s;
}

std::string zamba2_hybrid_describe(const ModelConfig& c) {
  return "Zamba2 shared block [" + attention_describe(c.attn) + " on [h | embeddings]; GELU-gated MLP hidden " +
         std::to_string(c.zamba2_mlp_hidden) + "; linear] into " + mamba2_describe(std::get<Mamba2Config>(c.ssm));
}

}  // namespace m3
