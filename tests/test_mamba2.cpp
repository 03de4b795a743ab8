// The Mamba-2 mixer (spec/mamba2.md) on the CPU, in three rungs:
// - the SSD scan (cpu/ssd_scan) in its chunked and step forms against a float64 per-token
//   recurrence of §3 steps 2–3, packed sequences with carried-in states, several chunk sizes;
// - the whole mixer (cpu::make_mamba2) against a float64 per-token mixer written from §3
//   (conv, dt, state update, gated norm, d_mlp branch) over every option of §1;
// - the golden reference checkpoint mamba2_hybrid (2 groups: per-group gated norm): logits,
//   prefill-then-step across chunk boundaries, packed varlen, and a decode-state round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "conv_ssm_state.h"
#include "cpu/layers.h"
#include "cpu/ssd_scan.h"
#include "golden_model.h"
#include "io/hf_config.h"
#include "layer_states.h"
#include "layer_steps.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "model/specs.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64
// Lengths around the chunk of 7 (and 1), packed in one batch; the chunk divides none but 7.
const std::vector<int64_t> kLengths = {1, 6, 7, 8, 23};

std::vector<int64_t> cu_of(const std::vector<int64_t>& lens) {
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) cu.push_back(cu.back() + L);
  return cu;
}

double softplus(double v) { return v > 30.0 ? v : std::log1p(std::exp(v)); }

// ---- Scan level -------------------------------------------------------------------------------

TEST(Mamba2Scan, ChunkedAndStepMatchFloat64Recurrence) {
  const int64_t H = 6, G = 3, P = 5, N = 7;
  const cpu::SsdScanDims d{H, G, P, N};
  std::mt19937_64 rng(7);
  const std::vector<int64_t> cu = cu_of(kLengths);
  const int64_t T = cu.back(), n = int64_t(kLengths.size());
  std::uniform_real_distribution<float> dt_dist(0.01f, 1.5f), a_dist(-3.0f, -0.05f);
  std::vector<float> x = test::randn(size_t(T * H * P), rng), B = test::randn(size_t(T * G * N), rng),
                     C = test::randn(size_t(T * G * N), rng), dt(static_cast<size_t>(T * H)), A(static_cast<size_t>(H));
  for (auto& v : dt) v = dt_dist(rng);
  for (auto& v : A) v = a_dist(rng);
  // Every sequence starts from a random state but the second, which starts fresh.
  std::vector<float> init = test::randn(size_t(n * H * P * N), rng);
  std::fill_n(init.begin() + H * P * N, H * P * N, 0.0f);

  for (bool per_channel : {false, true}) {
    const std::vector<float> D = test::randn(size_t(per_channel ? H * P : H), rng);
    const cpu::SsdScanInputs in{.x = x.data(), .x_ld = H * P, .B = B.data(), .C = C.data(), .bc_ld = G * N,
                                .dt = dt.data(), .dt_ld = H, .A = A.data(), .D = D.data(),
                                .D_per_channel = per_channel};
    // The float64 reference, token by token.
    Vec want_y(static_cast<size_t>(T * H * P)), want_s = ref::widen(init);
    const Vec x64 = ref::widen(x), B64 = ref::widen(B), C64 = ref::widen(C), dt64 = ref::widen(dt),
              A64 = ref::widen(A), D64 = ref::widen(D);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t t = cu[size_t(i)]; t < cu[size_t(i) + 1]; ++t)
        ref::ssd_token(H, G, P, N, &x64[size_t(t * H * P)], &B64[size_t(t * G * N)], &C64[size_t(t * G * N)],
                       &dt64[size_t(t * H)], A64.data(), D64, &want_s[size_t(i * H * P * N)],
                       &want_y[size_t(t * H * P)]);

    auto ptrs = [&](std::vector<float>& s) {
      std::vector<float*> r;
      for (int64_t i = 0; i < n; ++i) r.push_back(s.data() + i * H * P * N);
      return r;
    };
    for (int64_t chunk : {1, 4, 7, 16, 64}) {
      SCOPED_TRACE("chunked, chunk " + std::to_string(chunk) + (per_channel ? ", D per channel" : ", D per head"));
      std::vector<float> s = init, y(static_cast<size_t>(T * H * P), NAN);
      cpu::ssd_scan_chunked(d, in, cu.data(), n, ptrs(s).data(), y.data(), H * P, chunk);
      EXPECT_LT(rel_err(y, want_y), kTol);
      EXPECT_LT(rel_err(s, want_s), kTol);
    }
    // Step form: at time t every sequence still running advances by one token, together.
    SCOPED_TRACE(std::string("step") + (per_channel ? ", D per channel" : ", D per head"));
    std::vector<float> s = init, y(static_cast<size_t>(T * H * P), NAN);
    for (int64_t t = 0; t < kLengths.back(); ++t) {
      std::vector<float> xs, Bs, Cs, dts, ys;
      std::vector<float*> sp;
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < n; ++i) {
        if (t >= kLengths[size_t(i)]) continue;
        const int64_t r = cu[size_t(i)] + t;
        xs.insert(xs.end(), x.begin() + r * H * P, x.begin() + (r + 1) * H * P);
        Bs.insert(Bs.end(), B.begin() + r * G * N, B.begin() + (r + 1) * G * N);
        Cs.insert(Cs.end(), C.begin() + r * G * N, C.begin() + (r + 1) * G * N);
        dts.insert(dts.end(), dt.begin() + r * H, dt.begin() + (r + 1) * H);
        sp.push_back(s.data() + i * H * P * N);
        rows.push_back(r);
      }
      ys.resize(rows.size() * size_t(H * P));
      cpu::SsdScanInputs is = in;
      is.x = xs.data(), is.B = Bs.data(), is.C = Cs.data(), is.dt = dts.data();
      cpu::ssd_scan_step(d, is, int64_t(rows.size()), sp.data(), ys.data(), H * P);
      for (size_t k = 0; k < rows.size(); ++k)
        std::copy_n(ys.begin() + int64_t(k) * H * P, H * P, y.begin() + rows[k] * H * P);
    }
    EXPECT_LT(rel_err(y, want_y), kTol);
    EXPECT_LT(rel_err(s, want_s), kTol);
  }
}

// ---- Mixer level ------------------------------------------------------------------------------

// The mixer's decode state in float64 (spec §4): conv [conv_dim, W] (oldest first), ssm [H, P, N].
using State = test::ConvSsmState;

using Sizes = ref::Mamba2Sizes;

constexpr int64_t kDModel = 10;

struct Case {
  int64_t ngroups = 1, d_ssm = -1;
  bool D_has_hdim = false, rmsnorm = true, norm_before_gate = false, bias = false, conv_bias = true;
  bool dt_limit = false;
  bool hf_norm = false;  // Hugging Face's gated norm (spec §5): over all of d_ssm, eps 1e-6 here
  std::string name() const {
    std::string s = "Groups" + std::to_string(ngroups);
    if (d_ssm > 0) s += "_Dssm" + std::to_string(d_ssm);
    if (D_has_hdim) s += "_DHdim";
    s += !rmsnorm ? "_NoNorm" : norm_before_gate ? "_NormBeforeGate" : "_NormAfterGate";
    if (bias) s += "_Bias";
    if (!conv_bias) s += "_NoConvBias";
    if (dt_limit) s += "_DtLimit";
    if (hf_norm) s += "_HfNorm";
    return s;
  }
};
void PrintTo(const Case& k, std::ostream* os) { *os << k.name(); }

// Parsed like a checkpoint's config so that the derived sizes are the engine's. d_model 10,
// expand 2 → d_inner 20, heads of 5, d_state 7 (odd), d_conv 3, chunk 7.
Mamba2Config config(const Case& k) {
  nlohmann::json ssm = {{"layer", "Mamba2"}, {"d_state", 7}, {"d_conv", 3}, {"expand", 2}, {"headdim", 5},
                        {"ngroups", k.ngroups}, {"D_has_hdim", k.D_has_hdim}, {"rmsnorm", k.rmsnorm},
                        {"norm_before_gate", k.norm_before_gate}, {"bias", k.bias}, {"conv_bias", k.conv_bias},
                        {"chunk_size", 7}};
  if (k.d_ssm > 0) ssm["d_ssm"] = k.d_ssm;
  // dt spans about 0.08 to 1.3 (see random_params): the limit clamps both ends.
  if (k.dt_limit) ssm["dt_limit"] = {0.2, 0.9};
  nlohmann::json j = {{"d_model", kDModel}, {"n_layer", 2}, {"vocab_size", 16}, {"ssm_cfg", ssm}};
  Mamba2Config c = std::get<Mamba2Config>(parse_model_config(j, "test config").ssm);
  if (k.hf_norm) c.norm_per_group = false, c.norm_eps = 1e-6;
  return c;
}

// Random values for every parameter, away from their initial constants so that each one matters.
ParamMap random_params(const Mamba2Config& c, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ParamMap p;
  for (const auto& s : mamba2_param_specs(c, kDModel, 2)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    float* v = t.f32();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (s.name == "in_proj.weight") v[i] = uniform(rng) / std::sqrt(float(kDModel));
      else if (s.name == "out_proj.weight") v[i] = uniform(rng) / std::sqrt(float(c.d_inner));
      else if (s.name == "conv1d.weight") v[i] = uniform(rng) / std::sqrt(float(c.d_conv));
      else if (s.name == "dt_bias") v[i] = -1.0f + 1.5f * uniform(rng);
      else if (s.name == "A_log") v[i] = 1.5f * uniform(rng);  // A from about −0.2 to −4.5
      else if (s.name == "norm.weight") v[i] = 1.0f + 0.3f * normal(rng);
      else v[i] = normal(rng);  // biases, D
    }
    p[s.name] = t;
  }
  return p;
}

State random_state(const Sizes& s, std::mt19937_64& rng) {
  return test::random_conv_ssm_state(s.CD * s.W, s.H * s.P * s.N, rng);
}

class Mamba2Layer : public ::testing::TestWithParam<Case> {};

TEST_P(Mamba2Layer, ParallelAndStepMatchFloat64Recurrence) {
  const Case k = GetParam();
  const Mamba2Config c = config(k);
  const Sizes sz(c, kDModel);
  std::mt19937_64 rng(11 + uint64_t(k.ngroups) * 16 + uint64_t(k.d_ssm > 0) * 8 + uint64_t(k.norm_before_gate) * 4 +
                      uint64_t(k.rmsnorm) * 2 + uint64_t(k.bias) + uint64_t(k.hf_norm) * 32);
  ParamMap params = random_params(c, rng);
  const ref::Params ref_params = ref::widen(params);
  auto layer = cpu::make_mamba2(c, kDModel, params);

  // Every sequence starts from a random state but the second, which starts fresh.
  const size_t n = kLengths.size();
  const std::vector<int64_t> cu = cu_of(kLengths);
  const int64_t T = cu.back();
  std::vector<float> x = test::randn(size_t(T * kDModel), rng);
  std::vector<State> init(n), want_state(n);
  std::vector<Vec> want_y(n);
  for (size_t i = 0; i < n; ++i) {
    init[i] = random_state(sz, rng);
    if (i == 1) init[i] = State{Vec(init[i].conv.size()), Vec(init[i].ssm.size())};
    want_state[i] = init[i];
    Vec xi = ref::widen(std::vector<float>(x.begin() + cu[i] * kDModel, x.begin() + cu[i + 1] * kDModel));
    want_y[i] = ref::mamba2(c, kDModel, ref_params, xi, kLengths[i], want_state[i].conv, want_state[i].ssm);
  }
  auto y_of = [&](const std::vector<float>& y, size_t i) {
    return std::vector<float>(y.begin() + cu[i] * kDModel, y.begin() + cu[i + 1] * kDModel);
  };

  // Parallel form over the packed batch.
  std::vector<LayerState> packed(n);
  for (size_t i = 0; i < n; ++i) packed[i] = test::to_layer_state(*layer, init[i]);
  std::vector<float> y(static_cast<size_t>(T * kDModel), NAN);
  test::forward_with_states(*layer, x.data(), y.data(), Packing{cu}, test::pointers_to(packed));
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", packed forward, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    test::expect_state_near(packed[i], want_state[i], kTol, what);
  }

  // Each sequence alone equals its part of the packed batch.
  for (size_t i = 0; i < n; ++i) {
    LayerState alone = test::to_layer_state(*layer, init[i]);
    std::vector<float> ya(static_cast<size_t>(kLengths[i] * kDModel));
    test::forward_with_states(*layer, x.data() + cu[i] * kDModel, ya.data(), Packing{{0, kLengths[i]}}, {&alone});
    EXPECT_LT(rel_err(ya, want_y[i]), kTol) << k.name() << ", alone, sequence of " << kLengths[i];
    test::expect_state_near(alone, want_state[i], kTol, k.name() + ", alone");
  }

  // Step form: at time t every sequence still running advances by one token, together.
  std::vector<LayerState> stepped(n);
  for (size_t i = 0; i < n; ++i) stepped[i] = test::to_layer_state(*layer, init[i]);
  y = test::step_packed(*layer, x, cu, kDModel, stepped);
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", step, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    test::expect_state_near(stepped[i], want_state[i], kTol, what);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllVariants, Mamba2Layer,
    ::testing::Values(Case{}, Case{.ngroups = 2}, Case{.ngroups = 2, .norm_before_gate = true},
                      Case{.ngroups = 2, .D_has_hdim = true, .bias = true, .conv_bias = false},
                      Case{.d_ssm = 10, .rmsnorm = false}, Case{.ngroups = 2, .d_ssm = 10, .dt_limit = true},
                      Case{.ngroups = 2, .d_ssm = 10, .D_has_hdim = true, .norm_before_gate = true, .bias = true,
                           .dt_limit = true},
                      Case{.ngroups = 2, .hf_norm = true}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name(); });

// ---- Initialisation and presets ---------------------------------------------------------------

using test::max_abs;

// spec/mamba2.md §1–§2 and spec/model.md §6: A_log = log(U(A_init_range)), softplus(dt_bias)
// log-uniform in [dt_min, dt_max], D and norm.weight ones, linear biases zero, conv1d within
// PyTorch's default bound ±1/√d_conv; and the decode state's shapes (§4).
TEST(Mamba2Init, ParametersAndStateFollowSpec) {
  nlohmann::json j = {{"d_model", 40}, {"n_layer", 3}, {"vocab_size", 16},
                      {"ssm_cfg", {{"layer", "Mamba2"}, {"d_state", 6}, {"headdim", 10}, {"ngroups", 2},
                                   {"A_init_range", {2, 5}}, {"D_has_hdim", true}, {"bias", true}}}};
  const ModelConfig mc = parse_model_config(j, "test config");
  const Mamba2Config& c = std::get<Mamba2Config>(mc.ssm);
  const Model m = Model::init(mc, 3);
  std::map<std::string, Tensor> ps;
  for (const auto& [name, t] : m.parameters()) ps[name] = t;
  const int64_t H = 8, DS = 80;  // d_inner = 2 · 40, 8 heads of 10
  for (int64_t l = 0; l < 3; ++l) {
    const std::string p = "backbone.layers." + std::to_string(l) + ".mixer.";
    const Tensor &A_log = ps.at(p + "A_log"), &dt_bias = ps.at(p + "dt_bias");
    ASSERT_EQ(A_log.shape, (Shape{H}));
    ASSERT_EQ(ps.at(p + "D").shape, (Shape{DS}));
    double a_lo = 1e9, a_hi = 0, dt_lo = 1, dt_hi = 0;
    for (int64_t h = 0; h < H; ++h) {
      a_lo = std::min(a_lo, std::exp(double(A_log.f32()[h]))), a_hi = std::max(a_hi, std::exp(double(A_log.f32()[h])));
      const double dt = softplus(double(dt_bias.f32()[h]));
      dt_lo = std::min(dt_lo, dt), dt_hi = std::max(dt_hi, dt);
    }
    EXPECT_GE(a_lo, 2 * (1 - 1e-6));
    EXPECT_LE(a_hi, 5 * (1 + 1e-6));
    EXPECT_GT(a_hi - a_lo, 1.0);  // spread over the range, not a constant
    EXPECT_GE(dt_lo, c.dt_min * (1 - 1e-5));
    EXPECT_LE(dt_hi, c.dt_max * (1 + 1e-5));
    for (const char* ones : {"D", "norm.weight"})
      for (int64_t i = 0; i < ps.at(p + ones).numel(); ++i) EXPECT_EQ(ps.at(p + ones).f32()[i], 1.0f) << ones;
    EXPECT_EQ(max_abs(ps.at(p + "in_proj.bias")), 0.0f);
    EXPECT_EQ(max_abs(ps.at(p + "out_proj.bias")), 0.0f);
    for (auto [name, bound] : {std::pair{"conv1d.weight", 0.5}, {"conv1d.bias", 0.5},
                               {"in_proj.weight", 1.0 / std::sqrt(40.0)},
                               {"out_proj.weight", 1.0 / std::sqrt(80.0) / std::sqrt(3.0)}}) {
      const float v = max_abs(ps.at(p + name));
      EXPECT_LE(v, bound * (1 + 1e-6)) << name;
      EXPECT_GT(v, 0.7 * bound) << name;
    }
  }
  const LayerState s = m.new_state().layer(0);
  EXPECT_EQ(s["conv"].shape, (Shape{DS + 2 * 2 * 6, 4}));
  EXPECT_EQ(s["ssm"].shape, (Shape{H, 10, 6}));
}

TEST(Mamba2Preset, PublicMamba2_130mShape) {
  const ModelConfig c = preset_config("mamba2-130m");
  ASSERT_EQ(c.ssm_kind, MixerKind::Mamba2);
  const Mamba2Config& m = std::get<Mamba2Config>(c.ssm);
  EXPECT_EQ(m.nheads, 24);
  EXPECT_EQ(m.chunk_size, 256);
  EXPECT_EQ(c.vocab_padded(), 50288);
  EXPECT_TRUE(c.tie_embeddings);
  // The public checkpoint's 128,989,632 parameters: embedding 50288·768, norm_f 768, and per layer
  // norm 768 + in_proj 3352·768 + conv 1792·5 + dt_bias, A_log, D 3·24 + norm 1536 + out_proj 768·1536.
  int64_t n = c.vocab_padded() * c.d_model + c.d_model;
  for (const auto& s : mamba2_param_specs(m, c.d_model, c.n_layer)) n += shape_numel(s.shape) * c.n_layer;
  n += c.d_model * c.n_layer;
  EXPECT_EQ(n, 128989632);
  const ModelConfig h = preset_config("mamba2-tiny-hybrid");
  EXPECT_EQ(h.ssm_kind, MixerKind::Mamba2);
  EXPECT_EQ(h.attn_layer_idx.size(), 1u);
  EXPECT_GT(h.d_intermediate, 0);
}

// ---- Golden reference checkpoint (mamba2_hybrid: chunk 16, 2 groups) ---------------------------

const char* const kGolden = "mamba2_hybrid";

std::vector<double> rows_of(const std::vector<double>& v, int64_t r0, int64_t r1, int64_t V) {
  return std::vector<double>(v.begin() + r0 * V, v.begin() + r1 * V);
}

TEST(Mamba2Golden, HybridLogits) {
  test::GoldenRun g = test::load_golden(kGolden);
  EXPECT_LT(rel_err(test::packed_logits(g), g.ref), 1e-4);
}

TEST(Mamba2Golden, PrefillThenStepAcrossChunkBoundaries) {
  test::GoldenRun g = test::load_golden(kGolden);
  ASSERT_EQ(std::get<Mamba2Config>(g.model.config().ssm).chunk_size, 16);
  for (int64_t k : {0, 1, 16, 17, 33})
    for (int64_t b = 0; b < g.B; ++b)
      EXPECT_LT(rel_err(test::prefill_then_step(g, b, k), rows_of(g.ref, b * g.L, (b + 1) * g.L, g.V)), 1e-4)
          << "k = " << k << ", sequence " << b;
}

// Runs of the given lengths packed in one forward call from fresh states; their logits.
std::vector<float> forward_packed(Model& m, const std::vector<int32_t>& toks, const std::vector<int64_t>& lens,
                                  std::vector<SequenceState>& states) {
  states.assign(lens.size(), m.new_state());
  std::vector<SequenceState*> sp;
  for (auto& s : states) sp.push_back(&s);
  std::vector<float> out(toks.size() * size_t(m.config().vocab_padded()));
  m.forward(toks, cu_of(lens), sp, out.data());
  return out;
}

TEST(Mamba2Golden, PackedVarlenEqualsSeparate) {
  test::GoldenRun g = test::load_golden(kGolden);
  // Runs of different lengths (one shorter than the conv window, one over two chunks) cut from the ids.
  test::expect_packed_equals_separate(g, {3, 37, 20}, 17);
}

// Steps `s` through toks one token at a time; the logits of each.
std::vector<float> step_through(Model& m, SequenceState& s, std::span<const int32_t> toks) {
  const int64_t V = m.config().vocab_padded();
  std::vector<float> out(toks.size() * size_t(V));
  SequenceState* sp = &s;
  for (size_t t = 0; t < toks.size(); ++t)
    m.step(toks.subspan(t, 1), std::span<SequenceState* const>(&sp, 1), out.data() + int64_t(t) * V);
  return out;
}

// Prefill k tokens, save the decode state as tensors and restore it into a fresh state: stepping
// on from the copy gives exactly the logits of stepping on from the original, and the reference's.
TEST(Mamba2Golden, DecodeStateRoundTrip) {
  test::GoldenRun g = test::load_golden(kGolden);
  const std::span<const int32_t> seq(g.ids.data(), size_t(g.L));
  for (int64_t k : {2, 17}) {
    std::vector<SequenceState> st;
    forward_packed(g.model, std::vector<int32_t>(seq.begin(), seq.begin() + k), {k}, st);
    const auto tensors = state_to_tensors(st[0]);
    for (const auto& [name, t] : tensors) {
      if (name.ends_with(".conv") || name.ends_with(".ssm")) {
        EXPECT_GT(max_abs(t), 0.0f) << name << " is all zero after a prefill of " << k;
      }
    }
    SequenceState restored = g.model.new_state();
    state_from_tensors(restored, tensors, "round trip");
    EXPECT_EQ(restored.n_tokens, k);
    const std::vector<float> original = step_through(g.model, st[0], seq.subspan(size_t(k)));
    const std::vector<float> copy = step_through(g.model, restored, seq.subspan(size_t(k)));
    EXPECT_EQ(copy, original) << "k = " << k;
    EXPECT_LT(rel_err(copy, rows_of(g.ref, k, g.L, g.V)), 1e-4) << "k = " << k;
  }
}

// ---- Hugging Face Mamba2ForCausalLM (spec/mamba2.md §5) ---------------------------------------

TEST(Mamba2Hf, LogitsMatchReference) {
  test::GoldenRun g = test::load_golden("hf_mamba2");
  const Mamba2Config& c = std::get<Mamba2Config>(g.model.config().ssm);
  ASSERT_EQ(c.ngroups, 2);  // where normalising over all of d_inner differs from per group
  EXPECT_FALSE(c.norm_per_group);
  EXPECT_FALSE(g.model.config().tie_embeddings);
  EXPECT_LT(rel_err(test::packed_logits(g), g.ref), 1e-4);
  for (int64_t k : {0, 17})
    EXPECT_LT(rel_err(test::prefill_then_step(g, 1, k), rows_of(g.ref, g.L, 2 * g.L, g.V)), 1e-4) << "k = " << k;
}

// The prompt prefilled, then 12 greedy tokens through the recurrent form: HF's own tokens.
TEST(Mamba2Hf, GreedyTokensMatchReference) {
  Model m = Model::load(test::golden("hf_mamba2"));
  const auto [got, want] = test::golden_greedy(m, "hf_mamba2");
  EXPECT_EQ(got, want);
}

nlohmann::json hf_config() {
  std::ifstream in(test::golden("hf_mamba2/config.json"));
  return nlohmann::json::parse(in);
}

TEST(Mamba2Hf, ConfigTranslation) {
  const CheckpointLayout l = parse_checkpoint_layout(hf_config(), "hf");
  const Mamba2Config& m = std::get<Mamba2Config>(l.config.ssm);
  EXPECT_EQ(l.config.d_model, 64);
  EXPECT_EQ(l.config.n_layer, 3);
  EXPECT_EQ(l.config.vocab_padded(), 256);
  EXPECT_EQ(m.nheads, 8);
  EXPECT_EQ(m.headdim, 16);
  EXPECT_EQ(m.d_state, 32);
  EXPECT_EQ(m.chunk_size, 16);
  EXPECT_TRUE(std::isinf(m.dt_limit_max));  // {"__float__": "Infinity"}
  EXPECT_EQ(l.file_name("backbone.embedding.weight"), "backbone.embeddings.weight");
  EXPECT_EQ(l.file_name("backbone.norm_f.weight"), "backbone.norm_f.weight");
  // Refused: a field of unknown meaning, heads that do not match, a norm variant not implemented,
  // another model type; and writing the model as a reference config (it cannot say "over all groups").
  for (auto [key, value] : {std::pair<const char*, nlohmann::json>{"some_new_field", 1}, {"num_heads", 4},
                            {"norm_before_gate", true}, {"hidden_act", "gelu"}, {"model_type", "mamba"}}) {
    nlohmann::json j = hf_config();
    j[key] = value;
    EXPECT_THROW(parse_checkpoint_layout(j, "hf"), Error) << key;
  }
  EXPECT_THROW(model_config_to_json(l.config), Error);
}

}  // namespace
}  // namespace m3
