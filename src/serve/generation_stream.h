// What the scheduler hands back to one request's HTTP handler: text pieces of each choice as they
// are generated, each choice's finish reason, the usage counts, or an error. The handler may
// cancel (its client went away); the scheduler then drops the request between steps.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "serve/api_error.h"

namespace m3::serve {

// A generated token's log-probability under the model (after the presence/frequency penalties,
// before temperature and top_p) and its most likely alternatives.
struct TokenLogprob {
  std::string token;  // the token's own text
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

struct StreamEvent {
  int64_t index = 0;          // the choice
  std::string text;           // new text (may be empty on the finishing event)
  std::string finish_reason;  // "stop" or "length" on a choice's last event, else empty
  std::vector<TokenLogprob> logprobs;  // tokens generated since the choice's last event, when asked
};

class GenerationStream {
 public:
  explicit GenerationStream(int64_t n_choices) : open_(n_choices) {}

  // Scheduler side. A finishing event closes its choice; the stream ends when all are closed.
  void emit(StreamEvent e);
  void fail(ApiError e);
  void set_usage(int64_t prompt_tokens, int64_t completion_tokens);

  // Handler side: waits until events are pending or the stream has ended, and moves the pending
  // ones into `out`. False once it has ended and nothing is left.
  bool wait(std::vector<StreamEvent>& out);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  std::optional<ApiError> error() const;
  int64_t prompt_tokens() const;
  int64_t completion_tokens() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> pending_;
  int64_t open_;
  std::optional<ApiError> error_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::atomic<bool> cancelled_{false};
};

}  // namespace m3::serve
