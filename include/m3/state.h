// Decode state of one sequence: for every layer, named float32 buffers (SSM state, rotary angle,
// previous key/value, conv window, KV cache). Plain data: copying a SequenceState forks the
// sequence, and the buffers can be saved to and restored from safetensors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "m3/tensor.h"

namespace m3 {

struct StateBuffer {
  std::string name;
  Shape shape;  // the KV cache grows along its first axis
  std::vector<float> data;
};

struct LayerState {
  std::vector<StateBuffer> buffers;
  StateBuffer& operator[](const std::string& name);
  size_t bytes() const;
};

struct SequenceState {
  int64_t n_tokens = 0;  // tokens consumed so far
  std::vector<LayerState> layers;
  size_t bytes() const;
};

// Buffers as tensors named "layers.{i}.{buffer}" (+ "n_tokens"), for safetensors.
std::vector<std::pair<std::string, Tensor>> state_to_tensors(const SequenceState& s);
// Fills `s` (which must come from the same model's new_state()) from such tensors; checks names,
// dtypes and shapes (the KV cache may have any length, the same for a layer's k and v) before
// changing anything, so an m3::Error leaves `s` as it was.
void state_from_tensors(SequenceState& s, const std::vector<std::pair<std::string, Tensor>>& t, const std::string& source);

}  // namespace m3
