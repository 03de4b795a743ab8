// Whole models on the CUDA backend (m3::Model with a cuda DeviceSpec): every golden checkpoint the
// CPU tests check (../shared/golden, or $M3_GOLDEN_DIR) reproduces the reference logits (F32 within
// 1e-4, BF16 within 3e-2, relative L2 as the CPU tests compare) and, in F32, the CPU model's logits
// row by row and its greedy tokens; prefill then step equals the forward; a packed varlen batch in
// scattered state slots equals its sequences run alone and leaves other sequences' states alone;
// a decode state saved on CUDA continues on the CPU and one saved on the CPU continues on CUDA;
// models initialised from the tiny presets agree with the CPU's. Then the CLI: `m3 logits --device
// cuda` reproduces the golden logits, and on a machine without a GPU fails with an error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "cuda_testing.h"
#include "golden_model.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "m3/safetensors.h"
#include "run_m3.h"
#include "temp_dir.h"

namespace m3 {
namespace {

using test::rows_near;

// Against the float64 reference: F32 as the CPU backend; BF16 rounds every matrix and the
// activations entering it.
double golden_tolerance(Precision p) { return p == Precision::F32 ? 1e-4 : 3e-2; }

DeviceSpec cuda_device(Precision p) { return parse_device("cuda", test::precision_name(p)); }

// A golden checkpoint on a device, with its input ids and reference logits (golden_model.h's
// GoldenRun, loaded from test::golden_dir()).
test::GoldenRun load_golden_on(const std::string& name, const DeviceSpec& device) {
  test::GoldenRun g{Model::load(test::golden_path(name), device), 0, 0, 0, {}, {}};
  SafetensorsFile f = SafetensorsFile::open(test::golden_path(name + "/golden.safetensors"));
  const Tensor ids = f.get("input_ids");
  g.B = ids.shape[0], g.L = ids.shape[1];
  g.ids = test::token_ids(ids);
  g.ref = test::to_f64(f.get(f.has("logits_f64") ? "logits_f64" : "logits"));
  g.V = g.model.config().vocab_padded();
  return g;
}

template <class V>
V rows_of(const V& v, int64_t r0, int64_t r1, int64_t width) {
  return V(v.begin() + r0 * width, v.begin() + r1 * width);
}

// The length around which prefill/step splits matter: the SSM's chunk (Mamba-3, Mamba-2) or the
// conv width (Mamba-1).
int64_t chunk_of(const ModelConfig& c) {
  switch (c.ssm_kind) {
    case MixerKind::Mamba3: return std::get<Mamba3Config>(c.ssm).chunk_size;
    case MixerKind::Mamba2: return std::get<Mamba2Config>(c.ssm).chunk_size;
    default: return std::get<Mamba1Config>(c.ssm).d_conv;
  }
}

std::span<SequenceState* const> one(SequenceState*& s) { return {&s, 1}; }

// Steps `s` through toks one token at a time; the logits of each, [toks.size(), V].
std::vector<float> step_through(Model& m, SequenceState& s, std::span<const int32_t> toks) {
  const int64_t V = m.config().vocab_padded();
  std::vector<float> out(toks.size() * size_t(V));
  SequenceState* sp = &s;
  for (size_t t = 0; t < toks.size(); ++t) m.step(toks.subspan(t, 1), one(sp), out.data() + int64_t(t) * V);
  return out;
}

// A fresh state of `m` after a prefill of toks.
SequenceState prefilled(Model& m, std::span<const int32_t> toks) {
  SequenceState s = m.new_state();
  SequenceState* sp = &s;
  std::vector<float> logits(toks.size() * size_t(m.config().vocab_padded()));
  const int64_t cu[2] = {0, int64_t(toks.size())};
  m.forward(toks, cu, one(sp), logits.data());
  return s;
}

// Saved states (state_to_tensors) of the same sequence from two models: the same tensors, values
// within tol (rows as test::state_rows makes them).
void expect_saved_states_near(const NamedTensors& got, const NamedTensors& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, w] = want[i];
    ASSERT_EQ(got[i].first, name);
    const Tensor& g = got[i].second;
    ASSERT_EQ(g.dtype, w.dtype) << name;
    ASSERT_EQ(g.shape, w.shape) << name;
    if (w.dtype != DType::F32) {
      EXPECT_EQ(test::to_f64(g), test::to_f64(w)) << name;
      continue;
    }
    const auto [gv, cols] = test::state_rows(name, g.shape, test::to_f32v(g));
    EXPECT_TRUE(rows_near(gv, test::state_rows(name, w.shape, test::to_f32v(w)).first, cols, tol)) << name;
  }
}

struct Golden {
  const char* name;
  bool has_greedy;  // greedy_prompt / greedy_out (the Hugging Face folders)
};
void PrintTo(const Golden& g, std::ostream* os) { *os << g.name; }
// A test-name form of a golden's folder ("data/hf_bamba" → "data_hf_bamba").
std::string test_name(const Golden& g) {
  std::string n = g.name;
  std::replace(n.begin(), n.end(), '/', '_');
  return n;
}
const Golden kGoldens[] = {{"mamba3_siso_hybrid", false}, {"mamba3_mimo_hybrid", false}, {"mamba2_hybrid", false},
                           {"mamba1_model", false},       {"hf_mamba1", true},           {"hf_mamba2", true},
                           {"hf_falconmamba", true},      {"hf_falconh1", true},         {"hf_nemotronh", true},
                           {"hf_granitemoehybrid", true}, {"data/hf_bamba", true},       {"data/hf_jamba", true},
                           {"data/hf_zamba2", true}};

class CudaGolden : public test::CudaTestWithParam<std::tuple<Golden, Precision>> {};

TEST_P(CudaGolden, LogitsMatchReference) {
  const auto& [gd, prec] = GetParam();
  test::GoldenRun g = load_golden_on(gd.name, cuda_device(prec));
  const std::vector<float> got = test::packed_logits(g);
  const double err = test::rel_err(got, g.ref);
  // The measured figure, for the record (scripts/gpu.sh keeps the log).
  std::printf("golden %s on cuda %s: logits rel err %.3g (bar %.0e)\n", gd.name,
              prec == Precision::F32 ? "f32" : "bf16", err, golden_tolerance(prec));
  EXPECT_LT(err, golden_tolerance(prec));
  if (prec == Precision::F32) {
    test::GoldenRun cpu = load_golden_on(gd.name, DeviceSpec{});
    EXPECT_TRUE(rows_near(got, test::packed_logits(cpu), g.V, test::kTolF32)) << "against the CPU model";
  }
}

// Sequence b prefilled for k tokens (around the chunk or conv width), then stepped to its end:
// the logits of the forward over all of it.
TEST_P(CudaGolden, PrefillThenStepEqualsForward) {
  const auto& [gd, prec] = GetParam();
  test::GoldenRun g = load_golden_on(gd.name, cuda_device(prec));
  const std::vector<float> full = test::packed_logits(g);
  const int64_t c = chunk_of(g.model.config());
  for (int64_t k : {int64_t(0), int64_t(1), c - 1, c, c + 1, g.L - 1}) {
    if (k < 0 || k >= g.L) continue;
    for (int64_t b = 0; b < g.B; ++b)
      EXPECT_TRUE(rows_near(test::prefill_then_step(g, b, k), rows_of(full, b * g.L, (b + 1) * g.L, g.V), g.V,
                            test::tolerance(prec)))
          << "k = " << k << ", sequence " << b;
  }
}

// Runs of random lengths (one empty, one of a single token, others across the chunk) cut from the
// golden ids, packed in one forward call whose states sit in scattered slots of the pool (other
// sequences' states between them, which the call must leave alone), against each run alone.
TEST_P(CudaGolden, PackedVarlenInScatteredSlotsEqualsSeparate) {
  const auto& [gd, prec] = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  test::GoldenRun g = load_golden_on(gd.name, cuda_device(prec));
  const int64_t c = chunk_of(g.model.config()), flat = g.B * g.L;
  std::vector<int64_t> lens = {0, 1, std::min(c + 1, g.L), test::random_int(rng, 2, g.L),
                               test::random_int(rng, 2, g.L)};
  std::shuffle(lens.begin(), lens.end(), rng);
  std::vector<int32_t> toks;
  std::vector<int64_t> cu = {0};
  std::string what = "lengths";
  for (int64_t L : lens) {
    const int64_t start = test::random_int(rng, 0, flat - L);
    toks.insert(toks.end(), g.ids.begin() + start, g.ids.begin() + start + L);
    cu.push_back(cu.back() + L);
    what += " " + std::to_string(L);
  }
  SCOPED_TRACE(what);

  // The pool's slots alternate between other sequences, which have consumed a few tokens, and the
  // batch's states; sequence i takes them in decreasing slot order (st[n − 1 − i]).
  const size_t n = lens.size();
  std::vector<SequenceState> others, st;
  for (size_t i = 0; i < n; ++i) {
    others.push_back(prefilled(g.model, std::span<const int32_t>(g.ids.data() + i, 3)));
    st.push_back(g.model.new_state());
  }
  std::vector<NamedTensors> others_before;
  for (const SequenceState& o : others) others_before.push_back(state_to_tensors(o));
  std::vector<SequenceState*> sp;
  for (size_t i = 0; i < n; ++i) sp.push_back(&st[n - 1 - i]);
  std::vector<float> packed(toks.size() * size_t(g.V));
  g.model.forward(toks, cu, sp, packed.data());

  const double tol = test::tolerance(prec);
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i) + " of length " + std::to_string(lens[i]));
    SequenceState s = g.model.new_state();  // an empty sequence's stays as it was: fresh
    if (lens[i] > 0) {
      SequenceState* sp1 = &s;
      const int64_t c1[2] = {0, lens[i]};
      std::vector<float> alone(static_cast<size_t>(lens[i] * g.V));
      g.model.forward(std::span<const int32_t>(toks.data() + cu[i], size_t(lens[i])), c1, one(sp1), alone.data());
      EXPECT_TRUE(rows_near(rows_of(packed, cu[i], cu[i + 1], g.V), alone, g.V, tol));
    }
    EXPECT_EQ(sp[i]->n_tokens, lens[i]);
    expect_saved_states_near(state_to_tensors(*sp[i]), state_to_tensors(s), tol);
  }
  for (size_t i = 0; i < others.size(); ++i) {
    const NamedTensors now = state_to_tensors(others[i]);
    ASSERT_EQ(now.size(), others_before[i].size());
    for (size_t t = 0; t < now.size(); ++t)
      EXPECT_EQ(test::to_f64(now[t].second), test::to_f64(others_before[i][t].second))
          << "another sequence's state changed: " << now[t].first;
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, CudaGolden,
                         ::testing::Combine(::testing::ValuesIn(kGoldens),
                                            ::testing::Values(Precision::F32, Precision::BF16)),
                         [](const ::testing::TestParamInfo<std::tuple<Golden, Precision>>& i) {
                           return test_name(std::get<0>(i.param)) + "_" + test::precision_name(std::get<1>(i.param));
                         });

// What only F32 can promise: the CPU model's greedy tokens, and states that move between backends.
class CudaGoldenF32 : public test::CudaTestWithParam<Golden> {};

// The prompt (greedy_prompt, or the first 12 ids) continued greedily: the CPU model's tokens, and
// the reference's where the folder has them.
TEST_P(CudaGoldenF32, GreedyTokensMatchCpu) {
  const Golden& gd = GetParam();
  Model gpu = Model::load(test::golden_path(gd.name), cuda_device(Precision::F32));
  Model cpu = Model::load(test::golden_path(gd.name));
  SafetensorsFile f = SafetensorsFile::open(test::golden_path(std::string(gd.name) + "/golden.safetensors"));
  std::vector<int32_t> prompt, want;
  if (gd.has_greedy) {
    prompt = test::token_ids(f.get("greedy_prompt"));
    want = test::token_ids(f.get("greedy_out"));
  } else {
    const std::vector<int32_t> ids = test::token_ids(f.get("input_ids"));
    prompt.assign(ids.begin(), ids.begin() + 12);
  }
  const int64_t n = want.empty() ? 12 : int64_t(want.size() - prompt.size());
  const std::vector<int32_t> got = test::greedy_tokens(gpu, prompt, n);
  EXPECT_EQ(got, test::greedy_tokens(cpu, prompt, n));
  if (!want.empty()) {
    EXPECT_EQ(got, want);
  }
}

// A state prefilled on one backend, saved (state_to_tensors) and restored into the other's
// (state_from_tensors), continues there with the logits of continuing where it was made, and the
// reference's; both saved states agree.
TEST_P(CudaGoldenF32, DecodeStateMovesBetweenCudaAndCpu) {
  const Golden& gd = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  test::GoldenRun g = load_golden_on(gd.name, cuda_device(Precision::F32));
  Model cpu = Model::load(test::golden_path(gd.name));
  const int64_t b = test::random_int(rng, 0, g.B - 1), k = test::random_int(rng, 1, g.L - 2);
  SCOPED_TRACE("sequence " + std::to_string(b) + ", prefill " + std::to_string(k));
  const std::span<const int32_t> seq(g.ids.data() + b * g.L, size_t(g.L));
  const std::vector<double> want = rows_of(g.ref, b * g.L + k, (b + 1) * g.L, g.V);

  SequenceState on_gpu = prefilled(g.model, seq.first(size_t(k))), on_cpu = prefilled(cpu, seq.first(size_t(k)));
  const NamedTensors from_gpu = state_to_tensors(on_gpu), from_cpu = state_to_tensors(on_cpu);
  expect_saved_states_near(from_gpu, from_cpu, test::kTolF32);

  SequenceState gpu_to_cpu = cpu.new_state(), cpu_to_gpu = g.model.new_state();
  state_from_tensors(gpu_to_cpu, from_gpu, "the CUDA model's state");
  state_from_tensors(cpu_to_gpu, from_cpu, "the CPU model's state");
  EXPECT_EQ(gpu_to_cpu.n_tokens, k);
  EXPECT_EQ(cpu_to_gpu.n_tokens, k);
  const std::span<const int32_t> rest = seq.subspan(size_t(k));
  const std::vector<float> gpu_on = step_through(g.model, on_gpu, rest), cpu_on = step_through(cpu, on_cpu, rest);
  const std::vector<float> moved_to_cpu = step_through(cpu, gpu_to_cpu, rest);
  const std::vector<float> moved_to_gpu = step_through(g.model, cpu_to_gpu, rest);
  EXPECT_TRUE(rows_near(moved_to_cpu, gpu_on, g.V, test::kTolF32)) << "saved on CUDA, continued on the CPU";
  EXPECT_TRUE(rows_near(moved_to_gpu, cpu_on, g.V, test::kTolF32)) << "saved on the CPU, continued on CUDA";
  EXPECT_LT(test::rel_err(moved_to_cpu, want), 1e-4);
  EXPECT_LT(test::rel_err(moved_to_gpu, want), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Goldens, CudaGoldenF32, ::testing::ValuesIn(kGoldens),
                         [](const ::testing::TestParamInfo<Golden>& i) { return test_name(i.param); });

// The tiny presets (hybrids with MHA and GatedMLP at d_model 128) initialised with the same seed
// on CUDA and on the CPU: the same logits on fresh random tokens, packed and stepped, and (F32)
// the same greedy tokens.
class CudaPreset : public test::CudaTestWithParam<std::tuple<std::string, Precision>> {};

TEST_P(CudaPreset, InitMatchesCpu) {
  const auto& [preset, prec] = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const ModelConfig c = preset_config(preset);
  Model gpu = Model::init(c, seed, cuda_device(prec));
  Model cpu = Model::init(c, seed);
  const int64_t V = c.vocab_padded();
  const std::vector<int64_t> lens = {test::random_int(rng, 1, 200), test::random_int(rng, 1, 200), 1};
  std::vector<int32_t> toks;
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) {
    for (int64_t t = 0; t < L; ++t) toks.push_back(int32_t(test::random_int(rng, 0, c.vocab_size - 1)));
    cu.push_back(cu.back() + L);
  }
  auto run = [&](Model& m) {
    std::vector<SequenceState> st;
    for (size_t i = 0; i < lens.size(); ++i) st.push_back(m.new_state());
    std::vector<SequenceState*> sp;
    for (auto& s : st) sp.push_back(&s);
    std::vector<float> logits(toks.size() * size_t(V)), stepped(lens.size() * size_t(V));
    m.forward(toks, cu, sp, logits.data());
    const std::vector<int32_t> next(lens.size(), 7);
    m.step(next, sp, stepped.data());
    logits.insert(logits.end(), stepped.begin(), stepped.end());
    return logits;
  };
  const std::vector<float> got = run(gpu), want = run(cpu);
  if (prec == Precision::F32) {
    EXPECT_TRUE(rows_near(got, want, V, test::kTolF32));
  } else {  // the CPU model's matrices are not rounded: the golden bar
    EXPECT_LT(test::rel_err(got, want), golden_tolerance(prec));
  }
  if (prec == Precision::F32) {
    const std::vector<int32_t> prompt(toks.begin(), toks.begin() + std::min<int64_t>(lens[0], 16));
    EXPECT_EQ(test::greedy_tokens(gpu, prompt, 12), test::greedy_tokens(cpu, prompt, 12));
  }
}

INSTANTIATE_TEST_SUITE_P(TinyPresets, CudaPreset,
                         ::testing::Combine(::testing::Values("mamba3-tiny", "mamba3-mimo-tiny-hybrid",
                                                              "mamba2-tiny-hybrid", "mamba1-tiny"),
                                            ::testing::Values(Precision::F32, Precision::BF16)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, Precision>>& i) {
                           std::string n = std::get<0>(i.param) + "_" + test::precision_name(std::get<1>(i.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- The CLI -------------------------------------------------------------------------------------

// `m3 logits DIR --device cuda [--dtype D] --input DIR/golden.safetensors --output OUT`.
test::Result m3_logits_on_cuda(const std::string& dir, const std::string& dtype, const std::string& out,
                               const test::TempDir& tmp) {
  return test::run_m3("logits " + test::quote(dir) + " --device cuda" + (dtype.empty() ? "" : " --dtype " + dtype) +
                          " --input " + test::quote(dir + "/golden.safetensors") + " --output " + test::quote(out),
                      tmp);
}

class CudaCli : public test::CudaTest {};

TEST_F(CudaCli, LogitsOnCudaReproduceTheGolden) {
  for (const char* name : {"mamba3_siso_hybrid", "hf_falconmamba"})
    for (const std::string dtype : {"f32", ""}) {  // "": the device's default, bf16
      SCOPED_TRACE(std::string(name) + (dtype.empty() ? " (default dtype)" : " --dtype " + dtype));
      test::TempDir tmp;
      const std::string dir = test::golden_path(name), out = tmp.file("logits.safetensors");
      const test::Result r = m3_logits_on_cuda(dir, dtype, out, tmp);
      ASSERT_EQ(r.code, 0) << r.err;
      SafetensorsFile golden = SafetensorsFile::open(dir + "/golden.safetensors");
      const Tensor want = golden.get(golden.has("logits_f64") ? "logits_f64" : "logits");
      const Tensor got = SafetensorsFile::open(out).get("logits");
      EXPECT_EQ(got.dtype, DType::F32);
      EXPECT_EQ(got.shape, want.shape);
      EXPECT_LT(test::rel_err(test::to_f64(got), test::to_f64(want)),
                golden_tolerance(dtype == "f32" ? Precision::F32 : Precision::BF16));
    }
}

// The one CUDA test for a machine without a GPU (skipped where there is one): asking for the
// device is an error the tool reports (exit status 1, a message naming the problem), writing
// nothing.
TEST(CudaCliWithoutGpu, LogitsOnCudaFailsWithAnError) {
  if (test::no_gpu_reason().empty()) GTEST_SKIP() << "this machine has a GPU";
  test::TempDir tmp;
  const std::string out = tmp.file("logits.safetensors");
  const test::Result r = m3_logits_on_cuda(test::golden_path("mamba3_siso_hybrid"), "", out, tmp);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("m3: error: ", 0), 0u) << r.err;
  std::string lower = r.err;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  EXPECT_TRUE(lower.find("cuda") != std::string::npos || lower.find("gpu") != std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace m3
