// The input file of `m3 logits`: a safetensors file with input_ids, int64 or int32 [batch, len].
#pragma once
#include <cstdint>
#include <vector>

#include "m3/safetensors.h"

namespace m3 {

struct InputIds {
  int64_t batch = 0, len = 0;
  std::vector<int32_t> tokens;  // [batch · len], row-major
};

// input_ids of `f`, every id in [0, vocab) and batch · len at most limits::kPromptTokens (checked
// before allocating); errors name the file.
InputIds read_input_ids(const SafetensorsFile& f, int64_t vocab);

}  // namespace m3
