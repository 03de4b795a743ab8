#include "model/state_pool.h"

#include <algorithm>
#include <cstring>

#include "m3/error.h"

namespace m3 {

StatePool::StatePool(std::shared_ptr<Backend> backend, std::vector<LayerStateSpec> layers, int64_t n_slots,
                     int64_t kv_capacity, bool growable)
    : backend_(std::move(backend)), growable_(growable) {
  check(n_slots >= 1, "a state pool needs at least one slot (asked for " + std::to_string(n_slots) + ")");
  check(kv_capacity >= 0, "negative KV capacity");
  for (auto& spec : layers) layers_.push_back({std::move(spec), {}});
  reallocate(n_slots, kv_capacity);
}

int64_t StatePool::stride_of(const StateBufferSpec& b, int64_t kv_capacity) const {
  return b.kv ? kv_capacity * b.row_numel() : b.row_numel();
}

// New allocations of every buffer at the new sizes; slots' contents (and the KV rows they hold)
// are copied over, so SequenceStates stay valid. Base pointers change: layers read them from the
// StateBatch of each call.
void StatePool::reallocate(int64_t n_slots, int64_t kv_capacity) {
  for (auto& l : layers_) {
    std::vector<Buffer> fresh;
    for (size_t b = 0; b < l.spec.size(); ++b) {
      Buffer nb;
      nb.stride = stride_of(l.spec[b], kv_capacity);
      const size_t bytes = size_t(n_slots) * size_t(nb.stride) * sizeof(float);
      nb.mem = backend_->alloc(std::max<size_t>(bytes, sizeof(float)));
      if (b < l.bufs.size() && l.bufs[b].mem) {
        const Buffer& old = l.bufs[b];
        const size_t keep = size_t(std::min(old.stride, nb.stride)) * sizeof(float);
        auto* dst = static_cast<char*>(nb.mem.get());
        auto* src = static_cast<const char*>(old.mem.get());
        for (int64_t s = 0; s < n_slots_; ++s)
          if (used_[size_t(s)] && keep > 0)
            backend_->copy(dst + size_t(s) * size_t(nb.stride) * sizeof(float),
                           src + size_t(s) * size_t(old.stride) * sizeof(float), keep);
      }
      fresh.push_back(std::move(nb));
    }
    l.bufs = std::move(fresh);
  }
  used_.resize(size_t(n_slots), false);
  n_slots_ = n_slots;
  kv_capacity_ = kv_capacity;
}

int32_t StatePool::acquire() {
  auto it = std::find(used_.begin(), used_.end(), false);
  if (it == used_.end()) {
    check(growable_, "the state pool's " + std::to_string(n_slots_) + " slots are all in use");
    check(n_slots_ < (int64_t(1) << 30), "the state pool cannot grow past 2^30 slots");
    reallocate(2 * n_slots_, kv_capacity_);
    it = std::find(used_.begin(), used_.end(), false);
  }
  const int32_t slot = int32_t(it - used_.begin());
  used_[size_t(slot)] = true;
  for (auto& l : layers_)
    for (auto& b : l.bufs)
      backend_->zero(static_cast<float*>(b.mem.get()) + int64_t(slot) * b.stride, size_t(b.stride) * sizeof(float));
  return slot;
}

void StatePool::release(int32_t slot) {
  if (slot >= 0 && slot < n_slots_) used_[size_t(slot)] = false;
}

void StatePool::copy_slot(int32_t dst, int32_t src) {
  check(dst >= 0 && dst < n_slots_ && src >= 0 && src < n_slots_, "state pool slot out of range");
  if (dst == src) return;
  for (auto& l : layers_)
    for (auto& b : l.bufs) {
      float* base = static_cast<float*>(b.mem.get());
      backend_->copy(base + int64_t(dst) * b.stride, base + int64_t(src) * b.stride, size_t(b.stride) * sizeof(float));
    }
}

void StatePool::reserve_kv(int64_t positions) {
  if (positions <= kv_capacity_) return;
  bool any_kv = false;
  for (const auto& l : layers_)
    for (const auto& b : l.spec) any_kv = any_kv || b.kv;
  if (!any_kv) {
    kv_capacity_ = positions;  // nothing to hold: pure SSM states are the same size at any length
    return;
  }
  check(growable_, "a sequence needs " + std::to_string(positions) + " KV positions; the state pool holds " +
                       std::to_string(kv_capacity_) + " per sequence");
  reallocate(n_slots_, std::max(positions, 2 * kv_capacity_));
}

StateBatch StatePool::batch(size_t l, int64_t n, const int32_t* slot, const int32_t* slot_dev, const int64_t* pos,
                            const int64_t* pos_dev) const {
  StateBatch s;
  s.n = n;
  s.slot = slot;
  s.slot_dev = slot_dev;
  s.pos = pos;
  s.pos_dev = pos_dev;
  s.kv_capacity = kv_capacity_;
  for (const auto& b : layers_[l].bufs) {
    s.buf.push_back(static_cast<float*>(b.mem.get()));
    s.stride.push_back(b.stride);
  }
  return s;
}

LayerState StatePool::read(int32_t slot, size_t l, int64_t n_tokens) const {
  check(slot >= 0 && slot < n_slots_ && used_[size_t(slot)], "state pool slot " + std::to_string(slot) + " is not in use");
  const LayerBuffers& lb = layers_[l];
  LayerState s;
  for (size_t b = 0; b < lb.spec.size(); ++b) {
    const StateBufferSpec& spec = lb.spec[b];
    Shape shape = spec.shape;
    if (spec.kv) shape[0] = std::min(n_tokens, kv_capacity_);
    StateBuffer buf{spec.name, shape, std::vector<float>(size_t(shape_numel(shape)))};
    if (!buf.data.empty())
      backend_->download(buf.data.data(), static_cast<const float*>(lb.bufs[b].mem.get()) + int64_t(slot) * lb.bufs[b].stride,
                         buf.data.size() * sizeof(float));
    s.buffers.push_back(std::move(buf));
  }
  return s;
}

void StatePool::write(int32_t slot, size_t l, const LayerState& s) {
  check(slot >= 0 && slot < n_slots_ && used_[size_t(slot)], "state pool slot " + std::to_string(slot) + " is not in use");
  const LayerBuffers& lb = layers_[l];
  check(s.buffers.size() == lb.spec.size(), "layer " + std::to_string(l) + " state has " +
                                                std::to_string(s.buffers.size()) + " buffers, expected " +
                                                std::to_string(lb.spec.size()));
  // Every buffer is checked before the first is copied: a refused state leaves the slot as it was.
  std::vector<int64_t> numel(lb.spec.size());
  for (size_t b = 0; b < lb.spec.size(); ++b) {
    const StateBufferSpec& spec = lb.spec[b];
    const StateBuffer& src = s.buffers[b];
    check(src.name == spec.name, "layer " + std::to_string(l) + " state buffer '" + src.name + "', expected '" +
                                     spec.name + "'");
    const int64_t rows = spec.kv ? (src.shape.empty() ? 0 : src.shape[0]) : 1;
    check(!spec.kv || rows <= kv_capacity_, "state buffer '" + spec.name + "' holds " + std::to_string(rows) +
                                                " positions, past the pool's capacity " + std::to_string(kv_capacity_));
    numel[b] = spec.kv ? rows * spec.row_numel() : spec.row_numel();
    check(int64_t(src.data.size()) == numel[b], "state buffer '" + spec.name + "' has " +
                                                    std::to_string(src.data.size()) + " values, expected " +
                                                    std::to_string(numel[b]));
  }
  for (size_t b = 0; b < lb.spec.size(); ++b)
    if (numel[b] > 0)
      backend_->upload(static_cast<float*>(lb.bufs[b].mem.get()) + int64_t(slot) * lb.bufs[b].stride,
                       s.buffers[b].data.data(), size_t(numel[b]) * sizeof(float));
}

int64_t StatePool::slots_in_use() const { return int64_t(std::count(used_.begin(), used_.end(), true)); }

size_t StatePool::bytes_per_sequence(int64_t n_tokens) const {
  size_t n = 0;
  for (const auto& l : layers_)
    for (const auto& b : l.spec) n += size_t(b.kv ? n_tokens * b.row_numel() : b.row_numel()) * sizeof(float);
  return n;
}

size_t StatePool::bytes_allocated() const {
  size_t n = 0;
  for (const auto& l : layers_)
    for (const auto& b : l.bufs) n += size_t(n_slots_) * size_t(b.stride) * sizeof(float);
  return n;
}

}  // namespace m3
