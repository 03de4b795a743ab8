// Mamba-3 mixer: parameters and decode state (spec/mamba3.md §2, §5).
#include <cmath>
#include <cstdio>
#include <string>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

std::vector<ParamSpec> mamba3_param_specs(const Mamba3Config& c, int64_t d_model, int64_t n_layer) {
  const int64_t H = c.nheads, R = c.rank(), N = c.d_state, P = c.headdim;
  std::vector<ParamSpec> p = {
      {"in_proj.weight", {c.in_proj_dim(), d_model}, init::linear_uniform(d_model)},
      {"dt_bias", {H}, init::dt_bias(c.dt_min, c.dt_max, c.dt_init_floor)},
      {"B_bias", {H, R, N}, init::ones()},
      {"C_bias", {H, R, N}, init::ones()},
      {"B_norm.weight", {N}, init::ones()},
      {"C_norm.weight", {N}, init::ones()},
      {"D", {H}, init::ones()},
  };
  if (c.is_mimo) {
    p.push_back({"mimo_x", {H, R, P}, init::constant(1.0f / float(R))});
    p.push_back({"mimo_z", {H, R, P}, init::ones()});
    p.push_back({"mimo_o", {H, R, P}, init::constant(1.0f / float(R))});
  }
  if (c.is_outproj_norm) p.push_back({"norm.weight", {c.d_inner}, init::ones()});
  p.push_back({"out_proj.weight", {d_model, c.d_inner}, init::linear_uniform(c.d_inner, std::sqrt(float(n_layer)))});
  return p;
}

LayerStateSpec mamba3_state_spec(const Mamba3Config& c) {
  const int64_t H = c.nheads, R = c.rank(), N = c.d_state, P = c.headdim, S = c.n_angles;
  return {{"angle", {H, S}}, {"ssm", {H, P, N}}, {"k", {R, H, N}}, {"v", {H, P}}};
}

// Every hyperparameter the math reads (spec §1; dt_min, dt_max and dt_init_floor only initialise).
std::string mamba3_describe(const Mamba3Config& c) {
  char a_floor[32];
  std::snprintf(a_floor, sizeof a_floor, "%g", c.A_floor);
  std::string s = "Mamba3 " + std::string(c.is_mimo ? "MIMO rank " + std::to_string(c.mimo_rank) : "SISO") +
                  " heads " + std::to_string(c.nheads) + "x" + std::to_string(c.headdim) + " d_state " +
                  std::to_string(c.d_state) + " groups " + std::to_string(c.ngroups) + " rope_fraction " +
                  (c.rope_fraction == 1.0 ? "1.0" : "0.5") + " (" + std::to_string(c.n_angles) + " angles)" +
                  " A_floor " + a_floor + " chunk " + std::to_string(c.chunk_size);
  if (c.is_outproj_norm) s += " outproj_norm";
  return s;
}

}  // namespace m3
