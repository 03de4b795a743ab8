// `m3 serve`: an OpenAI-compatible HTTP server (cpp-httplib) in front of the Scheduler.
// POST /v1/completions, POST /v1/chat/completions (stream: true as server-sent events ending with
// `data: [DONE]`), GET /v1/models, GET /health, GET /metrics (Prometheus text). Every failure is
// an OpenAI-style JSON error with its status; with an API key, /v1/* and /metrics need
// `Authorization: Bearer KEY`.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "m3/model.h"
#include "m3/tokenizer.h"
#include "serve/request.h"
#include "serve/scheduler.h"

namespace httplib {
class Server;
}

namespace m3::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (bind() tells which)
  std::string api_key;  // empty: no authentication
  std::string model_name;
  size_t max_body_bytes = size_t(1) << 20;
  int64_t max_context = 4096;  // prompt + max_tokens; also each slot's KV capacity
  RequestLimits limits;
};

// Slots a state-memory budget holds at max_context tokens per sequence; an error when not one.
int64_t slots_for_memory(const Model& model, size_t bytes, int64_t max_context);

class Server {
 public:
  // Fixes the model's state pool to sched.slots slots of max_context tokens.
  Server(Model model, std::optional<Tokenizer> tokenizer, std::vector<int32_t> eos_ids, ServerOptions opt,
         SchedulerOptions sched);
  ~Server();
  // Binds the listening socket; returns the port. An m3::Error when it cannot.
  int bind();
  // Serves until shutdown(); blocks.
  void run();
  // Refuses new requests (503), lets the running ones finish for up to `drain`, then stops run().
  void shutdown(std::chrono::milliseconds drain);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m3::serve
