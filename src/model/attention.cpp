// MHA mixer: parameters and decode state (spec/model.md §4).
#include <cmath>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> attention_param_specs(const AttnConfig& c, int64_t d_model, int64_t n_layer) {
  const int64_t in_dim = c.qkv_dim() + c.mlp_dim, out_in = c.num_heads * c.head_dim + c.mlp_dim / 2;
  std::vector<ParamSpec> p = {{"in_proj.weight", {in_dim, d_model}, init::linear_uniform(d_model)}};
  if (c.qkv_proj_bias) p.push_back({"in_proj.bias", {in_dim}, init::zeros()});
  if (c.d_conv > 0) {
    p.push_back({"conv1d.weight", {c.qkv_dim(), 1, c.d_conv}, init::linear_uniform(c.d_conv)});
    p.push_back({"conv1d.bias", {c.qkv_dim()}, init::linear_uniform(c.d_conv)});
  }
  p.push_back({"out_proj.weight", {d_model, out_in}, init::linear_uniform(out_in, std::sqrt(float(n_layer)))});
  if (c.out_proj_bias) p.push_back({"out_proj.bias", {d_model}, init::zeros()});
  return p;
}

LayerStateSpec attention_state_spec(const AttnConfig& c) {
  const int64_t kv = c.num_heads_kv * c.head_dim;
  LayerStateSpec s = {{"kv_k", {0, kv}, true}, {"kv_v", {0, kv}, true}};
  if (c.d_conv > 0) s.push_back({"conv", {c.qkv_dim(), c.d_conv}});
  return s;
}

}  // namespace m3
