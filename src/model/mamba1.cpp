// Mamba-1 mixer: parameters and decode state (spec/mamba1.md §1, §2, §4). Parameters are listed
// in the reference module's registration order (in_proj, conv1d, x_proj, dt_proj, A_log, D,
// out_proj), which is also the order `m3 init` draws them in.
#include <cmath>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

namespace {

// S4D-real: A_log[c, n] = log(n + 1) in every row of N entries.
InitFn s4d_real_a_log(int64_t N) {
  return [N](float* p, int64_t n, std::mt19937_64&) {
    for (int64_t i = 0; i < n; ++i) p[i] = std::log(float(i % N + 1));
  };
}

}  // namespace

std::vector<ParamSpec> mamba1_param_specs(const Mamba1Config& c, int64_t d_model, int64_t n_layer) {
  const int64_t DI = c.d_inner, N = c.d_state, R = c.dt_rank, W = c.d_conv;
  // dt_proj.weight: U(±std) for dt_init "random" (the Linear default over fan_in R, times dt_scale),
  // else std everywhere; std = R^−½·dt_scale.
  const float dt_std = float(c.dt_scale / std::sqrt(double(R)));
  InitFn dt_weight = c.dt_init_random ? init::linear_uniform(R, float(1.0 / c.dt_scale)) : init::constant(dt_std);
  std::vector<ParamSpec> p = {{"in_proj.weight", {2 * DI, d_model}, init::linear_uniform(d_model)}};
  if (c.bias) p.push_back({"in_proj.bias", {2 * DI}, init::zeros()});
  // Conv1d keeps PyTorch's default for weight and bias alike (fan_in = W: one input channel per group).
  p.push_back({"conv1d.weight", {DI, 1, W}, init::linear_uniform(W)});
  if (c.conv_bias) p.push_back({"conv1d.bias", {DI}, init::linear_uniform(W)});
  p.push_back({"x_proj.weight", {R + 2 * N, DI}, init::linear_uniform(DI)});
  if (c.bcdt_norm_weight) {  // Jamba's norms of δ, B and C (spec/mamba1.md §5)
    p.push_back({"dt_layernorm.weight", {R}, init::ones()});
    p.push_back({"b_layernorm.weight", {N}, init::ones()});
    p.push_back({"c_layernorm.weight", {N}, init::ones()});
  }
  p.push_back({"dt_proj.weight", {DI, R}, dt_weight});
  p.push_back({"dt_proj.bias", {DI}, init::dt_bias(c.dt_min, c.dt_max, c.dt_init_floor)});
  p.push_back({"A_log", {DI, N}, s4d_real_a_log(N)});
  p.push_back({"D", {DI}, init::ones()});
  p.push_back({"out_proj.weight", {d_model, DI}, init::linear_uniform(DI, std::sqrt(float(n_layer)))});
  if (c.bias) p.push_back({"out_proj.bias", {d_model}, init::zeros()});
  return p;
}

LayerStateSpec mamba1_state_spec(const Mamba1Config& c) {
  return {{"conv", {c.d_inner, c.d_conv}}, {"ssm", {c.d_inner, c.d_state}}};
}

std::string mamba1_describe(const Mamba1Config& c) {
  return "Mamba1 d_inner " + std::to_string(c.d_inner) + " d_state " + std::to_string(c.d_state) + " d_conv " +
         std::to_string(c.d_conv) + " dt_rank " + std::to_string(c.dt_rank) + (c.bias ? " bias" : "") +
         (c.conv_bias ? "" : " no-conv-bias") + (c.bcdt_rmsnorm ? " dt/B/C-RMSNorm" : "") +
         (c.bcdt_norm_weight ? " (weighted)" : "");
}

}  // namespace m3
