// m3 bench: whole-model prefill and decode throughput on a device, each next to its roofline
// measured in the same run by the backend's probe: the matrix-product rate for prefill (OpenBLAS
// sgemm on the CPU, cuBLASLt on CUDA; compared with the FLOPs of the projection matrices,
// src/model/work.h) and the memory bandwidth for decode (compared with the bytes a step must
// move: weights, and the decode state read and written).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "core/limits.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "model/backend.h"
#include "model/work.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"

namespace m3::cli {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds(const std::function<void()>& f) {
  const auto t = clock_type::now();
  f();
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode throughput against their rooflines");
  struct Args { std::string dir, preset; int64_t prompt = 512, decode = 64; int reps = 5; DeviceOptions dev; };
  auto a = std::make_shared<Args>();
  add_device_options(cmd, a->dev);
  auto* d = cmd->add_option("DIR", a->dir, "checkpoint directory");
  auto* p = cmd->add_option("--preset", a->preset, "benchmark a randomly initialised preset instead of a checkpoint");
  d->excludes(p);
  cmd->add_option("--prompt-len", a->prompt, "prefill length")->default_val(512)->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--decode-tokens", a->decode, "tokens to decode")->default_val(64)->check(between(1, double(limits::kNewTokens)));
  cmd->add_option("--reps", a->reps, "rounds, each printed; the fastest is reported against the ceilings measured around it")->default_val(5)->check(between(1, 1000));
  cmd->callback([a] {
    check(!a->dir.empty() || !a->preset.empty(), "give a checkpoint DIR or --preset NAME");
    const DeviceSpec spec = a->dev.spec();
    Model m = a->preset.empty() ? Model::load(a->dir, spec) : Model::init(preset_config(a->preset), 1, spec);
    const ModelConfig& c = m.config();
    std::mt19937 rng(7);
    std::vector<int32_t> prompt(size_t(a->prompt));
    for (auto& t : prompt) t = int32_t(rng() % uint32_t(c.vocab_size));
    std::vector<float> logits(size_t(c.vocab_padded()));
    const int64_t cu[2] = {0, a->prompt};

    // Prefill from a fresh state, logits for the last token only (what generation needs); greedy
    // decode from the prompt's state.
    const SequenceState fresh = m.new_state();
    SequenceState s = fresh;
    SequenceState* sp = &s;
    auto prefill = [&] { m.forward(prompt, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true); };
    prefill();  // warm-up: sizes the activation buffers
    const SequenceState prompted = s;
    auto decode = [&] {
      int32_t tok = prompt.back();
      for (int64_t i = 0; i < a->decode; ++i) {
        m.step(std::span<const int32_t>(&tok, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
        tok = int32_t(std::max_element(logits.begin(), logits.begin() + c.vocab_size) - logits.begin());
      }
    };
    // Rounds of: matmul, prefill, matmul, memory, decode, memory. On a shared machine the ceilings move
    // with the neighbours' load (this host's read bandwidth swings between ~38 and ~72 GB/s), so
    // each figure is compared with the better of the two ceilings measured right around it, and
    // the round with the fastest figure is reported with its own ceiling.
    const std::shared_ptr<Backend> probe_be = open_backend(spec);
    const std::unique_ptr<RooflineProbe> probe = probe_be->make_roofline_probe(a->prompt, 4 * c.d_model, c.d_model);
    struct Round { double t, ceiling; };
    Round pre{1e30, 0}, dec{1e30, 0};
    std::printf("round  prefill tok/s  matmul GFLOP/s   decode tok/s  memory GB/s\n");
    for (int r = 0; r < a->reps; ++r) {
      double gemm = probe->matmul_gflops(3);
      s = fresh;
      const double tp = seconds(prefill);
      gemm = std::max(gemm, probe->matmul_gflops(3));
      double bw = probe->memory_gbps(3);
      s = prompted;
      const double td = seconds(decode);
      bw = std::max(bw, probe->memory_gbps(3));
      std::printf("%5d  %13.1f  %14.1f   %12.1f  %11.1f\n", r, double(a->prompt) / tp, gemm, double(a->decode) / td, bw);
      if (tp < pre.t) pre = {tp, gemm};
      if (td < dec.t) dec = {td, bw};
    }

    const PrefillWork pw = prefill_work(m, a->prompt, 1);
    DecodeBytes db = decode_bytes(m, prompted);
    if (spec.kind != DeviceKind::CPU) {
      // Weights as the device holds them (bf16 matrices), less an untied embedding of which a
      // step gathers one row.
      const double emb = c.tie_embeddings ? 0.0 : double(c.vocab_padded() - 1) * double(c.d_model) *
                                                      (spec.precision == Precision::BF16 ? 2.0 : 4.0);
      db.weights = double(m.device_weight_bytes()) - emb;
    }
    const double t_pre = pre.t, gemm = pre.ceiling, t_dec = dec.t, bw = dec.ceiling;
    // s: after the last round's decode; the weights' share is corrected like db's above.
    const double bytes = decode_bytes_of_steps(m, prompted, s, a->decode) -
                         double(a->decode) * (decode_bytes(m, prompted).weights - db.weights);
    const double pre_gflops = pw.matrix_flops / t_pre / 1e9, dec_gbps = bytes / t_dec / 1e9;
    std::printf("model: %s, %.1f M parameters; device %s; host %s, %u hardware threads, %d OpenMP threads\n",
                a->preset.empty() ? a->dir.c_str() : a->preset.c_str(), double(m.n_params()) / 1e6,
                m.device_description().c_str(), cpu_name().c_str(), std::thread::hardware_concurrency(),
                omp_get_max_threads());
    std::printf("fastest of %d rounds, each against the ceilings measured around it (%s): matmul %.1f GFLOP/s; "
                "memory %.1f GB/s\n",
                a->reps, probe->describe().c_str(), gemm, bw);
    std::printf("prefill %lld tokens: %.1f tok/s, %.1f GFLOP/s = %.0f%% of matmul\n", (long long)a->prompt,
                double(a->prompt) / t_pre, pre_gflops, 100 * pre_gflops / gemm);
    const double all_flops = pw.matrix_flops + pw.scan_flops + pw.attention_flops;
    std::printf("  counted: projection matrices and lm_head for the last token, %.2f GFLOP; not counted: "
                "SSM scans %.2f GFLOP, attention %.2f GFLOP (with them: %.1f GFLOP/s = %.0f%% of matmul)\n",
                pw.matrix_flops / 1e9, pw.scan_flops / 1e9, pw.attention_flops / 1e9, all_flops / t_pre / 1e9,
                100 * all_flops / t_pre / 1e9 / gemm);
    std::printf("decode %lld tokens: %.1f tok/s, %.1f GB/s = %.0f%% of memory bandwidth\n", (long long)a->decode,
                double(a->decode) / t_dec, dec_gbps, 100 * dec_gbps / bw);
    std::printf("  bytes per token (first step): weights %.1f MB, state read %.1f MB, state written %.1f MB\n",
                db.weights / 1e6, db.state_read / 1e6, db.state_written / 1e6);
  });
}

}  // namespace m3::cli
