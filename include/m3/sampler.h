// Next-token sampling as the reference does it (spec/model.md §7): repetition penalty, then
// greedy (top_k = 1) or top-k → temperature → top-p → min-p → softmax → draw.
#pragma once
#include <cstdint>
#include <random>
#include <span>

namespace m3 {

struct SamplerOptions {
  int64_t top_k = 1;  // 1: greedy; 0: all tokens
  float temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  // logits: the first vocab_size entries are candidates (padding columns excluded); history: the
  // tokens so far (for the repetition penalty). Modifies logits in place.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace m3
