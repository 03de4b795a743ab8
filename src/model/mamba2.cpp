// Mamba-2 mixer: parameters and decode state (spec/mamba2.md §1, §2, §4). Parameters are listed
// in the reference module's registration order (in_proj, conv1d, dt_bias, A_log, D, norm,
// out_proj), which is also the order `m3 init` draws them in.
#include <cmath>
#include <string>

#include "model/init.h"
#include "model/specs.h"

namespace m3 {

namespace {

// A = U(A_init_range), stored as A_log = log(A) (so that −exp(A_log) = −A is the decay rate).
InitFn a_log_uniform(double lo, double hi) {
  return [lo, hi](float* p, int64_t n, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(lo, hi);
    for (int64_t i = 0; i < n; ++i) p[i] = float(std::log(u(rng)));
  };
}

}  // namespace

std::vector<ParamSpec> mamba2_param_specs(const Mamba2Config& c, int64_t d_model, int64_t n_layer) {
  const int64_t H = c.nheads, W = c.d_conv, CD = c.conv_dim();
  std::vector<ParamSpec> p = {{"in_proj.weight", {c.in_proj_dim(), d_model}, init::linear_uniform(d_model)}};
  if (c.bias) p.push_back({"in_proj.bias", {c.in_proj_dim()}, init::zeros()});
  // Conv1d keeps PyTorch's default for weight and bias alike (fan_in = W: one input channel per group).
  p.push_back({"conv1d.weight", {CD, 1, W}, init::linear_uniform(W)});
  if (c.conv_bias) p.push_back({"conv1d.bias", {CD}, init::linear_uniform(W)});
  p.push_back({"dt_bias", {H}, init::dt_bias(c.dt_min, c.dt_max, c.dt_init_floor)});
  p.push_back({"A_log", {H}, a_log_uniform(c.A_init_min, c.A_init_max)});
  p.push_back({"D", {c.D_has_hdim ? c.d_ssm : H}, init::ones()});
  if (c.rmsnorm) p.push_back({"norm.weight", {c.d_ssm}, init::ones()});
  p.push_back({"out_proj.weight", {d_model, c.d_inner}, init::linear_uniform(c.d_inner, std::sqrt(float(n_layer)))});
  if (c.bias) p.push_back({"out_proj.bias", {d_model}, init::zeros()});
  return p;
}

LayerStateSpec mamba2_state_spec(const Mamba2Config& c) {
  return {{"conv", {c.conv_dim(), c.d_conv}}, {"ssm", {c.nheads, c.headdim, c.d_state}}};
}

std::string mamba2_describe(const Mamba2Config& c) {
  std::string s = "Mamba2 heads " + std::to_string(c.nheads) + "x" + std::to_string(c.headdim) + " d_state " +
                  std::to_string(c.d_state) + " groups " + std::to_string(c.ngroups) + " d_conv " +
                  std::to_string(c.d_conv);
  if (c.d_mlp() > 0) s += " d_mlp " + std::to_string(c.d_mlp());
  if (!c.rmsnorm) s += " no-norm";
  if (c.rmsnorm && c.norm_before_gate) s += " norm-before-gate";
  if (c.rmsnorm && !c.norm_per_group && c.ngroups > 1) s += " norm-over-all-groups";
  if (c.D_has_hdim) s += " D-per-channel";
  if (c.bias) s += " bias";
  return s;
}

}  // namespace m3
