// The whole Mamba-3 mixer on the CPU (cpu::make_mamba3 with random parameters shaped by
// mamba3_param_specs) against the float64 per-token recurrence of tests/reference.h
// (spec/mamba3.md §2–§5): the parallel form over a packed batch and the step form, from nonzero
// carried-in states, over SISO and MIMO, with and without the out-proj norm, one and two groups,
// both rope fractions, d_state not a multiple of the chunk and a chunk dividing none of the lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cpu/layers.h"
#include "model/specs.h"
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

// Parsed like a checkpoint's config so that the derived sizes are the engine's. d_model 10,
// expand 2 → 4 heads of 5; d_state 21 for SISO (odd: rope 1.0 leaves its last dim unrotated)
// and 20 for MIMO (the halves pairing needs it even).
Mamba3Config config(const Case& k) {
  nlohmann::json ssm = {{"layer", "Mamba3"},
                        {"d_state", k.mimo ? 20 : 21},
                        {"headdim", 5},
                        {"expand", 2},
                        {"ngroups", k.ngroups},
                        {"rope_fraction", k.rope_fraction},
                        {"is_outproj_norm", k.outproj_norm},
                        {"is_mimo", k.mimo},
                        {"mimo_rank", k.rank},
                        {"chunk_size", 7}};
  nlohmann::json j = {{"d_model", kDModel}, {"n_layer", 2}, {"vocab_size", 16}, {"ssm_cfg", ssm}};
  return std::get<Mamba3Config>(parse_model_config(j, "test config").ssm);
}

// Random values for every parameter, away from their initial constants so that each one matters.
ParamMap random_params(const Mamba3Config& c, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ParamMap p;
  for (const auto& s : mamba3_param_specs(c, kDModel, 2)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    float* v = t.f32();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (s.name == "in_proj.weight")
        v[i] = uniform(rng) / std::sqrt(float(kDModel));
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

ref::Mamba3State random_state(const Mamba3Config& c, std::mt19937_64& rng) {
  ref::Mamba3State s = ref::mamba3_zero_state(c, kDModel);
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
  LayerState ls = layer.new_state();
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

void expect_state_near(LayerState& g, const ref::Mamba3State& want, const std::string& what) {
  EXPECT_LT(rel_err(cos_sin(Vec(g["angle"].data.begin(), g["angle"].data.end())), cos_sin(want.angle)), kTol)
      << what << ": angle";
  EXPECT_LT(rel_err(g["ssm"].data, want.ssm), kTol) << what << ": ssm";
  EXPECT_LT(rel_err(g["k"].data, want.k), kTol) << what << ": k";
  EXPECT_LT(rel_err(g["v"].data, want.v), kTol) << what << ": v";
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
  ParamMap params = random_params(c, rng);
  const ref::Params ref_params = ref::widen(params);
  auto layer = cpu::make_mamba3(c, kDModel, params);

  // Every sequence starts from a random state but the second, which starts fresh.
  const size_t n = kLengths.size();
  std::vector<int64_t> cu = {0};
  for (int64_t L : kLengths) cu.push_back(cu.back() + L);
  const int64_t T = cu.back();
  std::vector<float> x = test::randn(size_t(T * kDModel), rng);
  std::vector<ref::Mamba3State> init(n), want_state(n);
  std::vector<Vec> want_y(n);
  for (size_t i = 0; i < n; ++i) {
    init[i] = i == 1 ? ref::mamba3_zero_state(c, kDModel) : random_state(c, rng);
    want_state[i] = init[i];
    Vec xi = ref::widen(std::vector<float>(x.begin() + cu[i] * kDModel, x.begin() + cu[i + 1] * kDModel));
    want_y[i] = ref::mamba3(c, kDModel, ref_params, xi, kLengths[i], want_state[i]);
  }
  auto y_of = [&](const std::vector<float>& y, size_t i) {
    return std::vector<float>(y.begin() + cu[i] * kDModel, y.begin() + cu[i + 1] * kDModel);
  };

  // Parallel form over the packed batch.
  std::vector<LayerState> packed(n);
  std::vector<LayerState*> ptrs(n);
  for (size_t i = 0; i < n; ++i) packed[i] = to_layer_state(*layer, init[i]), ptrs[i] = &packed[i];
  std::vector<float> y(size_t(T * kDModel), NAN);
  layer->forward(x.data(), y.data(), Packing{cu}, ptrs.data());
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", packed forward, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    expect_state_near(packed[i], want_state[i], what);
  }

  // Each sequence alone equals its part of the packed batch.
  for (size_t i = 0; i < n; ++i) {
    LayerState alone = to_layer_state(*layer, init[i]);
    LayerState* one = &alone;
    std::vector<float> ya(static_cast<size_t>(kLengths[i] * kDModel));
    layer->forward(x.data() + cu[i] * kDModel, ya.data(), Packing{{0, kLengths[i]}}, &one);
    EXPECT_LT(rel_err(ya, want_y[i]), kTol) << k.name() << ", alone, sequence of " << kLengths[i];
    expect_state_near(alone, want_state[i], k.name() + ", alone");
  }

  // Step form: at time t every sequence still running advances by one token, together.
  std::vector<LayerState> stepped(n);
  for (size_t i = 0; i < n; ++i) stepped[i] = to_layer_state(*layer, init[i]);
  std::fill(y.begin(), y.end(), NAN);
  for (int64_t t = 0; t < kLengths.back(); ++t) {
    std::vector<size_t> active;
    for (size_t i = 0; i < n; ++i)
      if (t < kLengths[i]) active.push_back(i);
    std::vector<float> xs, ys(active.size() * kDModel);
    std::vector<LayerState*> sp;
    for (size_t i : active) {
      xs.insert(xs.end(), x.begin() + (cu[i] + t) * kDModel, x.begin() + (cu[i] + t + 1) * kDModel);
      sp.push_back(&stepped[i]);
    }
    layer->step(xs.data(), ys.data(), int64_t(active.size()), sp.data());
    for (size_t a = 0; a < active.size(); ++a)
      std::copy_n(ys.begin() + a * kDModel, kDModel, y.begin() + (cu[active[a]] + t) * kDModel);
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string what = k.name() + ", step, sequence of " + std::to_string(kLengths[i]);
    EXPECT_LT(rel_err(y_of(y, i), want_y[i]), kTol) << what;
    expect_state_near(stepped[i], want_state[i], what);
  }
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

}  // namespace
}  // namespace m3
