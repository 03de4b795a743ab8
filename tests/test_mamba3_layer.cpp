// The whole Mamba-3 mixer on the CPU (cpu::make_mamba3 with random parameters shaped by
// mamba3_param_specs) against the float64 per-token recurrence of tests/reference.h
// (spec/mamba3.md §2–§5): the parallel form over a packed batch, each sequence alone, and the step
// form, from nonzero carried-in states, over SISO and MIMO, with and without the out-proj norm,
// one and two groups, both rope fractions, d_state not a multiple of the chunk and a chunk dividing
// none of the lengths; then random sizes and options (ranks 1–4, A floors that clamp, empty
// sequences), the reference initialisation (§2) and the layer's description for `m3 info`.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "cpu/layers.h"
#include "cpu/mamba3_scan.h"
#include "m3/model.h"
#include "model/specs.h"
#include "expect_error.h"
#include "layer_states.h"
#include "layer_steps.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64
constexpr int64_t kDModel = 10;
// Lengths around the chunk of 7 (and 1), packed in one batch; the chunk divides none but 7.
const std::vector<int64_t> kLengths = {1, 6, 7, 8, 23};

double softplus(double x) { return std::log1p(std::exp(x)); }

struct Case {
  bool mimo;
  int64_t rank, ngroups;
  bool outproj_norm;
  double rope_fraction;
  std::string name() const {
    return std::string(mimo ? "MIMO rank " + std::to_string(rank) : "SISO") + ", groups " + std::to_string(ngroups) +
           (outproj_norm ? ", outproj norm" : "") + ", rope " + std::to_string(rope_fraction);
  }
};
void PrintTo(const Case& k, std::ostream* os) { *os << k.name(); }

// A Mamba-3 config parsed like a checkpoint's, so that the derived sizes are the engine's.
Mamba3Config parse_mamba3(const nlohmann::json& ssm, int64_t d_model) {
  nlohmann::json j = {{"d_model", d_model}, {"n_layer", 2}, {"vocab_size", 16}, {"ssm_cfg", ssm}};
  j["ssm_cfg"]["layer"] = "Mamba3";
  return std::get<Mamba3Config>(parse_model_config(j, "test config").ssm);
}

// d_model 10, expand 2 → 4 heads of 5; d_state 21 for SISO (odd: rope 1.0 leaves its last dim
// unrotated) and 20 for MIMO (the halves pairing needs it even; not a multiple of the chunk).
Mamba3Config config(const Case& k) {
  return parse_mamba3({{"d_state", k.mimo ? 20 : 21},
                       {"headdim", 5},
                       {"expand", 2},
                       {"ngroups", k.ngroups},
                       {"rope_fraction", k.rope_fraction},
                       {"is_outproj_norm", k.outproj_norm},
                       {"is_mimo", k.mimo},
                       {"mimo_rank", k.rank},
                       {"chunk_size", 7}},
                      kDModel);
}

// Random values for every parameter, away from their initial constants so that each one matters.
ParamMap random_params(const Mamba3Config& c, int64_t d_model, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ParamMap p;
  for (const auto& s : mamba3_param_specs(c, d_model, 2)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    float* v = t.f32();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (s.name == "in_proj.weight")
        v[i] = uniform(rng) / std::sqrt(float(d_model));
      else if (s.name == "out_proj.weight")
        v[i] = uniform(rng) / std::sqrt(float(c.d_inner));
      else if (s.name == "dt_bias")
        v[i] = -1.0f + 1.5f * uniform(rng);  // dt from about 0.1 to 1.3
      else if (s.name.ends_with("norm.weight"))
        v[i] = 1.0f + 0.3f * normal(rng);
      else
        v[i] = normal(rng);  // biases, D, mimo_x/z/o
    }
    p[s.name] = t;
  }
  return p;
}

ref::Mamba3State random_state(const Mamba3Config& c, int64_t d_model, std::mt19937_64& rng) {
  ref::Mamba3State s = ref::mamba3_zero_state(c, d_model);
  std::uniform_real_distribution<double> angle(0.0, 12.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (double& x : s.angle) x = angle(rng);
  for (double& x : s.ssm) x = 0.5 * normal(rng);
  for (double& x : s.k) x = normal(rng);
  for (double& x : s.v) x = normal(rng);
  return s;
}

// The engine's layer state holding the same values as a reference state (float32).
LayerState to_layer_state(const Layer& layer, const ref::Mamba3State& s) {
  LayerState ls = test::new_host_state(layer);
  for (auto [name, src] : {std::pair{"angle", &s.angle}, {"ssm", &s.ssm}, {"k", &s.k}, {"v", &s.v}}) {
    auto& b = ls[name];
    EXPECT_EQ(b.data.size(), src->size()) << name;
    b.data.assign(src->begin(), src->end());
  }
  return ls;
}

// The angle state is compared as (cos, sin): the engine keeps θ mod 2π (spec §3).
std::vector<double> cos_sin(const std::vector<double>& theta) {
  std::vector<double> r;
  for (double t : theta) r.push_back(std::cos(t)), r.push_back(std::sin(t));
  return r;
}

void expect_state_near(const LayerState& g, const ref::Mamba3State& want, const std::string& what) {
  EXPECT_LT(rel_err(cos_sin(Vec(g["angle"].data.begin(), g["angle"].data.end())), cos_sin(want.angle)), kTol)
      << what << ": angle";
  EXPECT_LT(rel_err(g["ssm"].data, want.ssm), kTol) << what << ": ssm";
  EXPECT_LT(rel_err(g["k"].data, want.k), kTol) << what << ": k";
  EXPECT_LT(rel_err(g["v"].data, want.v), kTol) << what << ": v";
}

// Runs the layer of config c with parameters `params` over sequences of `lengths` packed in one
// batch (every sequence but the second from a random carried-in state), each sequence alone, and
// token by token, and compares outputs and final states with the float64 recurrence.
void check_against_reference(const Mamba3Config& c, int64_t d_model, const ParamMap& params,
                             const std::vector<int64_t>& lengths, std::mt19937_64& rng, const std::string& name) {
  const ref::Params ref_params = ref::widen(params);
  auto layer = cpu::make_mamba3(c, d_model, params);
  const size_t n = lengths.size();
  std::vector<int64_t> cu = {0};
  for (int64_t L : lengths) cu.push_back(cu.back() + L);
  const int64_t T = cu.back();
  std::vector<float> x = test::randn(size_t(T * d_model), rng);
  std::vector<ref::Mamba3State> init(n), want_state(n);
  std::vector<Vec> want_y(n);
  for (size_t i = 0; i < n; ++i) {
    init[i] = i == 1 ? ref::mamba3_zero_state(c, d_model) : random_state(c, d_model, rng);
    want_state[i] = init[i];
    Vec xi = ref::widen(std::vector<float>(x.begin() + cu[i] * d_model, x.begin() + cu[i + 1] * d_model));
    want_y[i] = ref::mamba3(c, d_model, ref_params, xi, lengths[i], want_state[i]);
  }
  auto y_of = [&](const std::vector<float>& y, size_t i) {
    return std::vector<float>(y.begin() + cu[i] * d_model, y.begin() + cu[i + 1] * d_model);
  };

  // Parallel form over the packed batch.
  std::vector<LayerState> packed(n);
  for (size_t i = 0; i < n; ++i) packed[i] = to_layer_state(*layer, init[i]);
  std::vector<float> y(size_t(T * d_model), NAN);
  test::forward_with_states(*layer, x.data(), y.data(), Packing{cu}, test::pointers_to(packed));
  for (size_t i = 0; i < n; ++i) {
    const std::string what = name + ", packed forward, sequence of " + std::to_string(lengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    expect_state_near(packed[i], want_state[i], what);
  }

  // Each sequence alone equals its part of the packed batch.
  for (size_t i = 0; i < n; ++i) {
    LayerState alone = to_layer_state(*layer, init[i]);
    std::vector<float> ya(static_cast<size_t>(lengths[i] * d_model));
    test::forward_with_states(*layer, x.data() + cu[i] * d_model, ya.data(), Packing{{0, lengths[i]}}, {&alone});
    EXPECT_LT(rel_err(ya, want_y[i]), kTol) << name << ", alone, sequence of " << lengths[i];
    expect_state_near(alone, want_state[i], name + ", alone");
  }

  // Step form: at time t every sequence still running advances by one token, together.
  std::vector<LayerState> stepped(n);
  for (size_t i = 0; i < n; ++i) stepped[i] = to_layer_state(*layer, init[i]);
  y = test::step_packed(*layer, x, cu, d_model, stepped);
  for (size_t i = 0; i < n; ++i) {
    const std::string what = name + ", step, sequence of " + std::to_string(lengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    expect_state_near(stepped[i], want_state[i], what);
  }
}

class Mamba3Layer : public ::testing::TestWithParam<Case> {};

TEST_P(Mamba3Layer, ParallelAndStepMatchFloat64Recurrence) {
  const Case k = GetParam();
  const Mamba3Config c = config(k);
  // A fixed draw per case. A fresh sequence's first output is v·(γ q̃·k̃ + D) per head; a draw where
  // that factor nearly cancels makes the out-proj norm amplify float32 rounding past 1e-5 (a
  // property of the instance, not of the code: step and parallel forms then agree with each other).
  std::mt19937_64 rng(1 + uint64_t(k.rank) * 8 + uint64_t(k.ngroups) * 4 + (k.outproj_norm ? 2 : 0) +
                      (k.rope_fraction == 1.0 ? 1 : 0));
  const ParamMap params = random_params(c, kDModel, rng);
  check_against_reference(c, kDModel, params, kLengths, rng, k.name());
}

std::vector<Case> all_cases() {
  std::vector<Case> r;
  for (auto [mimo, rank] : {std::pair{false, int64_t(1)}, {true, 2}, {true, 3}})
    for (bool norm : {false, true})
      for (int64_t groups : {1, 2})
        for (double rope : {0.5, 1.0}) r.push_back({mimo, rank, groups, norm, rope});
  return r;
}

INSTANTIATE_TEST_SUITE_P(AllVariants, Mamba3Layer, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           const Case& k = i.param;
                           return std::string(k.mimo ? "Mimo" + std::to_string(k.rank) : "Siso") + "_Groups" +
                                  std::to_string(k.ngroups) + (k.outproj_norm ? "_OutprojNorm" : "_Gate") +
                                  (k.rope_fraction == 1.0 ? "_RopeFull" : "_RopeHalf");
                         });

// Random sizes and options, valid by construction: d_model, expand, headdim (a divisor of d_inner,
// at most 8 heads), ngroups (a divisor of the heads), d_state (odd ones for SISO), both rope
// fractions, SISO or MIMO of rank 1–4, the out-proj norm, A floors that bind for a share of the
// tokens (f(a) < A_floor when a < 1 − 1/A_floor: for 0.5 and 0.9), chunks of 1–17, and 1–4
// sequences of 0–30 tokens (empty ones too).
TEST(Mamba3LayerRandom, SizesAndOptionsMatchFloat64Recurrence) {
  std::mt19937_64 rng(2024);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto divisors = [](int64_t n, int64_t max_quotient) {
    std::vector<int64_t> r;
    for (int64_t d = 1; d <= n; ++d)
      if (n % d == 0 && n / d <= max_quotient) r.push_back(d);
    return r;
  };
  for (int iter = 0; iter < 40; ++iter) {
    const int64_t d_model = pick(2, 12), expand = pick(1, 3);
    const std::vector<int64_t> headdims = divisors(expand * d_model, 8);
    const int64_t headdim = headdims[size_t(pick(0, int64_t(headdims.size()) - 1))];
    const std::vector<int64_t> groups = divisors(expand * d_model / headdim, expand * d_model / headdim);
    const bool mimo = pick(0, 1);
    const double rope = pick(0, 1) ? 1.0 : 0.5, a_floor = std::vector{1e-4, 0.5, 0.9}[size_t(pick(0, 2))];
    int64_t d_state = pick(rope == 1.0 ? 2 : 4, 24);
    if (mimo && d_state % 2) ++d_state;
    const nlohmann::json ssm = {{"d_state", d_state},
                                {"expand", expand},
                                {"headdim", headdim},
                                {"ngroups", groups[size_t(pick(0, int64_t(groups.size()) - 1))]},
                                {"rope_fraction", rope},
                                {"A_floor", a_floor},
                                {"is_outproj_norm", bool(pick(0, 1))},
                                {"is_mimo", mimo},
                                {"mimo_rank", pick(1, 4)},
                                {"chunk_size", pick(1, 17)}};
    const Mamba3Config c = parse_mamba3(ssm, d_model);
    std::vector<int64_t> lengths(size_t(pick(1, 4)));
    for (int64_t& L : lengths) L = pick(0, 3) == 0 ? 0 : pick(1, 30);
    std::string name = "d_model " + std::to_string(d_model) + " " + ssm.dump() + " lengths";
    for (int64_t L : lengths) name += " " + std::to_string(L);
    SCOPED_TRACE(name);
    const ParamMap params = random_params(c, d_model, rng);
    check_against_reference(c, d_model, params, lengths, rng, name);
  }
}

// spec §3: A = min(−f(dd_A), −A_floor). With A_floor 0.9 the floor binds wherever dd_A < −1/9; the
// reference's outputs with and without it differ by far more than the tolerance, so an engine
// that ignored the floor (or clamped the wrong way) would fail the comparison.
TEST(Mamba3Options, AFloorBinds) {
  for (bool mimo : {false, true}) {
    SCOPED_TRACE(mimo ? "MIMO" : "SISO");
    const Mamba3Config c = parse_mamba3(
        {{"d_state", 8}, {"headdim", 5}, {"is_mimo", mimo}, {"mimo_rank", 2}, {"A_floor", 0.9}, {"chunk_size", 4}},
        kDModel);
    std::mt19937_64 rng(7);
    const ParamMap params = random_params(c, kDModel, rng);
    Mamba3Config low = c;
    low.A_floor = 1e-4;
    const Vec x = ref::widen(test::randn(size_t(12 * kDModel), rng));
    ref::Mamba3State s1 = ref::mamba3_zero_state(c, kDModel), s2 = s1;
    const ref::Params rp = ref::widen(params);
    EXPECT_GT(rel_err(ref::mamba3(c, kDModel, rp, x, 12, s1), ref::mamba3(low, kDModel, rp, x, 12, s2)), 1e-2);
    check_against_reference(c, kDModel, params, {5, 9, 4}, rng, "A_floor 0.9");
  }
}

// spec §2 and spec/model.md §6: every mixer parameter's name, shape and initialisation as the
// reference draws them (dt_bias the inverse softplus of a log-uniform dt clamped at dt_init_floor;
// B/C biases, norms and D ones; mimo_x, mimo_z, mimo_o 1/R, 1, 1/R; in_proj and out_proj PyTorch's
// uniform, out_proj divided by √n_layer), and the zero decode state's shapes (§5).
TEST(Mamba3Init, ParametersAndStateFollowReference) {
  for (bool mimo : {false, true}) {
    SCOPED_TRACE(mimo ? "MIMO" : "SISO");
    // dt log-uniform in [1e-5, 1e-3] clamped at 1e-4: about half of the 40 heads sit on the floor.
    const nlohmann::json j = {{"d_model", 40},
                              {"n_layer", 3},
                              {"vocab_size", 16},
                              {"ssm_cfg",
                               {{"layer", "Mamba3"}, {"d_state", 10}, {"headdim", 2}, {"ngroups", 2},
                                {"is_mimo", mimo}, {"mimo_rank", 3}, {"is_outproj_norm", true},
                                {"rope_fraction", 1.0}, {"dt_min", 1e-5}, {"dt_max", 1e-3}, {"dt_init_floor", 1e-4}}}};
    const Model m = Model::init(parse_model_config(j, "test config"), 5);
    const int64_t H = 40, P = 2, N = 10, G = 2, R = mimo ? 3 : 1, DI = 80, S = 5;
    std::map<std::string, Shape> want = {{"in_proj.weight", {2 * DI + 2 * N * G * R + 3 * H + S, 40}},
                                         {"dt_bias", {H}},
                                         {"B_bias", {H, R, N}},
                                         {"C_bias", {H, R, N}},
                                         {"B_norm.weight", {N}},
                                         {"C_norm.weight", {N}},
                                         {"D", {H}},
                                         {"norm.weight", {DI}},
                                         {"out_proj.weight", {40, DI}}};
    if (mimo)
      for (const char* n : {"mimo_x", "mimo_z", "mimo_o"}) want[n] = {H, R, P};
    for (int64_t l = 0; l < 3; ++l) {
      const std::string prefix = "backbone.layers." + std::to_string(l) + ".mixer.";
      std::map<std::string, Tensor> ps;
      for (const auto& [name, t] : m.parameters())
        if (name.starts_with(prefix)) ps[name.substr(prefix.size())] = t;
      ASSERT_EQ(ps.size(), want.size());
      for (const auto& [name, shape] : want) {
        ASSERT_TRUE(ps.count(name)) << name;
        EXPECT_EQ(ps.at(name).shape, shape) << name;
      }
      auto values = [&](const char* name) { return std::vector<float>(ps.at(name).f32(), ps.at(name).f32() + ps.at(name).numel()); };
      for (auto [name, v] : {std::pair{"B_bias", 1.0f}, {"C_bias", 1.0f}, {"B_norm.weight", 1.0f},
                             {"C_norm.weight", 1.0f}, {"D", 1.0f}, {"norm.weight", 1.0f}})
        for (float e : values(name)) EXPECT_EQ(e, v) << name;
      if (mimo) {
        for (auto [name, v] : {std::pair{"mimo_x", 1.0f / 3}, {"mimo_z", 1.0f}, {"mimo_o", 1.0f / 3}})
          for (float e : values(name)) EXPECT_FLOAT_EQ(e, v) << name;
      }
      double lo = 1, hi = 0;
      for (float b : values("dt_bias")) lo = std::min(lo, softplus(b)), hi = std::max(hi, softplus(b));
      EXPECT_NEAR(lo, 1e-4, 1e-9);  // the floor binds
      EXPECT_LE(hi, 1e-3 * (1 + 1e-5));
      EXPECT_GT(hi, 3e-4);  // spread over the range above the floor
      for (auto [name, bound] : {std::pair{"in_proj.weight", 1.0 / std::sqrt(40.0)},
                                 {"out_proj.weight", 1.0 / std::sqrt(double(DI)) / std::sqrt(3.0)}}) {
        EXPECT_LE(test::max_abs(ps.at(name)), bound * (1 + 1e-6)) << name;
        EXPECT_GT(test::max_abs(ps.at(name)), 0.9 * bound) << name;
      }
    }
    const LayerState st = m.new_state().layer(0);
    for (auto [name, shape] : {std::pair{"angle", Shape{H, S}}, {"ssm", Shape{H, P, N}}, {"k", Shape{R, H, N}},
                               {"v", Shape{H, P}}}) {
      const StateBuffer& b = st[name];
      EXPECT_EQ(b.shape, shape) << name;
      EXPECT_EQ(b.data, std::vector<float>(size_t(shape_numel(shape)), 0.0f)) << name;
    }
  }
}

// The one-line description `m3 info` prints names every hyperparameter the math reads.
// The reference accepts any rank; the CPU scan is compiled up to kMamba3MaxRank and says so when
// the model is built, not at its first forward.
TEST(Mamba3Options, RankAboveTheCpuLimitIsRefusedAtBuild) {
  const nlohmann::json j = {{"d_model", 32},
                            {"n_layer", 1},
                            {"vocab_size", 16},
                            {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 8}, {"headdim", 8}, {"is_mimo", true},
                                         {"mimo_rank", cpu::kMamba3MaxRank + 1}}}};
  test::expect_error([&] { Model::init(parse_model_config(j, "test config"), 1); },
                     {"MIMO rank " + std::to_string(cpu::kMamba3MaxRank + 1), "ranks up to"});
}

TEST(Mamba3Describe, NamesEveryOption) {
  std::mt19937_64 rng(3);
  const Mamba3Config mimo = parse_mamba3({{"d_state", 20}, {"headdim", 5}, {"ngroups", 2}, {"rope_fraction", 1.0},
                                          {"is_outproj_norm", true}, {"is_mimo", true}, {"mimo_rank", 3},
                                          {"chunk_size", 7}, {"A_floor", 0.25}},
                                         kDModel);
  EXPECT_EQ(cpu::make_mamba3(mimo, kDModel, random_params(mimo, kDModel, rng))->describe(),
            "Mamba3 MIMO rank 3 heads 4x5 d_state 20 groups 2 rope_fraction 1.0 (10 angles) A_floor 0.25 chunk 7 "
            "outproj_norm");
  const Mamba3Config siso = parse_mamba3({{"d_state", 21}, {"headdim", 5}}, kDModel);
  EXPECT_EQ(cpu::make_mamba3(siso, kDModel, random_params(siso, kDModel, rng))->describe(),
            "Mamba3 SISO heads 4x5 d_state 21 groups 1 rope_fraction 0.5 (5 angles) A_floor 0.0001 chunk 64");
}

}  // namespace
}  // namespace m3
