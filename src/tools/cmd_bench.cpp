// m3 bench: whole-model prefill and decode throughput on the CPU, each next to its roofline
// measured in the same run (OpenBLAS sgemm GFLOP/s for prefill; streaming read GB/s for decode).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "tools/commands.h"

namespace m3::cli {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// Best of `reps` runs of f, in seconds.
template <class F>
double best_time(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t = clock_type::now();
    f();
    best = std::min(best, seconds_since(t));
  }
  return best;
}

// sgemm of the shape prefill's projections have: [T, d] · [d, 4d].
double sgemm_gflops(int64_t T, int64_t d) {
  std::vector<float> a(size_t(T * d), 0.5f), b(size_t(4 * d * d), 0.25f), c(size_t(T * 4 * d));
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(4 * d), int(d), 1.0f, a.data(), int(d), b.data(),
                int(d), 0.0f, c.data(), int(4 * d));
  };
  run();
  return 2.0 * double(T) * double(d) * double(4 * d) / best_time(5, run) / 1e9;
}

// Streaming read bandwidth over a buffer much larger than the caches, all threads.
double read_gbps() {
  const size_t n = size_t(256) << 20;  // 1 GiB of floats
  std::vector<float> buf(n);
#pragma omp parallel for
  for (size_t i = 0; i < n; ++i) buf[i] = float(i & 1023);
  volatile float sink = 0;
  double t = best_time(3, [&] {
    float s = 0;
#pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < n; ++i) s += buf[i];
    sink = s;
  });
  (void)sink;
  return double(n) * sizeof(float) / t / 1e9;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode throughput against their rooflines");
  struct Args { std::string dir, preset; int64_t prompt = 512, decode = 64; int reps = 3; };
  auto a = std::make_shared<Args>();
  auto* d = cmd->add_option("DIR", a->dir, "checkpoint directory");
  auto* p = cmd->add_option("--preset", a->preset, "benchmark a randomly initialised preset instead of a checkpoint");
  d->excludes(p);
  cmd->add_option("--prompt-len", a->prompt, "prefill length")->default_val(512)->check(CLI::PositiveNumber);
  cmd->add_option("--decode-tokens", a->decode, "tokens to decode")->default_val(64)->check(CLI::PositiveNumber);
  cmd->add_option("--reps", a->reps, "repetitions (best is reported)")->default_val(3)->check(CLI::PositiveNumber);
  cmd->callback([a] {
    check(!a->dir.empty() || !a->preset.empty(), "give a checkpoint DIR or --preset NAME");
    Model m = a->preset.empty() ? Model::load(a->dir) : Model::init(preset_config(a->preset), 1);
    const ModelConfig& c = m.config();
    std::mt19937 rng(7);
    std::vector<int32_t> prompt(size_t(a->prompt));
    for (auto& t : prompt) t = int32_t(rng() % uint32_t(c.vocab_size));
    std::vector<float> logits(size_t(c.vocab_padded()));

    // FLOPs of prefill: 2 per weight of every matrix applied to every token (embedding rows are
    // gathered, not multiplied; lm_head only for the last token) — the GEMM work, scan excluded.
    int64_t matrix_params = 0, embed = c.vocab_padded() * c.d_model;
    for (const auto& [name, t] : m.parameters())
      if (t.shape.size() == 2 && name != "backbone.embedding.weight" && name != "lm_head.weight") matrix_params += t.numel();
    const double prefill_flops = 2.0 * double(matrix_params) * double(a->prompt) + 2.0 * double(embed);
    // Bytes one decode step must read: every parameter once (the tied embedding as lm_head).
    // (an untied embedding matrix is only gathered from, one row per token).
    const double step_bytes = 4.0 * double(m.n_params() - (c.tie_embeddings ? 0 : embed));

    SequenceState warm = m.new_state();
    SequenceState* wp = &warm;
    int64_t cu[2] = {0, a->prompt};
    m.forward(prompt, cu, std::span<SequenceState* const>(&wp, 1), logits.data(), true);
    double t_pre = best_time(a->reps, [&] {
      SequenceState s = m.new_state();
      SequenceState* sp = &s;
      m.forward(prompt, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
    });
    double t_dec = best_time(a->reps, [&] {
      SequenceState s = warm;
      SequenceState* sp = &s;
      int32_t tok = prompt.back();
      for (int64_t i = 0; i < a->decode; ++i) {
        m.step(std::span<const int32_t>(&tok, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
        tok = int32_t(std::max_element(logits.begin(), logits.begin() + c.vocab_size) - logits.begin());
      }
    });
    const double gemm = sgemm_gflops(a->prompt, c.d_model), bw = read_gbps();
    const double pre_tps = double(a->prompt) / t_pre, dec_tps = double(a->decode) / t_dec;
    const double pre_gflops = prefill_flops / t_pre / 1e9, dec_gbps = step_bytes * dec_tps / 1e9;
    std::printf("model: %s, %.1f M parameters, %d threads\n", a->preset.empty() ? a->dir.c_str() : a->preset.c_str(),
                double(m.n_params()) / 1e6, omp_get_max_threads());
    std::printf("roofline: sgemm [%lld x %lld x %lld] %.1f GFLOP/s; read bandwidth %.1f GB/s\n", (long long)a->prompt,
                (long long)c.d_model, (long long)(4 * c.d_model), gemm, bw);
    std::printf("prefill %lld tokens: %.1f tok/s, %.1f GFLOP/s = %.0f%% of sgemm\n", (long long)a->prompt, pre_tps,
                pre_gflops, 100 * pre_gflops / gemm);
    std::printf("decode %lld tokens: %.1f tok/s, %.2f GB/s of weights = %.0f%% of read bandwidth\n",
                (long long)a->decode, dec_tps, dec_gbps, 100 * dec_gbps / bw);
  });
}

}  // namespace m3::cli
