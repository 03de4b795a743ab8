// The hybrids' layers on the CPU (transformers' NemotronHMLP, GraniteMoeHybridMoE, NemotronHMoE,
// JambaSparseMoeBlock, FalconH1DecoderLayer) against naive float64 references written
// from transformers' definitions (one token at a time, every expert looked at per token), on fresh
// random inputs: the MoE of each family (routing, grouped expert products, shared experts), the
// relu² MLP, and layers side by side.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "cpu/layers.h"
#include "cpu/moe.h"
#include "layer_states.h"
#include "model/specs.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64

ParamMap random_params(const std::vector<ParamSpec>& specs, std::mt19937_64& rng, float scale) {
  ParamMap p;
  for (const auto& s : specs) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    std::vector<float> v = test::randn(size_t(t.numel()), rng, scale);
    std::copy(v.begin(), v.end(), t.f32());
    p[s.name] = t;
  }
  return p;
}

// out[o] = Σ_i W[o, i] x[i], W at `w` with `in` columns.
Vec matvec(const double* w, const double* x, int64_t in, int64_t out) {
  Vec y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) y[size_t(o)] += w[o * in + i] * x[i];
  return y;
}

// One expert on one token: Granite's silu(gate) ⊙ up (input rows [gate; up]) or relu(up)².
Vec expert(const double* in_w, const double* out_w, const double* x, int64_t d, int64_t I, bool gated) {
  Vec h = matvec(in_w, x, d, gated ? 2 * I : I), a(static_cast<size_t>(I));
  for (int64_t k = 0; k < I; ++k) {
    if (gated) {
      const double g = h[size_t(k)];
      a[size_t(k)] = g / (1 + std::exp(-g)) * h[size_t(I + k)];
    } else {
      const double r = std::max(h[size_t(k)], 0.0);
      a[size_t(k)] = r * r;
    }
  }
  return matvec(out_w, a.data(), I, d);
}

// Indices of the k largest values, largest first.
std::vector<int> top(const Vec& v, int64_t k) {
  std::vector<int> o(v.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return v[size_t(a)] > v[size_t(b)]; });
  o.resize(size_t(k));
  return o;
}

Vec moe_reference(const MoeConfig& c, const ref::Params& p, const Vec& x, int64_t T, int64_t d) {
  const bool granite = c.family == MoeConfig::Family::Granite, jamba = c.family == MoeConfig::Family::Jamba;
  const int64_t E = c.n_experts, I = c.expert_hidden, S = c.shared_hidden;
  Vec y(static_cast<size_t>(T * d), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const double* xt = x.data() + t * d;
    const Vec logits =
        matvec(p.at(granite ? "router.layer.weight" : jamba ? "router.weight" : "gate.weight").data(), xt, d, E);
    std::vector<int> chosen;
    Vec weight;
    if (jamba) {  // JambaSparseMoeBlock.route_tokens_to_experts: softmax, topk, no renormalisation
      Vec prob(static_cast<size_t>(E));
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (prob[size_t(e)] = std::exp(logits[size_t(e)]));
      for (double& v : prob) v /= sum;
      chosen = top(prob, c.top_k);
      for (int e : chosen) weight.push_back(prob[size_t(e)]);
    } else if (granite) {  // GraniteMoeTopKGating: softmax over the top-k logits
      chosen = top(logits, c.top_k);
      double sum = 0;
      for (int e : chosen) sum += std::exp(logits[size_t(e)]);
      for (int e : chosen) weight.push_back(std::exp(logits[size_t(e)]) / sum);
    } else {  // DeepseekV3MoE.route_tokens_to_experts
      Vec s(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        s[size_t(e)] = 1 / (1 + std::exp(-logits[size_t(e)]));
        choice[size_t(e)] = s[size_t(e)] + p.at("gate.e_score_correction_bias")[size_t(e)];
      }
      const int64_t gs = E / c.n_group;
      Vec group_score(static_cast<size_t>(c.n_group));
      for (int64_t g = 0; g < c.n_group; ++g) {
        const Vec part(choice.begin() + g * gs, choice.begin() + (g + 1) * gs);
        for (int k : top(part, 2)) group_score[size_t(g)] += part[size_t(k)];
      }
      const std::vector<int> groups = top(group_score, c.topk_group);
      for (int64_t e = 0; e < E; ++e)
        if (std::find(groups.begin(), groups.end(), int(e / gs)) == groups.end()) choice[size_t(e)] = 0;
      chosen = top(choice, c.top_k);
      double sum = 0;
      for (int e : chosen) sum += s[size_t(e)];
      for (int e : chosen)
        weight.push_back(s[size_t(e)] / (c.norm_topk_prob ? sum + 1e-20 : 1.0) * c.routed_scaling_factor);
    }
    double* yt = y.data() + t * d;
    for (size_t k = 0; k < chosen.size(); ++k) {
      const int e = chosen[k];
      const std::string ex = "experts." + std::to_string(e) + ".";
      const Vec o = granite ? expert(p.at("input_linear.weight").data() + e * 2 * I * d,
                                     p.at("output_linear.weight").data() + e * d * I, xt, d, I, true)
                    : jamba ? expert(p.at(ex + "gate_up_proj.weight").data(), p.at(ex + "down_proj.weight").data(),
                                     xt, d, I, true)
                            : expert(p.at(ex + "up_proj.weight").data(), p.at(ex + "down_proj.weight").data(), xt, d,
                                     I, false);
      for (int64_t j = 0; j < d; ++j) yt[j] += weight[k] * o[size_t(j)];
    }
    if (S > 0) {
      const Vec o = granite ? expert(p.at("shared_mlp.input_linear.weight").data(),
                                     p.at("shared_mlp.output_linear.weight").data(), xt, d, S, true)
                            : expert(p.at("shared_experts.up_proj.weight").data(),
                                     p.at("shared_experts.down_proj.weight").data(), xt, d, S, false);
      for (int64_t j = 0; j < d; ++j) yt[j] += o[size_t(j)];
    }
  }
  return y;
}

void check_moe(const MoeConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t d = 29, T = 41;
  ParamMap p = random_params(moe_param_specs(c, d, 4), rng, 0.3f);
  if (c.family == MoeConfig::Family::NemotronH) {
    // The correction bias moves choices away from the plain sigmoid order.
    float* b = p.at("gate.e_score_correction_bias").f32();
    for (int64_t e = 0; e < c.n_experts; ++e) b[e] = 0.3f * float(e % 3) - 0.2f;
  }
  auto layer = cpu::make_moe(c, d, p);
  const std::vector<float> x = test::randn(size_t(T * d), rng);
  const Vec want = moe_reference(c, ref::widen(p), ref::widen(x), T, d);
  std::vector<float> y(static_cast<size_t>(T * d), NAN);
  layer->forward(x.data(), y.data(), Packing{{0, 9, T}}, StateBatch{});
  EXPECT_LT(rel_err(y, want), kTol);
  std::fill(y.begin(), y.end(), NAN);
  layer->step(x.data(), y.data(), T, StateBatch{});
  EXPECT_LT(rel_err(y, want), kTol);
  std::fill(y.begin(), y.end(), NAN);
  layer->step(x.data(), y.data(), 1, StateBatch{});  // one token: most experts get no rows
  EXPECT_LT(rel_err(std::vector<float>(y.begin(), y.begin() + d), Vec(want.begin(), want.begin() + d)), kTol);
}

TEST(Moe, GraniteSoftmaxOfTopKWithSharedMlp) {
  MoeConfig c;
  c.family = MoeConfig::Family::Granite;
  c.n_experts = 7, c.top_k = 3, c.expert_hidden = 19, c.shared_hidden = 23;
  check_moe(c, 1);
  c.shared_hidden = 0;
  check_moe(c, 2);
}

TEST(Moe, NemotronHSigmoidGroupRoutingWithSharedExperts) {
  MoeConfig c;
  c.family = MoeConfig::Family::NemotronH;
  c.n_experts = 8, c.top_k = 2, c.expert_hidden = 13, c.shared_hidden = 17;
  c.routed_scaling_factor = 2.5;
  check_moe(c, 3);
  c.n_group = 4, c.topk_group = 2, c.top_k = 3;  // experts only from the two best groups of two
  check_moe(c, 4);
  c.norm_topk_prob = false;
  check_moe(c, 5);
}

TEST(Moe, JambaSoftmaxTopKWithoutRenormalisation) {
  MoeConfig c;
  c.family = MoeConfig::Family::Jamba;
  c.n_experts = 6, c.top_k = 2, c.expert_hidden = 21;
  check_moe(c, 8);
  c.top_k = 1;
  check_moe(c, 9);
}

TEST(Moe, Relu2MlpLayer) {
  std::mt19937_64 rng(6);
  const int64_t d = 31, T = 17;
  const MlpConfig c{43, true};
  ParamMap p = random_params(mlp_param_specs(c, d, 2), rng, 0.3f);
  auto layer = cpu::make_mlp(c, d, p);
  const std::vector<float> x = test::randn(size_t(T * d), rng);
  const ref::Params w = ref::widen(p);
  const Vec xd = ref::widen(x);
  Vec want(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t) {
    Vec h = matvec(w.at("up_proj.weight").data(), xd.data() + t * d, d, c.hidden);
    for (int64_t k = 0; k < c.hidden; ++k) {
      const double r = std::max(h[size_t(k)] + w.at("up_proj.bias")[size_t(k)], 0.0);
      h[size_t(k)] = r * r;
    }
    const Vec o = matvec(w.at("down_proj.weight").data(), h.data(), c.hidden, d);
    for (int64_t j = 0; j < d; ++j) want[size_t(t * d + j)] = o[size_t(j)] + w.at("down_proj.bias")[size_t(j)];
  }
  std::vector<float> y(static_cast<size_t>(T * d), NAN);
  layer->forward(x.data(), y.data(), Packing{{0, T}}, StateBatch{});
  EXPECT_LT(rel_err(y, want), kTol);
}

// Attention and Mamba-2 side by side: the sum of each run alone, state included, over a prefill and
// a step.
TEST(Moe, ParallelLayerSumsItsPartsAndSplitsTheirState) {
  std::mt19937_64 rng(7);
  const int64_t d = 32, T = 9;
  AttnConfig a;
  a.num_heads = 4, a.num_heads_kv = 2, a.head_dim = 8, a.causal = true, a.rotary_emb_dim = 8;
  a.qkv_proj_bias = a.out_proj_bias = false;
  Mamba2Config m;
  m.d_state = 8, m.headdim = 8, m.ngroups = 2, m.expand = 2, m.d_inner = m.d_ssm = 64, m.nheads = 8, m.chunk_size = 4;
  const ParamMap pa = random_params(attention_param_specs(a, d, 2), rng, 0.2f);
  ParamMap pm = random_params(mamba2_param_specs(m, d, 2), rng, 0.2f);
  std::vector<std::unique_ptr<Layer>> parts;
  parts.push_back(cpu::make_attention(a, d, pa));
  parts.push_back(cpu::make_mamba2(m, d, pm));
  auto par = test::cpu_backend()->make_parallel(std::move(parts), d);  // model/parallel_layer on the CPU
  auto la = cpu::make_attention(a, d, pa);
  auto lm = cpu::make_mamba2(m, d, pm);
  ASSERT_EQ(par->state_spec().size(), la->state_spec().size() + lm->state_spec().size());

  // One sequence's state for each layer: a slot of buffers sized by the spec (KV: T + 1 positions).
  auto alloc = [&](const LayerStateSpec& spec, std::vector<std::vector<float>>& mem) {
    StateBatch s;
    static const int32_t slot0 = 0;
    static const int64_t pos0 = 0;
    s.n = 1, s.slot = s.slot_dev = &slot0, s.pos = s.pos_dev = &pos0, s.kv_capacity = T + 1;
    for (const auto& b : spec) {
      const int64_t n = b.kv ? (T + 1) * b.row_numel() : b.row_numel();
      mem.emplace_back(static_cast<size_t>(n), 0.0f);
      s.buf.push_back(mem.back().data());
      s.stride.push_back(n);
    }
    return s;
  };
  std::vector<std::vector<float>> mem_p, mem_a, mem_m;
  mem_p.reserve(8), mem_a.reserve(8), mem_m.reserve(8);
  StateBatch sp = alloc(par->state_spec(), mem_p), sa = alloc(la->state_spec(), mem_a),
             sm = alloc(lm->state_spec(), mem_m);
  const std::vector<float> x = test::randn(size_t((T + 1) * d), rng);
  std::vector<float> y(static_cast<size_t>(T * d)), ya(y.size()), ym(y.size());
  par->forward(x.data(), y.data(), Packing{{0, T}}, sp);
  la->forward(x.data(), ya.data(), Packing{{0, T}}, sa);
  lm->forward(x.data(), ym.data(), Packing{{0, T}}, sm);
  std::vector<double> want(y.size());
  for (size_t i = 0; i < y.size(); ++i) want[i] = double(ya[i]) + double(ym[i]);
  EXPECT_LT(rel_err(y, want), 1e-6);
  // A step at position T.
  static const int64_t posT = T;
  sp.pos = sp.pos_dev = sa.pos = sa.pos_dev = sm.pos = sm.pos_dev = &posT;
  std::vector<float> s1(static_cast<size_t>(d)), a1(s1.size()), m1(s1.size());
  par->step(x.data() + T * d, s1.data(), 1, sp);
  la->step(x.data() + T * d, a1.data(), 1, sa);
  lm->step(x.data() + T * d, m1.data(), 1, sm);
  std::vector<double> want1(s1.size());
  for (size_t i = 0; i < s1.size(); ++i) want1[i] = double(a1[i]) + double(m1[i]);
  EXPECT_LT(rel_err(s1, want1), 1e-6);
}

}  // namespace
}  // namespace m3
