// libFuzzer harness: OpenAI request bodies as `m3 serve` receives them, through both parsers
// (POST /v1/completions and /v1/chat/completions). They must answer every body with a request or
// a 400-class ApiError; anything thrown is a finding.
#include <cstdint>
#include <string_view>

#include "serve/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)m3::serve::parse_completion_request(body);
  (void)m3::serve::parse_chat_request(body);
  return 0;
}
