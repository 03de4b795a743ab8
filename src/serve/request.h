// Parsing of OpenAI request bodies (POST /v1/completions, /v1/chat/completions) into what the
// server runs, with every type and range checked: a pure function of the body text, so that it
// can be fuzzed on its own. Errors are 400s naming the field.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "serve/api_error.h"
#include "serve/generation.h"

namespace m3::serve {

struct RequestLimits {
  int64_t max_tokens = 4096;  // largest max_tokens a request may ask for
  int64_t max_n = 16;
  size_t max_stop = 4;           // stop strings, as OpenAI allows
  size_t max_stop_bytes = 256;   // each
  size_t max_prompt_ids = 1 << 20;
};

struct ChatMessage {
  std::string role, content;
};

struct CompletionRequest {
  std::string model;  // empty: the served model
  // The prompt as text, or as token ids when prompt_is_ids (completions only).
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;  // chat only
  GenerationParams gen;
  bool seed_given = false;  // else the server draws one
  bool max_tokens_given = false;  // max_tokens or max_completion_tokens was set
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
};

using ParsedRequest = std::variant<CompletionRequest, ApiError>;

ParsedRequest parse_completion_request(std::string_view body, const RequestLimits& limits = {});
ParsedRequest parse_chat_request(std::string_view body, const RequestLimits& limits = {});

}  // namespace m3::serve
