// GatedMLP (spec/model.md §3) and the hybrids' relu² MLP (transformers' NemotronHMLP): parameters.
#include <cmath>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> gated_mlp_param_specs(int64_t d_model, int64_t hidden, int64_t n_layer) {
  return {{"fc1.weight", {2 * hidden, d_model}, init::linear_uniform(d_model)},
          {"fc2.weight", {d_model, hidden}, init::linear_uniform(hidden, std::sqrt(float(n_layer)))}};
}

std::string gated_mlp_describe(int64_t hidden) { return "GatedMLP hidden " + std::to_string(hidden); }

std::vector<ParamSpec> mlp_param_specs(const MlpConfig& c, int64_t d_model, int64_t n_layer) {
  std::vector<ParamSpec> p = {{"up_proj.weight", {c.hidden, d_model}, init::linear_uniform(d_model)}};
  if (c.bias) p.push_back({"up_proj.bias", {c.hidden}, init::zeros()});
  p.push_back({"down_proj.weight", {d_model, c.hidden}, init::linear_uniform(c.hidden, std::sqrt(float(n_layer)))});
  if (c.bias) p.push_back({"down_proj.bias", {d_model}, init::zeros()});
  return p;
}

std::string mlp_describe(const MlpConfig& c) {
  return "MLP relu2 hidden " + std::to_string(c.hidden) + (c.bias ? " bias" : "");
}

}  // namespace m3
