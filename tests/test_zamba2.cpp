// Zamba2's hybrid layer on the CPU (cpu::make_zamba2_hybrid, transformers' Zamba2HybridLayer)
// against a float64 reference composed from tests/reference.h: RMSNorm of [h | e], attention from
// 2·d to d, RMSNorm, GELU-gated MLP, the linear map, RMSNorm of h + t, the Mamba-2 mixer; packed
// sequences across chunk boundaries in the parallel form and token by token in the step form.
// The whole model against transformers: test_hf_hybrids.cpp (data/hf_zamba2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "cpu/layers.h"
#include "layer_states.h"
#include "model/specs.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64

// d 12 (attention over 24), 3 query heads of 8 sharing 1 key/value head, full rotary; Mamba-2 with
// 4 heads of 6, 2 groups, chunk 7, and a δ floor (0.2) that clamps some tokens.
ModelConfig zamba2_config() {
  ModelConfig c;
  c.d_model = 12;
  c.n_layer = 1;
  c.norm_eps = 1e-5;
  c.zamba2_mlp_hidden = 10;
  c.attn.num_heads = 3;
  c.attn.num_heads_kv = 1;
  c.attn.head_dim = 8;
  c.attn.qkv_proj_bias = c.attn.out_proj_bias = false;
  c.attn.causal = true;
  c.attn.softmax_scale = 0.5;
  c.attn.rotary_emb_dim = 8;
  c.attn.rotary_emb_base = 500;
  Mamba2Config m;
  m.d_state = 5;
  m.d_conv = 3;
  m.expand = 2;
  m.headdim = 6;
  m.ngroups = 2;
  m.chunk_size = 7;
  m.d_inner = m.d_ssm = 24;
  m.nheads = 4;
  m.norm_per_group = true;
  m.dt_limit_min = 0.2;
  c.ssm = m;
  return c;
}

Tensor tensor_of(const Shape& shape, const std::vector<float>& v) {
  Tensor t = Tensor::zeros(DType::F32, shape);
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

// Rows [r0, r1) of a [·, w] array.
Vec rows(const Vec& v, int64_t r0, int64_t r1, int64_t w) { return Vec(v.begin() + r0 * w, v.begin() + r1 * w); }

// The parameters under `prefix`, without it.
ref::Params under(const ref::Params& p, const std::string& prefix) {
  ref::Params r;
  for (const auto& [name, v] : p)
    if (name.starts_with(prefix)) r[name.substr(prefix.size())] = v;
  return r;
}

// The layer over one sequence x [L, 2·d] (rows [h | e]) from fresh states, in float64.
Vec zamba2_reference(const ModelConfig& c, const ref::Params& p, const Vec& ssm_norm, const Vec& x, int64_t L) {
  const int64_t d = c.d_model, I = c.zamba2_mlp_hidden;
  const Mamba2Config& m = std::get<Mamba2Config>(c.ssm);
  const Vec n1 = ref::rmsnorm(x, p.at("shared_norm.weight"), L, 2 * d, c.norm_eps);
  ref::AttnState st;
  const Vec a = ref::attention(c.attn, 2 * d, under(p, "attn."), n1, L, st, d);
  const Vec n2 = ref::rmsnorm(a, p.at("ff_norm.weight"), L, d, c.norm_eps);
  const Vec g = ref::linear(n2, p.at("mlp.fc1.weight"), {}, L, d, 2 * I);
  Vec act(size_t(L * I));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i < I; ++i) {
      const double v = g[size_t(t * 2 * I + i)];
      act[size_t(t * I + i)] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))) * g[size_t(t * 2 * I + I + i)];
    }
  const Vec f = ref::linear(act, p.at("mlp.fc2.weight"), {}, L, I, d);
  Vec u = ref::linear(f, p.at("linear.weight"), {}, L, d, d);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i < d; ++i) u[size_t(t * d + i)] += x[size_t(t * 2 * d + i)];
  const Vec n3 = ref::rmsnorm(u, ssm_norm, L, d, c.norm_eps);
  const ref::Mamba2Sizes s(m, d);
  Vec conv(size_t(s.CD * s.W)), ssm(size_t(s.H * s.P * s.N));
  return ref::mamba2(m, d, under(p, "ssm."), n3, L, conv, ssm);
}

TEST(Zamba2Layer, ParallelAndStepMatchFloat64Reference) {
  const ModelConfig c = zamba2_config();
  const int64_t d = c.d_model;
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> unit(0, 1);
  ParamMap params;
  for (const ParamSpec& s : zamba2_hybrid_param_specs(c)) {
    std::vector<float> v = test::randn(size_t(shape_numel(s.shape)), rng, 0.4f);
    if (s.name.ends_with("norm.weight"))
      for (float& w : v) w += 1;
    if (s.name == "ssm.A_log")
      for (float& w : v) w = std::log(1 + 3 * unit(rng));
    params[s.name] = tensor_of(s.shape, v);
  }
  std::vector<float> norm_w = test::randn(size_t(d), rng, 0.3f);
  for (float& w : norm_w) w += 1;
  ParamMap ssm_norm = {{"weight", tensor_of({d}, norm_w)}};
  auto layer = cpu::make_zamba2_hybrid(c, params, ssm_norm);
  const ref::Params rp = ref::widen(params);
  const Vec rn = ref::widen(norm_w);

  // Lengths around the chunk of 7, packed in one batch.
  const std::vector<int64_t> lens = {1, 9, 17};
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) cu.push_back(cu.back() + L);
  const int64_t T = cu.back();
  const std::vector<float> x = test::randn(size_t(T * 2 * d), rng);
  const Vec x64 = ref::widen(x);
  std::vector<Vec> want;
  for (size_t i = 0; i < lens.size(); ++i)
    want.push_back(zamba2_reference(c, rp, rn, rows(x64, cu[i], cu[i + 1], 2 * d), lens[i]));

  std::vector<LayerState> fresh;
  for (size_t i = 0; i < lens.size(); ++i) fresh.push_back(test::new_host_state(*layer));
  std::vector<LayerState> packed = fresh;
  const std::vector<float> y = test::forward_with_states(*layer, x, Packing{cu}, test::pointers_to(packed));
  for (size_t i = 0; i < lens.size(); ++i)
    EXPECT_LT(rel_err(std::vector<float>(y.begin() + cu[i] * d, y.begin() + cu[i + 1] * d), want[i]), kTol)
        << "packed forward, sequence of " << lens[i];

  // Step form: at time t every sequence still running advances by one token, together.
  std::vector<LayerState> stepped = fresh;
  std::vector<std::vector<float>> got(lens.size());
  for (int64_t t = 0; t < lens.back(); ++t) {
    std::vector<float> xs;
    std::vector<LayerState*> sp;
    std::vector<size_t> active;
    for (size_t i = 0; i < lens.size(); ++i)
      if (t < lens[i]) {
        xs.insert(xs.end(), x.begin() + (cu[i] + t) * 2 * d, x.begin() + (cu[i] + t + 1) * 2 * d);
        sp.push_back(&stepped[i]);
        active.push_back(i);
      }
    const std::vector<float> ys = test::step_with_states(*layer, xs, sp);
    for (size_t a = 0; a < active.size(); ++a)
      got[active[a]].insert(got[active[a]].end(), ys.begin() + int64_t(a) * d, ys.begin() + int64_t(a + 1) * d);
  }
  for (size_t i = 0; i < lens.size(); ++i) EXPECT_LT(rel_err(got[i], want[i]), kTol) << "step, sequence of " << lens[i];
}

}  // namespace
}  // namespace m3
