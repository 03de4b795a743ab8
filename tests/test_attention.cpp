// The MHA mixer on the CPU (cpu::make_attention, spec/model.md §4) against the float64 reference
// of tests/reference.h, for every combination of its options: GQA or not, causal or not, rotary
// (none, partial rotate-half, partial interleaved, full), conv, the fused MLP branch, biases and an
// explicit softmax scale. Each runs a packed prefill of two sequences, a second multi-token call
// on top of the KV cache, then single-token steps of both sequences together. Then random sizes
// and options over packed batches with empty sequences, prompts longer than a query block, a call
// past the state pool's KV capacity, the reference initialisation and the layer's description for
// `m3 info`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <tuple>

#include "cpu/layers.h"
#include "expect_error.h"
#include "layer_states.h"
#include "m3/model.h"
#include "model/specs.h"
#include "model/state_pool.h"
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

ParamMap random_params(const AttnConfig& c, int64_t d_model, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  ParamMap p;
  for (const auto& s : attention_param_specs(c, d_model, 2)) {
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
std::vector<std::vector<float>> run_engine(Layer& layer, int64_t d_model, const std::vector<std::vector<float>>& x,
                                           const std::vector<int64_t>& prefill, const std::vector<int64_t>& extend,
                                           int64_t total) {
  const size_t n = x.size();
  std::vector<LayerState> st(n, test::new_host_state(layer));
  const std::vector<LayerState*> sp = test::pointers_to(st);
  std::vector<std::vector<float>> y(n);
  std::vector<int64_t> done(n, 0);
  for (const auto* lens : {&prefill, &extend}) {
    std::vector<int64_t> cu = {0};
    std::vector<float> xs;
    for (size_t i = 0; i < n; ++i) {
      xs.insert(xs.end(), x[i].begin() + done[i] * d_model, x[i].begin() + (done[i] + (*lens)[i]) * d_model);
      cu.push_back(cu.back() + (*lens)[i]);
    }
    std::vector<float> ys(xs.size(), NAN);
    test::forward_with_states(layer, xs.data(), ys.data(), Packing{cu}, sp);
    for (size_t i = 0; i < n; ++i) {
      y[i].insert(y[i].end(), ys.begin() + cu[i] * d_model, ys.begin() + cu[i + 1] * d_model);
      done[i] += (*lens)[i];
    }
  }
  for (;;) {  // the sequences still short of `total`, one token each
    std::vector<size_t> active;
    for (size_t i = 0; i < n; ++i)
      if (done[i] < total) active.push_back(i);
    if (active.empty()) break;
    std::vector<float> xs, ys(active.size() * d_model, NAN);
    std::vector<LayerState*> ap;
    for (size_t i : active) {
      xs.insert(xs.end(), x[i].begin() + done[i] * d_model, x[i].begin() + (done[i] + 1) * d_model);
      ap.push_back(sp[i]);
    }
    test::step_with_states(layer, xs.data(), ys.data(), ap);
    for (size_t a = 0; a < active.size(); ++a) {
      y[active[a]].insert(y[active[a]].end(), ys.begin() + a * d_model, ys.begin() + (a + 1) * d_model);
      ++done[active[a]];
    }
  }
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(st[i]["kv_k"].shape[0], total) << "KV cache length";
    EXPECT_EQ(st[i]["kv_v"].shape[0], total) << "KV cache length";
  }
  return y;
}

// The same call sequence through the float64 reference, one sequence at a time.
Vec run_reference(const AttnConfig& c, int64_t d_model, const ref::Params& p, const std::vector<float>& x,
                  int64_t prefill, int64_t extend, int64_t total) {
  ref::AttnState st;
  Vec y;
  int64_t done = 0;
  auto call = [&](int64_t L) {
    Vec xs(x.begin() + done * d_model, x.begin() + (done + L) * d_model);
    Vec ys = ref::attention(c, d_model, p, xs, L, st);
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
              ParamMap params = random_params(c, kDModel, rng);
              auto layer = cpu::make_attention(c, kDModel, params);
              SCOPED_TRACE(layer->describe());
              const ref::Params ref_params = ref::widen(params);
              std::vector<std::vector<float>> x = {test::randn(size_t(total * kDModel), rng),
                                                   test::randn(size_t(total * kDModel), rng)};
              auto y = run_engine(*layer, kDModel, x, prefill, extend, total);
              for (size_t i = 0; i < x.size(); ++i) {
                Vec want = run_reference(c, kDModel, ref_params, x[i], prefill[i], extend[i], total);
                EXPECT_LT(rel_err(y[i], want), kTol) << "sequence " << i;
              }
              ++combos;
            }
  EXPECT_EQ(combos, 3 * 2 * 5 * 2 * 2 * 4);
}

// An MHA config parsed like a checkpoint's attn_cfg, so that defaults and derived sizes (head_dim,
// num_heads_kv, mlp_dim rounded up to 256) are the engine's.
AttnConfig parse_attn(const nlohmann::json& attn_cfg, int64_t d_model) {
  const nlohmann::json j = {
      {"d_model", d_model}, {"n_layer", 1}, {"vocab_size", 16}, {"attn_layer_idx", {0}}, {"attn_cfg", attn_cfg}};
  return parse_model_config(j, "test config").attn;
}

// Random sizes and options: d_model, heads, kv heads (a divisor), head_dim (given or the default
// d_model / num_heads), rotary (any even dim up to head_dim, either pairing, several bases),
// d_conv 0–4, mlp_dim (rounded up), biases, causal, softmax_scale; 1–4 sequences whose prefill
// and second call may be empty (and a whole call of empty sequences).
TEST(Attention, RandomSizesAndOptionsAgainstFloat64) {
  std::mt19937_64 rng(29);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int iter = 0; iter < 60; ++iter) {
    const int64_t d_model = pick(2, 24), heads = pick(1, 6);
    std::vector<int64_t> kv;
    for (int64_t k = 1; k <= heads; ++k)
      if (heads % k == 0) kv.push_back(k);
    nlohmann::json a = {{"num_heads", heads},
                        {"num_heads_kv", kv[size_t(pick(0, int64_t(kv.size()) - 1))]},
                        {"causal", bool(pick(0, 1))},
                        {"d_conv", pick(0, 4)},
                        {"mlp_dim", std::vector<int64_t>{0, 0, 1, 256, 300}[size_t(pick(0, 4))]},
                        {"qkv_proj_bias", bool(pick(0, 1))},
                        {"out_proj_bias", bool(pick(0, 1))}};
    if (d_model % heads != 0 || pick(0, 1)) a["head_dim"] = pick(1, 10);
    const int64_t head_dim = a.contains("head_dim") ? a["head_dim"].get<int64_t>() : d_model / heads;
    if (pick(0, 2)) {
      a["rotary_emb_dim"] = 2 * pick(0, head_dim / 2);
      a["rotary_emb_interleaved"] = bool(pick(0, 1));
      a["rotary_emb_base"] = std::vector<double>{10000, 500, 20.5}[size_t(pick(0, 2))];
    }
    if (pick(0, 2) == 0) a["softmax_scale"] = 0.1 * double(pick(1, 10));
    const AttnConfig c = parse_attn(a, d_model);
    const size_t n = size_t(pick(1, 4));
    std::vector<int64_t> prefill(n), extend(n);
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      prefill[i] = pick(0, 2) == 0 ? 0 : pick(1, 12);
      extend[i] = pick(0, 2) == 0 ? 0 : pick(1, 8);
      total = std::max(total, prefill[i] + extend[i]);
    }
    total += pick(0, 4);
    std::string what = "d_model " + std::to_string(d_model) + " " + a.dump() + " prefill/extend";
    for (size_t i = 0; i < n; ++i) what += " " + std::to_string(prefill[i]) + "/" + std::to_string(extend[i]);
    SCOPED_TRACE(what + " total " + std::to_string(total));
    const ParamMap params = random_params(c, d_model, rng);
    auto layer = cpu::make_attention(c, d_model, params);
    const ref::Params ref_params = ref::widen(params);
    std::vector<std::vector<float>> x(n);
    for (auto& xi : x) xi = test::randn(size_t(total * d_model), rng);
    auto y = run_engine(*layer, d_model, x, prefill, extend, total);
    for (size_t i = 0; i < n; ++i)
      EXPECT_LT(rel_err(y[i], run_reference(c, d_model, ref_params, x[i], prefill[i], extend[i], total)), kTol)
          << "sequence " << i;
  }
}

// Prompts longer than the engine's query block (256 rows of scores at a time), in one call and
// on top of a KV cache, large enough to run on several threads; then steps.
TEST(Attention, LongPromptsAcrossQueryBlocks) {
  std::mt19937_64 rng(31);
  for (bool causal : {true, false}) {
    const AttnConfig c = parse_attn({{"num_heads", 4}, {"num_heads_kv", 2}, {"head_dim", 6}, {"causal", causal},
                                     {"rotary_emb_dim", 4}, {"d_conv", 2}},
                                    kDModel);
    const ParamMap params = random_params(c, kDModel, rng);
    auto layer = cpu::make_attention(c, kDModel, params);
    SCOPED_TRACE(layer->describe());
    const ref::Params ref_params = ref::widen(params);
    // Sequence 0: 300 tokens at once; sequence 1: 5, then 260 on top of them; then steps to 303.
    const std::vector<int64_t> prefill = {300, 5}, extend = {0, 260};
    const int64_t total = 303;
    std::vector<std::vector<float>> x = {test::randn(size_t(total * kDModel), rng),
                                         test::randn(size_t(total * kDModel), rng)};
    auto y = run_engine(*layer, kDModel, x, prefill, extend, total);
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_LT(rel_err(y[i], run_reference(c, kDModel, ref_params, x[i], prefill[i], extend[i], total)), kTol)
          << "sequence " << i;
  }
}

// The caller reserves the KV rows a call needs (StatePool::reserve_kv); a call that would write past
// the pool's capacity is refused before any sequence's state changes.
TEST(Attention, CallPastKvCapacityIsRefused) {
  std::mt19937_64 rng(37);
  const AttnConfig c = parse_attn({{"num_heads", 2}, {"head_dim", 4}, {"rotary_emb_dim", 4}, {"d_conv", 2}}, kDModel);
  auto layer = cpu::make_attention(c, kDModel, random_params(c, kDModel, rng));
  StatePool pool(test::cpu_backend(), {layer->state_spec()}, 2, 6, false);
  const int32_t slots[2] = {pool.acquire(), pool.acquire()};
  const std::vector<float> x = test::randn(size_t(6 * kDModel), rng);
  std::vector<float> y(x.size());
  Packing prefill{{0, 4, 6}};
  prefill.cu_dev = prefill.cu_seqlens.data();
  const int64_t fresh[2] = {0, 0};
  layer->forward(x.data(), y.data(), prefill, pool.batch(0, 2, slots, slots, fresh, fresh));
  const LayerState before0 = pool.read(slots[0], 0, 4), before1 = pool.read(slots[1], 0, 2);
  // Sequence 0 fits (4 + 1 ≤ 6), sequence 1 does not (2 + 5 > 6).
  Packing more{{0, 1, 6}};
  more.cu_dev = more.cu_seqlens.data();
  const int64_t pos[2] = {4, 2};
  test::expect_error([&] { layer->forward(x.data(), y.data(), more, pool.batch(0, 2, slots, slots, pos, pos)); },
                     {"sequence 1", "7 KV positions", "holds 6"});
  for (auto [slot, rows, before] : {std::tuple{slots[0], 4, &before0}, {slots[1], 2, &before1}}) {
    const LayerState after = pool.read(slot, 0, rows);
    for (size_t b = 0; b < after.buffers.size(); ++b)
      EXPECT_EQ(after.buffers[b].data, before->buffers[b].data) << "slot " << slot << " " << after.buffers[b].name;
  }
}

// spec/model.md §4 and §6: the MHA block's parameters (names, shapes) and initialisation — Linear
// weights PyTorch's U(±1/√fan_in), out_proj's divided by √n_layer, biases zero, the depthwise conv
// U(±1/√d_conv) for weight and bias — and its decode state (empty KV cache, zero conv window).
TEST(AttentionInit, ParametersAndStateFollowReference) {
  const nlohmann::json j = {{"d_model", 24},
                            {"n_layer", 3},
                            {"vocab_size", 16},
                            {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 8}, {"headdim", 8}}},
                            {"attn_layer_idx", {1}},
                            {"attn_cfg",
                             {{"num_heads", 4}, {"num_heads_kv", 2}, {"head_dim", 8}, {"d_conv", 3}, {"mlp_dim", 100},
                              {"causal", true}}}};
  const Model m = Model::init(parse_model_config(j, "test config"), 9);
  const int64_t qkv = 8 * (4 + 2 * 2), mlp = 256, out_in = 4 * 8 + mlp / 2;
  const std::map<std::string, Shape> want = {{"in_proj.weight", {qkv + mlp, 24}}, {"in_proj.bias", {qkv + mlp}},
                                             {"conv1d.weight", {qkv, 1, 3}},      {"conv1d.bias", {qkv}},
                                             {"out_proj.weight", {24, out_in}},   {"out_proj.bias", {24}}};
  const std::string prefix = "backbone.layers.1.mixer.";
  std::map<std::string, Tensor> ps;
  for (const auto& [name, t] : m.parameters())
    if (name.starts_with(prefix)) ps[name.substr(prefix.size())] = t;
  ASSERT_EQ(ps.size(), want.size());
  for (const auto& [name, shape] : want) {
    ASSERT_TRUE(ps.count(name)) << name;
    EXPECT_EQ(ps.at(name).shape, shape) << name;
  }
  EXPECT_EQ(test::max_abs(ps.at("in_proj.bias")), 0.0f);
  EXPECT_EQ(test::max_abs(ps.at("out_proj.bias")), 0.0f);
  for (auto [name, bound] : {std::pair{"in_proj.weight", 1.0 / std::sqrt(24.0)}, {"conv1d.weight", 1.0 / std::sqrt(3.0)},
                             {"conv1d.bias", 1.0 / std::sqrt(3.0)},
                             {"out_proj.weight", 1.0 / std::sqrt(double(out_in)) / std::sqrt(3.0)}}) {
    const float v = test::max_abs(ps.at(name));
    EXPECT_LE(v, bound * (1 + 1e-6)) << name;
    EXPECT_GT(v, 0.8 * bound) << name;
  }
  const LayerState s = m.new_state().layer(1);
  EXPECT_EQ(s["kv_k"].shape, (Shape{0, 16}));
  EXPECT_EQ(s["kv_v"].shape, (Shape{0, 16}));
  EXPECT_EQ(s["conv"].shape, (Shape{qkv, 3}));
  EXPECT_EQ(s["conv"].data, std::vector<float>(size_t(qkv * 3), 0.0f));
}

// The one-line description `m3 info` prints names every attn_cfg option.
TEST(AttentionDescribe, NamesEveryOption) {
  std::mt19937_64 rng(5);
  const AttnConfig all = parse_attn({{"num_heads", 4}, {"num_heads_kv", 2}, {"head_dim", 6}, {"causal", true},
                                     {"softmax_scale", 0.3}, {"rotary_emb_dim", 4}, {"rotary_emb_base", 500},
                                     {"rotary_emb_interleaved", true}, {"d_conv", 3}, {"mlp_dim", 200}},
                                    kDModel);
  EXPECT_EQ(cpu::make_attention(all, kDModel, random_params(all, kDModel, rng))->describe(),
            "MHA heads 4 kv_heads 2 head_dim 6 causal softmax_scale 0.3 rotary 4 base 500 interleaved d_conv 3 "
            "mlp_dim 256 qkv_proj_bias out_proj_bias");
  const AttnConfig plain = parse_attn(
      {{"num_heads", 3}, {"head_dim", 6}, {"rotary_emb_dim", 6}, {"qkv_proj_bias", false}, {"out_proj_bias", false}},
      kDModel);
  EXPECT_EQ(cpu::make_attention(plain, kDModel, random_params(plain, kDModel, rng))->describe(),
            "MHA heads 3 kv_heads 3 head_dim 6 non-causal rotary 6 base 10000 rotate-half");
}

}  // namespace
}  // namespace m3
