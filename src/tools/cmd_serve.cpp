// m3 serve DIR: the OpenAI-compatible HTTP server (src/serve/). Listens on localhost by default;
// SIGTERM or SIGINT stops taking requests, lets the running ones finish (--drain-timeout) and
// exits 0.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/limits.h"
#include "m3/model.h"
#include "model/model_text.h"
#include "serve/server.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"

namespace m3::cli {

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve DIR over HTTP with OpenAI's API: POST /v1/completions and /v1/chat/completions (stream: true for "
      "server-sent events), GET /v1/models, /health and /metrics (Prometheus). Requests are batched continuously "
      "over a fixed pool of state slots; prompt-prefix states are cached and reused");
  struct Args {
    std::string dir, tokenizer;
    serve::ServerOptions server;
    serve::SchedulerOptions sched;
    size_t state_memory = 0;
    double drain_timeout = 30;
    DeviceOptions dev;
  };
  auto a = std::make_shared<Args>();
  add_device_options(cmd, a->dev);
  cmd->add_option("DIR", a->dir, "checkpoint directory")->required();
  cmd->add_option("--host", a->server.host, "address to listen on")->default_val("127.0.0.1");
  cmd->add_option("--port", a->server.port, "port to listen on (0: any free port, printed at start)")
      ->default_val(8080)
      ->check(between(0, 65535));
  cmd->add_option("--api-key", a->server.api_key,
                  "require 'Authorization: Bearer KEY' on /v1/* and /metrics (401 otherwise)");
  cmd->add_option("--model-name", a->server.model_name, "the model's id in the API (default: DIR's name)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, or a directory holding one (default: DIR's)");
  auto* slots = cmd->add_option("--slots", a->sched.slots,
                                "state slots: sequences decoded at once plus cached prompt prefixes")
                    ->default_val(16)
                    ->check(between(1, 1 << 20));
  cmd->add_option("--state-memory", a->state_memory,
                  "size the state slots from a memory budget instead (bytes; K/M/G suffixes)")
      ->transform(CLI::AsSizeValue(false))
      ->excludes(slots);
  cmd->add_option("--max-context", a->server.max_context, "prompt + max_tokens limit per request (KV rows per slot)")
      ->default_val(4096)
      ->check(between(2, 1 << 24));
  cmd->add_option("--max-queue", a->sched.max_queue, "requests waiting for a slot before 429")
      ->default_val(64)
      ->check(between(0, 1 << 20));
  cmd->add_option("--prefill-chunk", a->sched.prefill_chunk,
                  "prompt tokens per prefill chunk and per scheduler step (decode steps run between; prefixes are cached at its multiples)")
      ->default_val(256)
      ->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--max-batch", a->sched.max_batch, "sequences per decode step call")
      ->default_val(64)
      ->check(between(1, 65536));
  cmd->add_option("--prefix-cache-memory", a->sched.prefix_cache_bytes,
                  "bytes of prefix states to keep (0: no prefix cache; K/M/G suffixes)")
      ->transform(CLI::AsSizeValue(false))
      ->default_val("64M");
  cmd->add_option("--max-body", a->server.max_body_bytes, "largest request body (bytes; 413 above)")
      ->transform(CLI::AsSizeValue(false))
      ->default_val("1M");
  cmd->add_option("--drain-timeout", a->drain_timeout, "seconds SIGTERM waits for running requests")
      ->default_val(30)
      ->check(between(0, 86400));
  cmd->callback([a] {
    // Signals go to one thread that waits for them: blocked here, before any thread starts.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);  // run() returned on its own: the waiter's cue to leave
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    Model model = Model::load(a->dir, a->dev.spec());
    auto tok = load_model_tokenizer(a->dir, a->tokenizer, model.config().vocab_size);
    auto eos = model_eos_ids(a->dir, tok);
    if (a->server.model_name.empty())
      a->server.model_name = std::filesystem::path(a->dir).lexically_normal().filename().string();
    if (a->server.model_name.empty()) a->server.model_name = std::filesystem::path(a->dir).parent_path().filename().string();
    if (a->state_memory > 0) a->sched.slots = serve::slots_for_memory(model, a->state_memory, a->server.max_context);
    const std::string device = model.device_description();
    serve::Server server(std::move(model), std::move(tok), std::move(eos), a->server, a->sched);
    const int port = server.bind();
    std::printf("m3 serve: listening on http://%s:%d (model %s, %lld state slots, %s)\n", a->server.host.c_str(), port,
                a->server.model_name.c_str(), (long long)a->sched.slots, device.c_str());
    std::fflush(stdout);
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig == SIGUSR2) return;
      std::fprintf(stderr, "m3 serve: %s, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server.shutdown(std::chrono::milliseconds(int64_t(a->drain_timeout * 1000)));
    });
    server.run();
    pthread_kill(waiter.native_handle(), SIGUSR2);
    waiter.join();
    std::fprintf(stderr, "m3 serve: stopped\n");
  });
}

}  // namespace m3::cli
