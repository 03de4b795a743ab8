// GatedMLP: parameters (spec/model.md §3).
#include <cmath>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> gated_mlp_param_specs(int64_t d_model, int64_t hidden, int64_t n_layer) {
  return {{"fc1.weight", {2 * hidden, d_model}, init::linear_uniform(d_model)},
          {"fc2.weight", {d_model, hidden}, init::linear_uniform(hidden, std::sqrt(float(n_layer)))}};
}

std::string gated_mlp_describe(int64_t hidden) { return "GatedMLP hidden " + std::to_string(hidden); }

}  // namespace m3
