#include "serve/generation_stream.h"

namespace m3::serve {

void GenerationStream::emit(StreamEvent e) {
  {
    std::lock_guard lock(mu_);
    if (!e.finish_reason.empty()) --open_;
    pending_.push_back(std::move(e));
  }
  cv_.notify_all();
}

void GenerationStream::fail(ApiError e) {
  {
    std::lock_guard lock(mu_);
    error_ = std::move(e);
    open_ = 0;
  }
  cv_.notify_all();
}

void GenerationStream::set_usage(int64_t prompt_tokens, int64_t completion_tokens) {
  std::lock_guard lock(mu_);
  prompt_tokens_ = prompt_tokens;
  completion_tokens_ = completion_tokens;
}

bool GenerationStream::wait(std::vector<StreamEvent>& out) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !pending_.empty() || open_ <= 0; });
  if (pending_.empty()) return false;
  for (auto& e : pending_) out.push_back(std::move(e));
  pending_.clear();
  return true;
}

std::optional<ApiError> GenerationStream::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

int64_t GenerationStream::prompt_tokens() const {
  std::lock_guard lock(mu_);
  return prompt_tokens_;
}

int64_t GenerationStream::completion_tokens() const {
  std::lock_guard lock(mu_);
  return completion_tokens_;
}

}  // namespace m3::serve
