// Decode state. Each layer declares the float32 buffers one sequence needs (SSM state, rotary
// angle, previous key/value, conv window, KV cache); a StatePool on the backend's device holds them
// for many sequences, one allocation per layer and buffer, [n_slots, ...]. A SequenceState holds a
// slot of its model's pool: copying it forks the sequence (a device copy into a new slot),
// destroying it frees the slot. Saved and restored through the host in one safetensors format, so
// a state saved on one backend continues on another.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "m3/tensor.h"

namespace m3 {

// One buffer of one sequence's layer state. A KV buffer's first axis counts positions: its shape
// gives 0 there, the pool reserves its capacity per slot, and it is saved with as many rows as the
// sequence has consumed tokens.
struct StateBufferSpec {
  std::string name;
  Shape shape;
  bool kv = false;
  int64_t row_numel() const;  // elements per position (kv) or in all (not kv)
};
using LayerStateSpec = std::vector<StateBufferSpec>;

// A layer's state of one sequence in host memory: the exchange format (save/restore, tests).
struct StateBuffer {
  std::string name;
  Shape shape;  // the KV cache's first axis is the positions it holds
  std::vector<float> data;
};
struct LayerState {
  std::vector<StateBuffer> buffers;
  StateBuffer& operator[](const std::string& name);
  const StateBuffer& operator[](const std::string& name) const;
  size_t bytes() const;
};
// Zeros; KV buffers empty.
LayerState zero_layer_state(const LayerStateSpec& spec);

class StatePool;  // src/model/state_pool.h

class SequenceState {
 public:
  SequenceState() = default;  // holds no slot; Model::new_state() gives a usable one
  SequenceState(std::shared_ptr<StatePool> pool, int32_t slot);
  SequenceState(const SequenceState& o);  // fork: a new slot with a copy of o's buffers
  SequenceState& operator=(const SequenceState& o);
  SequenceState(SequenceState&& o) noexcept;
  SequenceState& operator=(SequenceState&& o) noexcept;
  ~SequenceState();

  int64_t n_tokens = 0;  // tokens consumed so far (also the length of its KV caches)

  bool valid() const { return pool_ != nullptr; }
  int32_t slot() const { return slot_; }
  StatePool* pool() const { return pool_.get(); }
  // Bytes this sequence occupies in the pool now (KV caches counted at n_tokens positions).
  size_t bytes() const;
  // Layer i's buffers copied to the host (KV caches with n_tokens rows).
  LayerState layer(size_t i) const;
  size_t n_layers() const;

 private:
  std::shared_ptr<StatePool> pool_;
  int32_t slot_ = -1;
};

// Buffers as tensors named "layers.{i}.{buffer}" (+ "n_tokens"), for safetensors.
std::vector<std::pair<std::string, Tensor>> state_to_tensors(const SequenceState& s);
// Fills `s` (which must come from the same model's new_state()) from such tensors; checks names,
// dtypes and shapes (the KV cache must hold n_tokens positions, the same for a layer's k and v)
// before changing anything, so an m3::Error leaves `s` as it was.
void state_from_tensors(SequenceState& s, const std::vector<std::pair<std::string, Tensor>>& t, const std::string& source);

}  // namespace m3
