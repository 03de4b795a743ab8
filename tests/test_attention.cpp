// The MHA mixer on the CPU (cpu::make_attention, spec/model.md §4) against the float64 reference
// of tests/reference.h, for every combination of its options: GQA or not, causal or not, rotary
// (none, partial rotate-half, partial interleaved, full), conv, the fused MLP branch, biases and an
// explicit softmax scale. Each runs a packed prefill of two sequences, a second multi-token call
// on top of the KV cache, then single-token steps of both sequences together.
#include <gtest/gtest.h>

#include "cpu/layers.h"
#include "model/specs.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64
constexpr int64_t kDModel = 19;

struct Rotary {
  int64_t dim;
  bool interleaved;
};

std::string describe(const AttnConfig& c) {
  return "heads " + std::to_string(c.num_heads) + "/" + std::to_string(c.num_heads_kv) +
         (c.causal ? " causal" : " non-causal") + " rotary " + std::to_string(c.rotary_emb_dim) +
         (c.rotary_emb_interleaved ? " interleaved" : "") + " d_conv " + std::to_string(c.d_conv) + " mlp_dim " +
         std::to_string(c.mlp_dim) + " qkv_bias " + std::to_string(c.qkv_proj_bias) + " out_bias " +
         std::to_string(c.out_proj_bias) + " scale " + std::to_string(c.softmax_scale);
}

ParamMap random_params(const AttnConfig& c, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  ParamMap p;
  for (const auto& s : attention_param_specs(c, kDModel, 2)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    const float fan_in = float(s.shape.size() > 1 ? s.shape.back() : 1);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.f32()[i] = s.name.ends_with("bias") ? normal(rng) : uniform(rng) / std::sqrt(fan_in);
    p[s.name] = t;
  }
  return p;
}

// Runs the engine's layer over the call sequence of the test and returns each sequence's outputs,
// position by position: a packed prefill (lengths prefill[i]), a packed second call (lengths
// extend[i]), then steps of the sequences together until each reaches `total` tokens.
std::vector<std::vector<float>> run_engine(Layer& layer, const std::vector<std::vector<float>>& x,
                                           const std::vector<int64_t>& prefill, const std::vector<int64_t>& extend,
                                           int64_t total) {
  const size_t n = x.size();
  std::vector<LayerState> st(n);
  std::vector<LayerState*> sp(n);
  for (size_t i = 0; i < n; ++i) st[i] = layer.new_state(), sp[i] = &st[i];
  std::vector<std::vector<float>> y(n);
  std::vector<int64_t> done(n, 0);
  for (const auto* lens : {&prefill, &extend}) {
    std::vector<int64_t> cu = {0};
    std::vector<float> xs;
    for (size_t i = 0; i < n; ++i) {
      xs.insert(xs.end(), x[i].begin() + done[i] * kDModel, x[i].begin() + (done[i] + (*lens)[i]) * kDModel);
      cu.push_back(cu.back() + (*lens)[i]);
    }
    std::vector<float> ys(xs.size(), NAN);
    layer.forward(xs.data(), ys.data(), Packing{cu}, sp.data());
    for (size_t i = 0; i < n; ++i) {
      y[i].insert(y[i].end(), ys.begin() + cu[i] * kDModel, ys.begin() + cu[i + 1] * kDModel);
      done[i] += (*lens)[i];
    }
  }
  for (;;) {  // the sequences still short of `total`, one token each
    std::vector<size_t> active;
    for (size_t i = 0; i < n; ++i)
      if (done[i] < total) active.push_back(i);
    if (active.empty()) break;
    std::vector<float> xs, ys(active.size() * kDModel, NAN);
    std::vector<LayerState*> ap;
    for (size_t i : active) {
      xs.insert(xs.end(), x[i].begin() + done[i] * kDModel, x[i].begin() + (done[i] + 1) * kDModel);
      ap.push_back(sp[i]);
    }
    layer.step(xs.data(), ys.data(), int64_t(active.size()), ap.data());
    for (size_t a = 0; a < active.size(); ++a) {
      y[active[a]].insert(y[active[a]].end(), ys.begin() + a * kDModel, ys.begin() + (a + 1) * kDModel);
      ++done[active[a]];
    }
  }
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(st[i]["kv_k"].shape[0], total) << "KV cache length";
  return y;
}

// The same call sequence through the float64 reference, one sequence at a time.
Vec run_reference(const AttnConfig& c, const ref::Params& p, const std::vector<float>& x, int64_t prefill,
                  int64_t extend, int64_t total) {
  ref::AttnState st;
  Vec y;
  int64_t done = 0;
  auto call = [&](int64_t L) {
    Vec xs(x.begin() + done * kDModel, x.begin() + (done + L) * kDModel);
    Vec ys = ref::attention(c, kDModel, p, xs, L, st);
    y.insert(y.end(), ys.begin(), ys.end());
    done += L;
  };
  call(prefill);
  call(extend);
  while (done < total) call(1);
  return y;
}

TEST(Attention, EveryOptionCombinationAgainstFloat64) {
  std::mt19937_64 rng(11);
  const int64_t head_dim = 6, total = 14;
  // Two sequences: prefill 5 and 1 tokens, then 4 and 6 more in one call, then steps to 14 each.
  const std::vector<int64_t> prefill = {5, 1}, extend = {4, 6};
  int combos = 0;
  for (int64_t kv_heads : {4, 2, 1})
    for (bool causal : {true, false})
      for (Rotary rot : {Rotary{0, false}, Rotary{4, false}, Rotary{4, true}, Rotary{6, false}, Rotary{6, true}})
        for (int64_t d_conv : {0, 3})
          for (int64_t mlp_dim : {0, 256})
            for (int biases = 0; biases < 4; ++biases) {
              AttnConfig c;
              c.num_heads = 4, c.num_heads_kv = kv_heads, c.head_dim = head_dim, c.mlp_dim = mlp_dim;
              c.qkv_proj_bias = biases & 1, c.out_proj_bias = biases & 2, c.causal = causal;
              c.softmax_scale = biases == 3 ? 0.3 : 0;  // explicit scale in some combinations
              c.d_conv = d_conv, c.rotary_emb_dim = rot.dim, c.rotary_emb_interleaved = rot.interleaved;
              c.rotary_emb_base = rot.dim == 6 ? 500 : 10000;  // a small base turns the slow pairs too
              SCOPED_TRACE(describe(c));
              ParamMap params = random_params(c, rng);
              auto layer = cpu::make_attention(c, kDModel, params);
              const ref::Params ref_params = ref::widen(params);
              std::vector<std::vector<float>> x = {test::randn(size_t(total * kDModel), rng),
                                                   test::randn(size_t(total * kDModel), rng)};
              auto y = run_engine(*layer, x, prefill, extend, total);
              for (size_t i = 0; i < x.size(); ++i) {
                Vec want = run_reference(c, ref_params, x[i], prefill[i], extend[i], total);
                EXPECT_LT(rel_err(y[i], want), kTol) << "sequence " << i;
              }
              ++combos;
            }
  EXPECT_EQ(combos, 3 * 2 * 5 * 2 * 2 * 4);
}

}  // namespace
}  // namespace m3
