// The decode states of many sequences on a backend's device: for each layer and each of its state
// buffers one allocation [n_slots, slot size], KV buffers with kv_capacity rows per slot. A
// sequence holds a slot (SequenceState); a fork copies one slot into another on the device.
// A growable pool (the CLI's and tests') doubles its slots or KV capacity when asked for more; a
// fixed one (a server's, sized from a memory budget) refuses with an error instead.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/backend.h"

namespace m3 {

class StatePool {
 public:
  StatePool(std::shared_ptr<Backend> backend, std::vector<LayerStateSpec> layers, int64_t n_slots,
            int64_t kv_capacity, bool growable);

  // A zeroed slot.
  int32_t acquire();
  void release(int32_t slot);
  void copy_slot(int32_t dst, int32_t src);
  // Makes room for `positions` KV rows per slot (grows, or errors when fixed).
  void reserve_kv(int64_t positions);

  // Layer l's buffers for a call over sequences holding `slot` (n of them, host array) that
  // consumed `pos` tokens before it; slot_dev/pos_dev: the same arrays in device memory.
  StateBatch batch(size_t l, int64_t n, const int32_t* slot, const int32_t* slot_dev, const int64_t* pos,
                   const int64_t* pos_dev) const;

  // Host copies of one slot's layer state (KV with n_tokens rows) and the way back.
  LayerState read(int32_t slot, size_t l, int64_t n_tokens) const;
  // `s` must match the layer's spec (KV buffers with n_tokens rows ≤ capacity, reserved first).
  void write(int32_t slot, size_t l, const LayerState& s);

  size_t n_layers() const { return layers_.size(); }
  const LayerStateSpec& spec(size_t l) const { return layers_[l].spec; }
  int64_t n_slots() const { return n_slots_; }
  int64_t kv_capacity() const { return kv_capacity_; }
  int64_t slots_in_use() const;
  // Bytes one sequence occupies at n_tokens positions, and the pool's whole allocation.
  size_t bytes_per_sequence(int64_t n_tokens) const;
  size_t bytes_allocated() const;
  Backend& backend() const { return *backend_; }

 private:
  struct Buffer {
    std::shared_ptr<void> mem;
    int64_t stride = 0;  // floats per slot
  };
  struct LayerBuffers {
    LayerStateSpec spec;
    std::vector<Buffer> bufs;
  };
  int64_t stride_of(const StateBufferSpec& b, int64_t kv_capacity) const;
  void reallocate(int64_t n_slots, int64_t kv_capacity);

  std::shared_ptr<Backend> backend_;
  std::vector<LayerBuffers> layers_;
  int64_t n_slots_ = 0, kv_capacity_ = 0;
  bool growable_ = true;
  std::vector<bool> used_;
};

}  // namespace m3
