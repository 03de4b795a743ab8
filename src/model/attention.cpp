// MHA mixer: parameters and decode state (spec/model.md §4).
#include <cmath>
#include <cstdio>
#include <string>

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

// Every attn_cfg option (spec/model.md §4).
std::string attention_describe(const AttnConfig& c) {
  char num[64];
  std::string s = "MHA heads " + std::to_string(c.num_heads) + " kv_heads " + std::to_string(c.num_heads_kv) +
                  " head_dim " + std::to_string(c.head_dim) + (c.causal ? " causal" : " non-causal");
  if (c.softmax_scale > 0) {
    std::snprintf(num, sizeof num, "%g", c.softmax_scale);
    s += " softmax_scale " + std::string(num);
  }
  if (c.rotary_emb_dim) {
    std::snprintf(num, sizeof num, "%g", c.rotary_emb_base);
    s += " rotary " + std::to_string(c.rotary_emb_dim) + " base " + num +
         (c.rotary_emb_interleaved ? " interleaved" : " rotate-half");
  }
  if (c.d_conv) s += " d_conv " + std::to_string(c.d_conv);
  if (c.mlp_dim) s += " mlp_dim " + std::to_string(c.mlp_dim);
  if (c.qkv_proj_bias) s += " qkv_proj_bias";
  if (c.out_proj_bias) s += " out_proj_bias";
  return s;
}

}  // namespace m3
