// CPU throughput of the 130M presets (prefill, decode) and of the kernels they spend their time
// in: the projection GEMMs, the one-row linear of decode (lm_head, in_proj), the Mamba-3 scan in
// both forms, and the two ceilings m3 bench compares with (sgemm, streaming read). Real time,
// all OpenMP threads. Counters: tok/s; GFLOP/s (counted as src/model/work.h says); GB/s of the
// bytes the kernel must move. bench/RESULTS.md records runs.
//
//   build-perf/m3_bench --benchmark_filter='Prefill|Decode|Sgemm|Linear|Read|Mamba3'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>

#include "cpu/mamba3_scan.h"
#include "cpu/ops.h"
#include "cpu/roofline.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "model/work.h"

namespace {

using benchmark::Counter;

constexpr int64_t kPrompt = 512;

// Randomly initialised preset models, built once per program (initialisation takes seconds).
m3::Model& preset_model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<m3::Model>> models;
  auto& m = models[name];
  if (!m) m = std::make_unique<m3::Model>(m3::Model::init(m3::preset_config(name), 1));
  return *m;
}

std::vector<int32_t> prompt_ids(const m3::Model& m) {
  std::mt19937 rng(7);
  std::vector<int32_t> ids(static_cast<size_t>(kPrompt));
  for (auto& t : ids) t = int32_t(rng() % uint32_t(m.config().vocab_size));
  return ids;
}

// One sequence of kPrompt tokens from a fresh state, logits for the last token.
void Prefill(benchmark::State& state, const std::string& preset) {
  m3::Model& m = preset_model(preset);
  const auto ids = prompt_ids(m);
  const int64_t cu[2] = {0, kPrompt};
  std::vector<float> logits(size_t(m.config().vocab_padded()));
  const m3::SequenceState fresh = m.new_state();
  for (auto _ : state) {
    state.PauseTiming();
    m3::SequenceState s = fresh;
    m3::SequenceState* sp = &s;
    state.ResumeTiming();
    m.forward(ids, cu, std::span<m3::SequenceState* const>(&sp, 1), logits.data(), true);
  }
  const double flops = m3::prefill_work(m, kPrompt, 1).matrix_flops;
  state.counters["tok/s"] = Counter(double(kPrompt), Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = Counter(flops / 1e9, Counter::kIsIterationInvariantRate);
}

// One token per iteration, continuing from a kPrompt-token prompt.
void Decode(benchmark::State& state, const std::string& preset) {
  m3::Model& m = preset_model(preset);
  const auto ids = prompt_ids(m);
  const int64_t cu[2] = {0, kPrompt};
  std::vector<float> logits(size_t(m.config().vocab_padded()));
  m3::SequenceState s = m.new_state();
  m3::SequenceState* sp = &s;
  m.forward(ids, cu, std::span<m3::SequenceState* const>(&sp, 1), logits.data(), true);
  int32_t tok = ids.back();
  const m3::SequenceState before = s;
  for (auto _ : state) {
    m.step(std::span<const int32_t>(&tok, 1), std::span<m3::SequenceState* const>(&sp, 1), logits.data());
    tok = int32_t((tok + 1) % m.config().vocab_size);
  }
  state.counters["tok/s"] = Counter(1.0, Counter::kIsIterationInvariantRate);
  const double bytes = m3::decode_bytes_of_steps(m, before, s, int64_t(state.iterations()));
  state.counters["GB/s"] = Counter(bytes / 1e9, Counter::kIsRate);
}

// y[M, N] = x[M, K] · W[N, K]ᵀ through linear_fwd: sgemm for many rows, the streaming kernel for few.
void Linear(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  // Allocated as model weights are (Tensor::zeros: huge pages where the kernel allows).
  m3::Tensor x = m3::Tensor::zeros(m3::DType::F32, {M, K}), W = m3::Tensor::zeros(m3::DType::F32, {N, K});
  m3::Tensor y = m3::Tensor::zeros(m3::DType::F32, {M, N});
  std::fill_n(x.f32(), M * K, 0.5f);
  std::fill_n(W.f32(), N * K, 0.25f);
  for (auto _ : state) {
    m3::cpu::linear_fwd(y.f32(), x.f32(), W.f32(), nullptr, M, K, N);
    benchmark::DoNotOptimize(y.f32());
  }
  state.counters["GFLOP/s"] = Counter(2.0 * double(M * N * K) / 1e9, Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = Counter(4.0 * double(N * K + M * K + M * N) / 1e9, Counter::kIsIterationInvariantRate);
}

// The decode ceiling m3 bench uses: a streaming sum over a buffer allocated as weights are.
void ReadBandwidth(benchmark::State& state) {
  m3::cpu::ReadProbe probe(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(probe.gbps(1));
  state.counters["GB/s"] = Counter(double(state.range(0)) / 1e9, Counter::kIsIterationInvariantRate);
}

// One Mamba-3 SISO layer of the 130M preset: 24 heads of 64, d_state 128, 32 angles.
struct ScanFixture {
  static constexpr int64_t H = 24, P = 64, N = 128, S = 32;
  m3::cpu::Mamba3ScanDims d{H, 1, P, N, S, 1, false};
  std::vector<float> q, k, bias, x, adt, dt, trap, angle, D, y, a0, s0, k0, v0;
  explicit ScanFixture(int64_t T) {
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto randn = [&](int64_t n, float scale, float shift) {
      std::vector<float> v(static_cast<size_t>(n));
      for (auto& e : v) e = shift + scale * nd(rng);
      return v;
    };
    q = randn(T * N, 1, 0), k = randn(T * N, 1, 0), bias = randn(H * N, 0.1f, 1), x = randn(T * H * P, 1, 0);
    adt = randn(T * H, 0.01f, -0.05f), dt = randn(T * H, 0.01f, 0.05f), trap = randn(T * H, 1, 0);
    angle = randn(T * S, 1, 0), D = randn(H, 1, 0), y.resize(size_t(T * H * P));
    a0.resize(size_t(H * S)), s0.resize(size_t(H * P * N)), k0.resize(size_t(H * N)), v0.resize(size_t(H * P));
  }
  m3::cpu::Mamba3ScanInputs inputs() const {
    m3::cpu::Mamba3ScanInputs in{};
    in.q = q.data(), in.k = k.data(), in.qk_ld = N, in.q_bias = bias.data(), in.k_bias = bias.data();
    in.x = x.data(), in.x_ld = H * P, in.adt = {adt.data(), H, 1}, in.dt = {dt.data(), H, 1};
    in.trap = {trap.data(), H, 1}, in.angle = angle.data(), in.angle_ld = S, in.angle_hs = 0, in.D = D.data();
    return in;
  }
  m3::cpu::Mamba3ScanState state() { return {a0.data(), s0.data(), k0.data(), v0.data()}; }
};

void Mamba3ScanPrefill(benchmark::State& state) {
  const int64_t T = state.range(0);
  ScanFixture f(T);
  const int64_t cu[2] = {0, T};
  for (auto _ : state) {
    const m3::cpu::Mamba3ScanState st = f.state();
    m3::cpu::mamba3_scan_chunked(f.d, f.inputs(), cu, 1, &st, f.y.data(), f.H * f.P, 64);
  }
  state.counters["tok/s"] = Counter(double(T), Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      Counter(5.0 * double(T * f.H * f.P * f.N) / 1e9, Counter::kIsIterationInvariantRate);  // as work.h counts
}

void Mamba3ScanStep(benchmark::State& state) {
  ScanFixture f(1);
  for (auto _ : state) {
    const m3::cpu::Mamba3ScanState st = f.state();
    m3::cpu::mamba3_scan_step(f.d, f.inputs(), 1, &st, f.y.data(), f.H * f.P);
  }
  // The state is read and written once.
  state.counters["GB/s"] = Counter(2.0 * 4.0 * double(f.H * f.P * f.N) / 1e9, Counter::kIsIterationInvariantRate);
}

const int registered = [] {
  for (const char* preset : {"mamba3-130m", "mamba3-130m-hybrid", "mamba3-mimo-130m", "mamba2-130m", "mamba1-130m"}) {
    benchmark::RegisterBenchmark((std::string("Prefill/") + preset).c_str(), Prefill, std::string(preset))
        ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
    benchmark::RegisterBenchmark((std::string("Decode/") + preset).c_str(), Decode, std::string(preset))
        ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
  }
  // The roofline shape of m3 bench, in_proj and out_proj of a 512-token prefill; in_proj and
  // lm_head of one decode step.
  benchmark::RegisterBenchmark("Linear", Linear)
      ->Args({512, 3072, 768})->Args({512, 3432, 768})->Args({512, 768, 1536})
      ->Args({1, 3432, 768})->Args({1, 50288, 768})
      ->Unit(benchmark::kMicrosecond)->UseRealTime();
  benchmark::RegisterBenchmark("ReadBandwidth", ReadBandwidth)->Arg(int64_t(512) << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Mamba3ScanPrefill", Mamba3ScanPrefill)->Arg(kPrompt)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Mamba3ScanStep", Mamba3ScanStep)->Unit(benchmark::kMicrosecond)->UseRealTime();
  return 0;
}();

}  // namespace
