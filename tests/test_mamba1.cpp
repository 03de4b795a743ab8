// The Mamba-1 mixer (spec/mamba1.md): the selective scan kernel and the whole CPU layer against
// float64 per-token recurrences written here straight from §3 (packed parallel form and step
// form, carried-in conv window and SSM state, odd sizes, the bias / conv_bias variants, §5's
// FalconMamba norms on δ, B and C); the golden reference checkpoint mamba1_model (logits,
// prefill-then-step, packed varlen); the decode state through a safetensors file; Hugging Face's
// MambaForCausalLM and FalconMambaForCausalLM (§5: hf_mamba1 and hf_falconmamba logits and greedy
// tokens, the config translations); initialisation (§1, §2) and the mamba1-130m preset.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "conv_ssm_state.h"
#include "cpu/layers.h"
#include "cpu/selective_scan.h"
#include "expect_error.h"
#include "golden_model.h"
#include "io/hf_config.h"
#include "layer_states.h"
#include "layer_steps.h"
#include "m3/presets.h"
#include "model/specs.h"
#include "reference.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64

double silu(double x) { return x / (1.0 + std::exp(-x)); }
double softplus(double x) { return x > 30.0 ? x : std::log1p(std::exp(x)); }

// ---- The selective scan kernel (§3 step 4) ----

// Float64 recurrence over one sequence: u, dt [L, D], B, C [L, N], A [D, N], Dskip [D]; h [D, N]
// is updated in place. Returns y [L, D].
Vec scan_reference(const Vec& u, const Vec& dt, const Vec& B, const Vec& C, const Vec& A, const Vec& Dskip, int64_t L,
                   int64_t D, int64_t N, Vec& h) {
  Vec y(static_cast<size_t>(L * D));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < D; ++c) {
      const double ut = u[size_t(t * D + c)], d = dt[size_t(t * D + c)];
      double acc = Dskip[size_t(c)] * ut;
      for (int64_t n = 0; n < N; ++n) {
        double& hn = h[size_t(c * N + n)];
        hn = std::exp(d * A[size_t(c * N + n)]) * hn + d * B[size_t(t * N + n)] * ut;
        acc += hn * C[size_t(t * N + n)];
      }
      y[size_t(t * D + c)] = acc;
    }
  return y;
}

// Rows [r0, r1) of a [rows, width] array.
template <class V>
V rows_of(const V& a, int64_t r0, int64_t r1, int64_t width) {
  return V(a.begin() + r0 * width, a.begin() + r1 * width);
}

TEST(Mamba1Scan, PackedAndStepMatchFloat64Recurrence) {
  std::mt19937_64 rng(5);
  // 37 channels: two full blocks of the kernel and a partial one. Lengths include an empty sequence.
  const int64_t D = 37, N = 7;
  const std::vector<int64_t> lens = {1, 0, 6, 33};
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) cu.push_back(cu.back() + L);
  const int64_t T = cu.back(), n = int64_t(lens.size());
  // Inputs live in wider rows (ld > width) as they do inside the layer.
  const int64_t ld = D + 3, bc_ld = 2 * N + 1, y_ld = D + 2;
  std::uniform_real_distribution<float> unif(0.0f, 1.0f);
  std::vector<float> u = test::randn(size_t(T * ld), rng), dt(static_cast<size_t>(T * ld)),
                     bc = test::randn(size_t(T * bc_ld), rng), A(static_cast<size_t>(D * N)),
                     Dskip = test::randn(size_t(D), rng);
  // Δ from 0.01 to 5 and A from −0.4 to −20: decays from nearly 1 to below the kernel's e^−87 clamp.
  for (float& v : dt) v = 0.01f * std::pow(500.0f, unif(rng));
  for (float& v : A) v = -std::exp(-1.0f + 4.0f * unif(rng));
  std::vector<std::vector<float>> h0(static_cast<size_t>(n));
  for (auto& h : h0) h = test::randn(size_t(D * N), rng, 0.5f);

  // Float64 reference, per sequence, on the dense parts of the inputs.
  auto dense = [&](const std::vector<float>& a, int64_t stride, int64_t off, int64_t width) {
    Vec r;
    for (int64_t t = 0; t < T; ++t) r.insert(r.end(), a.begin() + t * stride + off, a.begin() + t * stride + off + width);
    return r;
  };
  const Vec ur = dense(u, ld, 0, D), dtr = dense(dt, ld, 0, D), Br = dense(bc, bc_ld, 0, N),
            Cr = dense(bc, bc_ld, N, N);
  std::vector<Vec> want_y(static_cast<size_t>(n)), want_h(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    want_h[size_t(i)] = ref::widen(h0[size_t(i)]);
    const int64_t a = cu[size_t(i)], b = cu[size_t(i) + 1];
    want_y[size_t(i)] = scan_reference(rows_of(ur, a, b, D), rows_of(dtr, a, b, D), rows_of(Br, a, b, N),
                                       rows_of(Cr, a, b, N), ref::widen(A), ref::widen(Dskip), b - a, D, N,
                                       want_h[size_t(i)]);
  }
  const cpu::SelectiveScanInputs in{u.data(), ld, dt.data(), ld, bc.data(), bc.data() + N, bc_ld, A.data(),
                                    Dskip.data()};
  auto y_dense = [&](const std::vector<float>& y, int64_t i) {
    std::vector<float> r;
    for (int64_t t = cu[size_t(i)]; t < cu[size_t(i) + 1]; ++t)
      r.insert(r.end(), y.begin() + t * y_ld, y.begin() + t * y_ld + D);
    return r;
  };

  // Packed: all sequences in one call.
  std::vector<std::vector<float>> h = h0;
  std::vector<float*> hp;
  for (auto& x : h) hp.push_back(x.data());
  std::vector<float> y(static_cast<size_t>(T * y_ld), NAN);
  cpu::selective_scan(D, N, in, cu.data(), n, hp.data(), y.data(), y_ld);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_LT(rel_err(y_dense(y, i), want_y[size_t(i)]), kTol) << "packed, sequence " << i;
    EXPECT_LT(rel_err(h[size_t(i)], want_h[size_t(i)]), kTol) << "packed, final state of sequence " << i;
  }

  // Recurrent: at time t every sequence still running advances by one token, together (one-token
  // sequences whose rows are gathered from the packed inputs).
  h = h0;
  std::fill(y.begin(), y.end(), NAN);
  for (int64_t t = 0; t < lens.back(); ++t) {
    std::vector<float> us, dts, bcs;
    std::vector<float*> sp;
    std::vector<int64_t> rows, step_cu = {0};
    for (int64_t i = 0; i < n; ++i)
      if (t < lens[size_t(i)]) {
        const int64_t r = cu[size_t(i)] + t;
        us.insert(us.end(), u.begin() + r * ld, u.begin() + (r + 1) * ld);
        dts.insert(dts.end(), dt.begin() + r * ld, dt.begin() + (r + 1) * ld);
        bcs.insert(bcs.end(), bc.begin() + r * bc_ld, bc.begin() + (r + 1) * bc_ld);
        sp.push_back(h[size_t(i)].data());
        rows.push_back(r);
        step_cu.push_back(step_cu.back() + 1);
      }
    const cpu::SelectiveScanInputs sin{us.data(), ld, dts.data(), ld, bcs.data(), bcs.data() + N, bc_ld, A.data(),
                                       Dskip.data()};
    std::vector<float> ys(rows.size() * size_t(y_ld));
    cpu::selective_scan(D, N, sin, step_cu.data(), int64_t(rows.size()), sp.data(), ys.data(), y_ld);
    for (size_t k = 0; k < rows.size(); ++k) std::copy_n(ys.begin() + int64_t(k) * y_ld, D, y.begin() + rows[k] * y_ld);
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_LT(rel_err(y_dense(y, i), want_y[size_t(i)]), kTol) << "step, sequence " << i;
    EXPECT_LT(rel_err(h[size_t(i)], want_h[size_t(i)]), kTol) << "step, final state of sequence " << i;
  }
}

// ---- The whole mixer (§3) ----

struct Case {
  bool bias, conv_bias;
  int64_t d_conv;
  int64_t dt_rank;         // 0: "auto"
  double bcdt_rms_eps = 0;  // > 0: FalconMamba's norms on δ, B and C (§5) with this epsilon
  bool norm_weight = false;  // Jamba's: those norms with weights
  std::string name() const {
    return std::string(bias ? "Bias" : "NoBias") + (conv_bias ? "_ConvBias" : "_NoConvBias") + "_Conv" +
           std::to_string(d_conv) + (dt_rank ? "_DtRank" + std::to_string(dt_rank) : "_DtRankAuto") +
           (bcdt_rms_eps > 0 ? "_BcdtRmsNorm" : "") + (norm_weight ? "Weighted" : "");
  }
};

constexpr int64_t kDModel = 13;  // expand 2 → 26 channels: one full block of the kernel and a partial one
constexpr int64_t kDState = 7;
// Shorter and longer than the conv window, packed in one batch.
const std::vector<int64_t> kLengths = {1, 2, 5, 17};

Mamba1Config config(const Case& k) {
  nlohmann::json ssm = {{"layer", "Mamba1"}, {"d_state", kDState}, {"d_conv", k.d_conv}, {"expand", 2},
                        {"bias", k.bias}, {"conv_bias", k.conv_bias}};
  ssm["dt_rank"] = k.dt_rank ? nlohmann::json(k.dt_rank) : nlohmann::json("auto");
  nlohmann::json j = {{"d_model", kDModel}, {"n_layer", 2}, {"vocab_size", 16}, {"ssm_cfg", ssm}};
  Mamba1Config c = std::get<Mamba1Config>(parse_model_config(j, "test config").ssm);
  // The reference format cannot express FalconMamba's norms; only its HF config sets them.
  c.bcdt_rmsnorm = k.bcdt_rms_eps > 0;
  c.bcdt_rms_eps = k.bcdt_rms_eps;
  c.bcdt_norm_weight = k.norm_weight;
  return c;
}

// Random values for every parameter, away from their initial values so that each one matters.
ParamMap random_params(const Mamba1Config& c, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ParamMap p;
  for (const auto& s : mamba1_param_specs(c, kDModel, 2)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    float* v = t.f32();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (s.name == "A_log") v[i] = std::log(float(i % c.d_state + 1)) + 0.3f * normal(rng);
      else if (s.name == "dt_proj.bias") v[i] = -1.0f + 1.5f * uniform(rng);  // Δ from about 0.1 to 1.3
      else if (s.name == "dt_proj.weight") v[i] = 0.5f * normal(rng) / std::sqrt(float(s.shape[1]));
      else if (s.name.ends_with("_layernorm.weight")) v[i] = 1.0f + 0.5f * normal(rng);
      else if (s.name.ends_with(".weight")) v[i] = uniform(rng) / std::sqrt(float(t.numel() / s.shape[0]));
      else v[i] = 0.5f * normal(rng);  // biases, D
    }
    p[s.name] = t;
  }
  return p;
}

// Decode state of the reference: the conv window [DI, W] (the last W inputs x, oldest first) and
// the SSM state [DI, N].
using RefState = test::ConvSsmState;

// spec/mamba1.md §3 over one sequence x [L, d_model], one token at a time, from `st` (left as the
// state after the last token). Sizes come from the case, not from the engine's parsed config.
Vec mamba1_reference(const Case& k, const ref::Params& p, const Vec& x, int64_t L, RefState& st) {
  const int64_t DI = 2 * kDModel, N = kDState, W = k.d_conv, R = k.dt_rank ? k.dt_rank : (kDModel + 15) / 16;
  auto optional = [&](const char* name) { return p.count(name) ? p.at(name) : Vec{}; };
  const Vec &conv_w = p.at("conv1d.weight"), conv_b = optional("conv1d.bias"), &A_log = p.at("A_log"),
            &Dskip = p.at("D");
  Vec out;
  for (int64_t t = 0; t < L; ++t) {
    const Vec xt(x.begin() + t * kDModel, x.begin() + (t + 1) * kDModel);
    const Vec xz = ref::linear(xt, p.at("in_proj.weight"), optional("in_proj.bias"), 1, kDModel, 2 * DI);
    Vec u(static_cast<size_t>(DI));
    for (int64_t c = 0; c < DI; ++c) {
      double* win = st.conv.data() + c * W;
      std::copy(win + 1, win + W, win);
      win[W - 1] = xz[size_t(c)];
      double acc = conv_b.empty() ? 0.0 : conv_b[size_t(c)];
      for (int64_t j = 0; j < W; ++j) acc += conv_w[size_t(c * W + j)] * win[j];
      u[size_t(c)] = silu(acc);
    }
    Vec dbc = ref::linear(u, p.at("x_proj.weight"), {}, 1, DI, R + 2 * N);
    // §5: δ, B, C each divided by sqrt(mean of its squares + eps), then (Jamba) times its weight.
    if (k.bcdt_rms_eps > 0)
      for (auto [off, n, w] : {std::tuple{int64_t(0), R, "dt_layernorm.weight"}, {R, N, "b_layernorm.weight"},
                               {R + N, N, "c_layernorm.weight"}}) {
        double ss = 0;
        for (int64_t i = off; i < off + n; ++i) ss += dbc[size_t(i)] * dbc[size_t(i)];
        const double r = 1.0 / std::sqrt(ss / double(n) + k.bcdt_rms_eps);
        for (int64_t i = off; i < off + n; ++i) dbc[size_t(i)] *= r * (k.norm_weight ? p.at(w)[size_t(i - off)] : 1.0);
      }
    const Vec dt = ref::linear(Vec(dbc.begin(), dbc.begin() + R), p.at("dt_proj.weight"), p.at("dt_proj.bias"), 1, R, DI);
    Vec gated(static_cast<size_t>(DI));
    for (int64_t c = 0; c < DI; ++c) {
      const double delta = softplus(dt[size_t(c)]);
      double y = Dskip[size_t(c)] * u[size_t(c)];
      for (int64_t n = 0; n < N; ++n) {
        double& h = st.ssm[size_t(c * N + n)];
        h = std::exp(delta * -std::exp(A_log[size_t(c * N + n)])) * h + delta * dbc[size_t(R + n)] * u[size_t(c)];
        y += h * dbc[size_t(R + N + n)];
      }
      gated[size_t(c)] = y * silu(xz[size_t(DI + c)]);
    }
    const Vec o = ref::linear(gated, p.at("out_proj.weight"), optional("out_proj.bias"), 1, DI, kDModel);
    out.insert(out.end(), o.begin(), o.end());
  }
  return out;
}

RefState random_state(const Case& k, std::mt19937_64& rng) {
  return test::random_conv_ssm_state(2 * kDModel * k.d_conv, 2 * kDModel * kDState, rng);
}

class Mamba1Layer : public ::testing::TestWithParam<Case> {};

TEST_P(Mamba1Layer, ParallelAndStepMatchFloat64Recurrence) {
  const Case k = GetParam();
  const Mamba1Config c = config(k);
  std::mt19937_64 rng(29 + uint64_t(k.bias) * 2 + uint64_t(k.conv_bias) + uint64_t(k.d_conv) * 4);
  ParamMap params = random_params(c, rng);
  const ref::Params ref_params = ref::widen(params);
  auto layer = cpu::make_mamba1(c, kDModel, params);

  // Every sequence starts from a random state but the second, which starts fresh.
  const size_t n = kLengths.size();
  std::vector<int64_t> cu = {0};
  for (int64_t L : kLengths) cu.push_back(cu.back() + L);
  const int64_t T = cu.back();
  std::vector<float> x = test::randn(size_t(T * kDModel), rng);
  std::vector<RefState> init(n), want_state(n);
  std::vector<Vec> want_y(n);
  for (size_t i = 0; i < n; ++i) {
    init[i] = random_state(k, rng);
    if (i == 1) std::fill(init[i].conv.begin(), init[i].conv.end(), 0.0), std::fill(init[i].ssm.begin(), init[i].ssm.end(), 0.0);
    want_state[i] = init[i];
    want_y[i] = mamba1_reference(k, ref_params, ref::widen(rows_of(x, cu[i], cu[i + 1], kDModel)), kLengths[i],
                                 want_state[i]);
  }

  // Parallel form over the packed batch.
  std::vector<LayerState> packed(n);
  for (size_t i = 0; i < n; ++i) packed[i] = test::to_layer_state(*layer, init[i]);
  std::vector<float> y(size_t(T * kDModel), NAN);
  test::forward_with_states(*layer, x.data(), y.data(), Packing{cu}, test::pointers_to(packed));
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", packed forward, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(rows_of(y, cu[i], cu[i + 1], kDModel), want_y[i]), kTol) << what;
    test::expect_state_near(packed[i], want_state[i], kTol, what);
  }

  // Step form: at time t every sequence still running advances by one token, together.
  std::vector<LayerState> stepped(n);
  for (size_t i = 0; i < n; ++i) stepped[i] = test::to_layer_state(*layer, init[i]);
  y = test::step_packed(*layer, x, cu, kDModel, stepped);
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", step, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(rows_of(y, cu[i], cu[i + 1], kDModel), want_y[i]), kTol) << what;
    test::expect_state_near(stepped[i], want_state[i], kTol, what);
  }
}

// The FalconMamba cases take a large epsilon, so that using the wrong one shows.
INSTANTIATE_TEST_SUITE_P(Variants, Mamba1Layer,
                         ::testing::Values(Case{false, true, 4, 0}, Case{true, true, 3, 3}, Case{false, false, 4, 3},
                                           Case{false, true, 4, 3, 0.05}, Case{true, false, 3, 0, 0.05},
                                           Case{false, true, 4, 3, 0.05, true}),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name(); });

// ---- The golden reference checkpoint ----

TEST(Mamba1Golden, LogitsMatchReference) {
  test::GoldenRun g = test::load_golden("mamba1_model");
  EXPECT_LT(rel_err(test::packed_logits(g), g.ref), 1e-4);
}

// Prefill k tokens, then step through the rest: the float64 reference's logits (not the engine's
// own parallel form, which would share its mistakes).
TEST(Mamba1Golden, PrefillThenStepMatchesReference) {
  test::GoldenRun g = test::load_golden("mamba1_model");
  // Around the conv width of 4, and all but the last token.
  for (int64_t k : std::vector<int64_t>{1, 3, 4, 5, g.L - 1})
    for (int64_t b = 0; b < g.B; ++b) {
      const std::vector<float> got = test::prefill_then_step(g, b, k);
      const std::vector<double> want = rows_of(g.ref, b * g.L, (b + 1) * g.L, g.V);
      EXPECT_LT(rel_err(got, want), 1e-4) << "k = " << k << ", sequence " << b;
      EXPECT_LT(test::max_row_err(got, want, size_t(g.V)), test::kRowTolerance) << "k = " << k << ", sequence " << b;
    }
}

TEST(Mamba1Golden, PackedVarlenEqualsSeparate) {
  test::GoldenRun g = test::load_golden("mamba1_model");
  // Runs of different lengths (one shorter than the conv window) cut from the golden ids.
  test::expect_packed_equals_separate(g, {2, 30, 17}, 5);
}

// Prefill, write the decode state to a safetensors file, read it into a fresh state and decode the
// rest of the sequence from there: the logits are the reference's.
TEST(Mamba1Golden, DecodeStateRoundTripThroughSafetensors) {
  test::GoldenRun g = test::load_golden("mamba1_model");
  const Mamba1Config& c = std::get<Mamba1Config>(g.model.config().ssm);
  const int64_t k = 11;
  SequenceState s = g.model.new_state();
  SequenceState* sp = &s;
  std::vector<float> logits(static_cast<size_t>(g.L * g.V));
  int64_t cu[2] = {0, k};
  g.model.forward(std::span<const int32_t>(g.ids.data(), size_t(k)), cu, std::span<SequenceState* const>(&sp, 1),
                  logits.data());

  test::TempDir dir;
  const NamedTensors saved = state_to_tensors(s);
  for (int64_t l = 0; l < g.model.config().n_layer; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    bool conv = false, ssm = false;
    for (const auto& [name, t] : saved) {
      conv |= name == p + "conv" && t.shape == Shape{c.d_inner, c.d_conv};
      ssm |= name == p + "ssm" && t.shape == Shape{c.d_inner, c.d_state};
    }
    EXPECT_TRUE(conv && ssm) << "layer " << l << " state is not conv [d_inner, d_conv] + ssm [d_inner, d_state]";
  }
  save_safetensors(dir.file("state.safetensors"), saved);
  SafetensorsFile f = SafetensorsFile::open(dir.file("state.safetensors"));
  NamedTensors loaded;
  for (const auto& name : f.names()) loaded.emplace_back(name, f.get(name));
  SequenceState r = g.model.new_state();
  state_from_tensors(r, loaded, f.path());
  EXPECT_EQ(r.n_tokens, k);
  SequenceState* rp = &r;
  for (int64_t t = k; t < g.L; ++t)
    g.model.step(std::span<const int32_t>(g.ids.data() + t, 1), std::span<SequenceState* const>(&rp, 1),
                 logits.data() + t * g.V);
  EXPECT_LT(rel_err(rows_of(logits, k, g.L, g.V), rows_of(g.ref, k, g.L, g.V)), 1e-4);
}

// ---- Hugging Face MambaForCausalLM (§5) ----

TEST(Mamba1HfGolden, LogitsMatchTransformers) {
  test::GoldenRun g = test::load_golden("hf_mamba1");
  EXPECT_EQ(std::get<Mamba1Config>(g.model.config().ssm).dt_rank, 8);
  EXPECT_EQ(g.model.config().vocab_padded(), 256);  // HF does not pad the vocabulary
  EXPECT_LT(rel_err(test::packed_logits(g), g.ref), 1e-4);
}

TEST(Mamba1HfGolden, GreedyTokensMatchTransformers) {
  Model m = Model::load(test::golden("hf_mamba1"));
  const auto [got, want] = test::golden_greedy(m, "hf_mamba1");
  EXPECT_EQ(got, want);
}

// The golden config.json with one field changed (or removed when `value` is null).
nlohmann::json hf_config_with(const std::string& field, const nlohmann::json& value) {
  std::ifstream in(test::golden("hf_mamba1/config.json"));
  nlohmann::json j = nlohmann::json::parse(in);
  if (value.is_null()) j.erase(field);
  else j[field] = value;
  return j;
}

TEST(Mamba1HfConfig, TranslationAndRefusals) {
  const CheckpointLayout l = parse_checkpoint_layout(hf_config_with("time_step_rank", "auto"), "hf config");
  const Mamba1Config& m = std::get<Mamba1Config>(l.config.ssm);
  EXPECT_EQ(m.dt_rank, 4);  // ceil(64 / 16)
  EXPECT_EQ(m.d_inner, 128);
  EXPECT_EQ(m.d_state, 16);
  EXPECT_EQ(m.d_conv, 4);
  EXPECT_TRUE(m.conv_bias);
  EXPECT_FALSE(m.bias);
  EXPECT_EQ(l.config.n_layer, 3);
  EXPECT_TRUE(l.config.tie_embeddings);
  EXPECT_EQ(l.file_name("backbone.embedding.weight"), "backbone.embeddings.weight");
  EXPECT_EQ(l.file_name("backbone.layers.0.mixer.A_log"), "backbone.layers.0.mixer.A_log");
  EXPECT_EQ(parse_checkpoint_layout(hf_config_with("layer_norm_epsilon", 1e-3), "hf config").config.norm_eps, 1e-3);
  EXPECT_TRUE(std::get<Mamba1Config>(parse_checkpoint_layout(hf_config_with("use_bias", true), "hf").config.ssm).bias);
  EXPECT_FALSE(parse_checkpoint_layout(hf_config_with("tie_word_embeddings", false), "hf").config.tie_embeddings);
  EXPECT_TRUE(parse_checkpoint_layout(hf_config_with("tie_word_embeddings", nullptr), "hf").config.tie_embeddings);
  test::expect_error([] { parse_checkpoint_layout(hf_config_with("hidden_act", "gelu"), "hf config"); },
                     {"hf config", "hidden_act", "gelu"});
  test::expect_error([] { parse_checkpoint_layout(hf_config_with("intermediate_size", 100), "hf config"); },
                     {"hf config", "intermediate_size", "128"});
  test::expect_error([] { parse_checkpoint_layout(hf_config_with("mixer_rms_eps", 1e-6), "hf config"); },
                     {"hf config", "unknown field 'mixer_rms_eps'", "\"mamba\""});
  test::expect_error([] { parse_checkpoint_layout(hf_config_with("state_size", "16"), "hf config"); },
                     {"hf config", "d_state"});
}

// ---- Hugging Face FalconMambaForCausalLM (§5: weightless RMSNorm on δ, B and C) ----

TEST(Mamba1FalconGolden, LogitsMatchTransformers) {
  test::GoldenRun g = test::load_golden("hf_falconmamba");
  const Mamba1Config& c = std::get<Mamba1Config>(g.model.config().ssm);
  EXPECT_TRUE(c.bcdt_rmsnorm);
  EXPECT_EQ(c.bcdt_rms_eps, 1e-6);
  EXPECT_LT(rel_err(test::packed_logits(g), g.ref), 1e-4);
  // The recurrent form from several prefill lengths (around the conv width of 4).
  for (int64_t k : {0, 1, 4, 5, 30})
    EXPECT_LT(rel_err(test::prefill_then_step(g, 1, k), rows_of(g.ref, g.L, 2 * g.L, g.V)), 1e-4) << "k = " << k;
}

// The same checkpoint read as a plain "mamba" one (no norms on δ, B, C) is far from the
// reference: the golden logits do tell the two apart.
TEST(Mamba1FalconGolden, WithoutTheNormsLogitsDiffer) {
  std::ifstream in(test::golden("hf_falconmamba/config.json"));
  nlohmann::json j = nlohmann::json::parse(in);
  j["model_type"] = "mamba";
  j.erase("mixer_rms_eps");
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << j.dump();
  std::filesystem::copy_file(test::golden("hf_falconmamba/model.safetensors"), dir.file("model.safetensors"));
  test::GoldenRun g = test::load_golden("hf_falconmamba");
  g.model = Model::load(dir.path());
  EXPECT_GT(rel_err(test::packed_logits(g), g.ref), 1e-2);
}

TEST(Mamba1FalconGolden, GreedyTokensMatchTransformers) {
  Model m = Model::load(test::golden("hf_falconmamba"));
  const auto [got, want] = test::golden_greedy(m, "hf_falconmamba");
  EXPECT_EQ(got, want);
}

// The golden FalconMamba config.json with one field changed (or removed when `value` is null).
nlohmann::json falcon_config_with(const std::string& field, const nlohmann::json& value) {
  std::ifstream in(test::golden("hf_falconmamba/config.json"));
  nlohmann::json j = nlohmann::json::parse(in);
  if (value.is_null()) j.erase(field);
  else j[field] = value;
  return j;
}

TEST(Mamba1FalconConfig, TranslationRefusalsAndNoReferenceConfig) {
  auto mixer = [](const nlohmann::json& j) {
    return std::get<Mamba1Config>(parse_checkpoint_layout(j, "falcon config").config.ssm);
  };
  const Mamba1Config m = mixer(falcon_config_with("mixer_rms_eps", 1e-3));
  EXPECT_TRUE(m.bcdt_rmsnorm);
  EXPECT_EQ(m.bcdt_rms_eps, 1e-3);
  EXPECT_EQ(m.dt_rank, 8);
  EXPECT_EQ(m.d_inner, 128);
  EXPECT_EQ(mixer(falcon_config_with("mixer_rms_eps", nullptr)).bcdt_rms_eps, 1e-6);  // FalconMambaConfig's default
  for (const nlohmann::json& bad : {nlohmann::json(0.0), nlohmann::json(-1e-6), nlohmann::json("1e-6")})
    test::expect_error([&] { mixer(falcon_config_with("mixer_rms_eps", bad)); },
                       {"falcon config", "mixer_rms_eps", "positive number"});
  test::expect_error([] { parse_checkpoint_layout(falcon_config_with("some_new_field", 1), "falcon config"); },
                     {"falcon config", "unknown field 'some_new_field'", "\"falcon_mamba\""});
  test::expect_error([] { parse_checkpoint_layout(falcon_config_with("intermediate_size", 64), "falcon config"); },
                     {"falcon config", "intermediate_size", "128"});
  // The reference format cannot hold the norms: writing one is refused, not done without them.
  Model model = Model::load(test::golden("hf_falconmamba"));
  test::expect_error([&] { model_config_to_json(model.config()); }, {"FalconMamba", "no reference-format config"});
  test::TempDir dir;
  test::expect_error([&] { model.save(dir.path()); }, {"FalconMamba", "no reference-format config"});
}

// ---- Initialisation (§1, §2) and the preset ----

ModelConfig small_model(const std::string& dt_init) {
  nlohmann::json j = {{"d_model", 40}, {"n_layer", 3}, {"vocab_size", 16},
                      {"ssm_cfg", {{"layer", "Mamba1"}, {"d_state", 5}, {"dt_init", dt_init}, {"dt_scale", 2.0},
                                   {"bias", true}}}};
  return parse_model_config(j, "test config");
}

const Tensor& param(const NamedTensors& ps, const std::string& name) {
  for (const auto& [n, t] : ps)
    if (n == name) return t;
  throw std::runtime_error("no parameter " + name);
}

using test::max_abs;

TEST(Mamba1Init, ReferenceInitialisation) {
  const ModelConfig mc = small_model("random");
  const Mamba1Config& c = std::get<Mamba1Config>(mc.ssm);
  const NamedTensors ps = Model::init(mc, 3).parameters();
  const int64_t DI = 80, N = 5, R = 3, W = 4;  // expand 2; dt_rank auto = ceil(40 / 16); d_conv default
  ASSERT_EQ(c.d_inner, DI);
  ASSERT_EQ(c.dt_rank, R);
  for (int64_t l = 0; l < 3; ++l) {
    const std::string p = "backbone.layers." + std::to_string(l) + ".mixer.";
    const Tensor &A_log = param(ps, p + "A_log"), &dt_b = param(ps, p + "dt_proj.bias");
    ASSERT_EQ(A_log.shape, (Shape{DI, N}));
    for (int64_t i = 0; i < DI * N; ++i) EXPECT_FLOAT_EQ(A_log.f32()[i], std::log(float(i % N + 1))) << i;
    for (int64_t i = 0; i < DI; ++i) EXPECT_EQ(param(ps, p + "D").f32()[i], 1.0f);
    // softplus(dt_proj.bias) is log-uniform in [dt_min, dt_max] = [0.001, 0.1].
    double lo = 1, hi = 0;
    for (int64_t i = 0; i < DI; ++i) {
      const double dt = softplus(double(dt_b.f32()[i]));
      lo = std::min(lo, dt), hi = std::max(hi, dt);
    }
    EXPECT_GE(lo, 0.001 * (1 - 1e-5));
    EXPECT_LE(hi, 0.1 * (1 + 1e-5));
    EXPECT_LT(lo, 0.003);
    EXPECT_GT(hi, 0.03);
    // Uniform draws within their bounds and using most of them: dt_proj ±dt_scale/√R, conv ±1/√W,
    // x_proj ±1/√DI, out_proj ±1/√DI/√n_layer.
    for (auto [name, bound] : {std::pair{"dt_proj.weight", 2.0 / std::sqrt(double(R))},
                               {"conv1d.weight", 1.0 / std::sqrt(double(W))}, {"conv1d.bias", 1.0 / std::sqrt(double(W))},
                               {"x_proj.weight", 1.0 / std::sqrt(double(DI))},
                               {"out_proj.weight", 1.0 / std::sqrt(double(DI)) / std::sqrt(3.0)}}) {
      const float m = max_abs(param(ps, p + name));
      EXPECT_LE(m, bound * (1 + 1e-6)) << name;
      EXPECT_GT(m, 0.7 * bound) << name;
    }
    EXPECT_EQ(max_abs(param(ps, p + "in_proj.bias")), 0.0f);
    EXPECT_EQ(max_abs(param(ps, p + "out_proj.bias")), 0.0f);
  }
  // dt_init "constant": every dt_proj weight is dt_scale/√R.
  const NamedTensors pc = Model::init(small_model("constant"), 3).parameters();
  const Tensor& w = param(pc, "backbone.layers.0.mixer.dt_proj.weight");
  for (int64_t i = 0; i < w.numel(); ++i) EXPECT_FLOAT_EQ(w.f32()[i], float(2.0 / std::sqrt(double(R))));
}

TEST(Mamba1Init, SaveLoadRoundTrip) {
  Model m = Model::init(small_model("random"), 7);
  test::TempDir dir;
  m.save(dir.path());
  Model r = Model::load(dir.path());
  const std::vector<int32_t> toks = {1, 5, 9, 2, 15, 0, 3};
  const int64_t cu[2] = {0, 7}, V = m.config().vocab_padded();
  std::vector<float> a(static_cast<size_t>(7 * V)), b(a.size());
  SequenceState sa = m.new_state(), sb = r.new_state();
  SequenceState *pa = &sa, *pb = &sb;
  m.forward(toks, cu, std::span<SequenceState* const>(&pa, 1), a.data());
  r.forward(toks, cu, std::span<SequenceState* const>(&pb, 1), b.data());
  EXPECT_EQ(a, b);
}

TEST(Mamba1Preset, PublicMamba130mShape) {
  const ModelConfig c = preset_config("mamba1-130m");
  ASSERT_EQ(c.ssm_kind, MixerKind::Mamba1);
  const Mamba1Config& m = std::get<Mamba1Config>(c.ssm);
  EXPECT_EQ(m.d_inner, 1536);
  EXPECT_EQ(m.dt_rank, 48);
  EXPECT_EQ(c.vocab_padded(), 50280);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.attn_layer_idx.empty());
  EXPECT_EQ(c.d_intermediate, 0);
  // The public checkpoint's parameter count: embedding, per layer norm + mixer, final norm.
  int64_t n = c.vocab_padded() * c.d_model + c.d_model;
  for (const auto& s : mamba1_param_specs(m, c.d_model, c.n_layer)) n += shape_numel(s.shape) * c.n_layer;
  n += c.d_model * c.n_layer;
  EXPECT_EQ(n, 129135360);
}

}  // namespace
}  // namespace m3
