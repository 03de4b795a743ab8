// m3 bench: whole-model prefill and decode throughput on a device for a batch of B sequences, each
// next to its roofline measured in the same run by the backend's probe: the matrix-product rate
// for prefill (OpenBLAS sgemm on the CPU, cuBLASLt on CUDA; compared with the FLOPs of the
// projection matrices, src/model/work.h) and the memory bandwidth for decode (compared with the
// bytes a step must move: weights once, and every sequence's decode state read and written).
// --json writes the final figures for bench/latency_table.py.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/limits.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "m3/safetensors.h"
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

// The device memory one sequence's decode state takes after `tokens` tokens: every buffer of
// every layer in float32, a KV buffer with one row per token.
double state_bytes_per_sequence(const Model& m, int64_t tokens) {
  double b = 0;
  for (const LayerStateSpec& layer : m.state_specs())
    for (const StateBufferSpec& buf : layer) b += 4.0 * double(buf.row_numel()) * double(buf.kv ? tokens : 1);
  return b;
}

// This process's peak resident set (host memory), from getrusage (kilobytes on Linux).
double host_peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode throughput against their rooflines");
  struct Args {
    std::string dir, preset, json;
    int64_t prompt = 512, decode = 64, batch = 1, pass_tokens = 0;
    int reps = 5;
    DeviceOptions dev;
  };
  auto a = std::make_shared<Args>();
  add_device_options(cmd, a->dev);
  auto* d = cmd->add_option("DIR", a->dir, "checkpoint directory");
  auto* p = cmd->add_option("--preset", a->preset, "benchmark a randomly initialised preset instead of a checkpoint");
  d->excludes(p);
  cmd->add_option("--prompt-len", a->prompt, "prefill length of each sequence")->default_val(512)->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--decode-tokens", a->decode, "tokens to decode for each sequence")->default_val(64)->check(between(1, double(limits::kNewTokens)));
  cmd->add_option("--batch", a->batch, "sequences prefilled in one forward call and decoded together")->default_val(1)->check(between(1, 65536));
  cmd->add_option("--pass-tokens", a->pass_tokens, "token budget of one forward pass (default: the model's, 16384)")->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--reps", a->reps, "rounds, each printed; the fastest is reported against the ceilings measured around it")->default_val(5)->check(between(1, 1000));
  cmd->add_option("--json", a->json, "write the final figures to this JSON file");
  cmd->callback([a] {
    check(!a->dir.empty() || !a->preset.empty(), "give a checkpoint DIR or --preset NAME");
    const DeviceSpec spec = a->dev.spec();
    Model m = a->preset.empty() ? Model::load(a->dir, spec) : Model::init(preset_config(a->preset), 1, spec);
    if (a->pass_tokens > 0) m.set_max_tokens_per_pass(a->pass_tokens);
    const ModelConfig& c = m.config();
    const int64_t B = a->batch, n = a->prompt, V = c.vocab_padded();
    // B random prompts of n tokens, packed end to end.
    std::mt19937 rng(7);
    std::vector<int32_t> prompts(size_t(B * n));
    for (auto& t : prompts) t = int32_t(rng() % uint32_t(c.vocab_size));
    std::vector<int64_t> cu(size_t(B + 1));
    for (int64_t i = 0; i <= B; ++i) cu[size_t(i)] = i * n;
    std::vector<float> logits(size_t(B * V));

    // Exactly B states, each emptied by releasing its slot before taking a fresh one: the pool
    // keeps B slots (it would double them for a B+1st) and every round decodes on the same slots
    // (a decode recording is keyed by them).
    std::vector<SequenceState> states(static_cast<size_t>(B));
    std::vector<SequenceState*> sp;
    for (auto& s : states) sp.push_back(&s);
    auto reset = [&] {
      for (auto& s : states) s = SequenceState();
      for (auto& s : states) s = m.new_state();
    };
    // Prefill from fresh states, logits for each sequence's last token only (what generation
    // needs), in passes of the model's token budget when B·n exceeds it.
    auto prefill = [&] { m.forward(prompts, cu, sp, logits.data(), true); };
    // Greedy decode of all B sequences at once, starting from each prompt's last token.
    std::vector<int32_t> next(static_cast<size_t>(B));
    auto decode = [&](int64_t steps) {
      for (int64_t k = 0; k < steps; ++k) {
        m.step(next, sp, logits.data());
#pragma omp parallel for if (B > 8)
        for (int64_t i = 0; i < B; ++i) {
          const float* row = logits.data() + i * V;
          next[size_t(i)] = int32_t(std::max_element(row, row + c.vocab_size) - row);
        }
      }
    };
    // Warm-up: sizes the activation buffers with one pass of the size the timed prefill runs (the
    // whole batch when it fits in one pass, else each sequence's first budget / B tokens).
    {
      const int64_t w = B * n <= m.max_tokens_per_pass() ? n : std::max<int64_t>(1, m.max_tokens_per_pass() / B);
      std::vector<int32_t> warm;
      std::vector<int64_t> warm_cu = {0};
      for (int64_t i = 0; i < B; ++i) {
        warm.insert(warm.end(), prompts.begin() + i * n, prompts.begin() + i * n + w);
        warm_cu.push_back(warm_cu.back() + w);
      }
      reset();
      m.forward(warm, warm_cu, sp, logits.data(), true);
    }

    // Rounds of: matmul, prefill, matmul, memory, decode, memory. On a shared machine the ceilings move
    // with the neighbours' load (this host's read bandwidth swings between ~38 and ~72 GB/s), so
    // each figure is compared with the better of the two ceilings measured right around it, and
    // the round with the fastest figure is reported with its own ceiling. Each round's timed
    // decode follows 2 untimed steps (the first steps of a batch record its CUDA graph).
    const std::shared_ptr<Backend> probe_be = open_backend(spec);
    // The probe's product has the rows of one pass at the default budget (or of the whole batch
    // when smaller), so that its buffers do not grow with the prompt.
    const std::unique_ptr<RooflineProbe> probe =
        probe_be->make_roofline_probe(std::min<int64_t>(B * n, 16384), 4 * c.d_model, c.d_model);
    constexpr int64_t kWarmSteps = 2;
    struct Round { double t, ceiling; };
    Round pre{1e30, 0}, dec{1e30, 0};
    DecodeBytes first, last;  // one sequence's bytes at the first timed step and after the last
    std::printf("round  prefill tok/s  matmul GFLOP/s   decode tok/s  memory GB/s\n");
    for (int r = 0; r < a->reps; ++r) {
      double gemm = probe->matmul_gflops(3);
      reset();
      const double tp = seconds(prefill);
      gemm = std::max(gemm, probe->matmul_gflops(3));
      double bw = probe->memory_gbps(3);
      for (int64_t i = 0; i < B; ++i) next[size_t(i)] = prompts[size_t((i + 1) * n - 1)];
      decode(kWarmSteps);
      first = decode_bytes(m, states[0]);
      const double td = seconds([&] { decode(a->decode); });
      last = decode_bytes(m, states[0]);
      bw = std::max(bw, probe->memory_gbps(3));
      std::printf("%5d  %13.1f  %14.1f   %12.1f  %11.1f\n", r, double(B * n) / tp, gemm, double(B * a->decode) / td,
                  bw);
      if (tp < pre.t) pre = {tp, gemm};
      if (td < dec.t) dec = {td, bw};
    }

    // B independent sequences: B times one sequence's FLOPs.
    const PrefillWork pw = prefill_work(m, n, 1);
    const double matrix_flops = double(B) * pw.matrix_flops,
                 all_flops = double(B) * (pw.matrix_flops + pw.scan_flops + pw.attention_flops);
    double weights = first.weights;
    if (spec.kind != DeviceKind::CPU) {
      // Weights as the device holds them (bf16 matrices), less an untied embedding of which a
      // step gathers one row.
      const double emb = c.tie_embeddings ? 0.0 : double(c.vocab_padded() - 1) * double(c.d_model) *
                                                      (spec.precision == Precision::BF16 ? 2.0 : 4.0);
      weights = double(m.device_weight_bytes()) - emb;
    }
    // A step reads the weights once for the whole batch and each sequence's state; the state's
    // bytes grow with the KV cache, so they are taken at the mean of the first and last step.
    const double state_step = (first.state_read + first.state_written + last.state_read + last.state_written) / 2;
    const double bytes = double(a->decode) * (weights + double(B) * state_step);
    const double t_pre = pre.t, gemm = pre.ceiling, t_dec = dec.t, bw = dec.ceiling;
    const double pre_gflops = matrix_flops / t_pre / 1e9, dec_gbps = bytes / t_dec / 1e9;
    const double prefill_tok_s = double(B * n) / t_pre, decode_tok_s = double(B * a->decode) / t_dec,
                 ms_per_step = 1e3 * t_dec / double(a->decode);
    const double state_seq = state_bytes_per_sequence(m, n);
    // On the CPU the model runs on its host float32 parameters.
    const double weight_bytes =
        spec.kind == DeviceKind::CPU ? 4.0 * double(m.n_params()) : double(m.device_weight_bytes());
    std::printf("model: %s, %.1f M parameters; device %s; host %s, %u hardware threads, %d OpenMP threads\n",
                a->preset.empty() ? a->dir.c_str() : a->preset.c_str(), double(m.n_params()) / 1e6,
                m.device_description().c_str(), cpu_name().c_str(), std::thread::hardware_concurrency(),
                omp_get_max_threads());
    std::printf("batch %lld: prompts of %lld tokens prefilled in one forward call (passes of at most %lld tokens), "
                "then %lld decode steps, each one step call for the whole batch\n",
                (long long)B, (long long)n, (long long)m.max_tokens_per_pass(), (long long)a->decode);
    std::printf("state per sequence: %.2f MB (at %lld tokens); weights %.1f MB\n", state_seq / 1e6, (long long)n,
                weight_bytes / 1e6);
    std::printf("fastest of %d rounds, each against the ceilings measured around it (%s): matmul %.1f GFLOP/s; "
                "memory %.1f GB/s\n",
                a->reps, probe->describe().c_str(), gemm, bw);
    std::printf("prefill %lld x %lld tokens: %.3f s, %.1f tok/s, %.1f GFLOP/s = %.0f%% of matmul\n", (long long)B,
                (long long)n, t_pre, prefill_tok_s, pre_gflops, 100 * pre_gflops / gemm);
    std::printf("  counted: projection matrices and lm_head for each last token, %.2f GFLOP; not counted: "
                "SSM scans %.2f GFLOP, attention %.2f GFLOP (with them: %.1f GFLOP/s = %.0f%% of matmul)\n",
                matrix_flops / 1e9, double(B) * pw.scan_flops / 1e9, double(B) * pw.attention_flops / 1e9,
                all_flops / t_pre / 1e9, 100 * all_flops / t_pre / 1e9 / gemm);
    std::printf("decode %lld steps of batch %lld (after %lld untimed): %.3f ms per step, %.1f tok/s, %.1f GB/s = "
                "%.0f%% of memory bandwidth\n",
                (long long)a->decode, (long long)B, (long long)kWarmSteps, ms_per_step, decode_tok_s, dec_gbps,
                100 * dec_gbps / bw);
    std::printf("  bytes per step (first timed step): weights %.1f MB once, state read %.1f MB and written %.1f MB "
                "per sequence; the step's logits (%.1f MB) come back to the host every step\n",
                weights / 1e6, first.state_read / 1e6, first.state_written / 1e6, 4.0 * double(B * V) / 1e6);
    if (!a->json.empty()) {
      const nlohmann::json j = {{"model", a->preset.empty() ? a->dir : a->preset},
                                {"preset", a->preset},
                                {"device", m.device_description()},
                                {"batch", B},
                                {"prompt_len", n},
                                {"decode_tokens", a->decode},
                                {"max_tokens_per_pass", m.max_tokens_per_pass()},
                                {"reps", a->reps},
                                {"prefill_s", t_pre},
                                {"prefill_tok_s", prefill_tok_s},
                                {"decode_ms_per_step", ms_per_step},
                                {"decode_tok_s", decode_tok_s},
                                {"state_bytes_per_sequence", state_seq},
                                {"weight_bytes", weight_bytes},
                                {"host_peak_rss_bytes", host_peak_rss_bytes()}};
      write_file_atomic(a->json, j.dump(2) + "\n");
    }
  });
}

}  // namespace m3::cli
