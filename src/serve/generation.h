// What one request asks the scheduler to generate: OpenAI's sampling and stopping parameters.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace m3::serve {

struct GenerationParams {
  int64_t max_tokens = 16;  // per choice
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  uint64_t seed = 0;  // choice i samples with seed + i
  int64_t n = 1;      // choices, each its own sequence forked from the prompt's state
  std::vector<std::string> stop;  // matched in the text, across token boundaries
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;  // over each choice's generated tokens
  int64_t logprobs = -1;  // report each token's log-probability and this many alternatives; -1: none
};

}  // namespace m3::serve
