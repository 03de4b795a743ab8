// Runs a layer with host LayerStates (the exchange format of include/m3/state.h) through a
// StatePool on a backend, for the layer tests: a test keeps each sequence's state on the host,
// where the float64 references read and write it, and the layer sees it the way the model hands it
// over (a slot of a pool's buffers, a StateBatch). For each call the states go into the slots of a
// fresh pool (a KV buffer with the rows it holds: that count is the sequence's pos), the layer
// runs, and the slots come back into the host states (KV buffers with pos + length rows).
// Backend-generic: the CPU backend by default, the CUDA tests pass theirs.
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "m3/error.h"
#include "model/backend.h"
#include "model/layer.h"
#include "model/state_pool.h"

namespace m3::test {

inline std::shared_ptr<Backend> cpu_backend() {
  static const std::shared_ptr<Backend> backend = open_backend(DeviceSpec{});
  return backend;
}

// A fresh state of one sequence on the host: zeros, KV buffers empty.
inline LayerState new_host_state(const Layer& layer) { return zero_layer_state(layer.state_spec()); }

inline std::vector<LayerState*> pointers_to(std::vector<LayerState>& states) {
  std::vector<LayerState*> p;
  for (LayerState& s : states) p.push_back(&s);
  return p;
}

// The positions a host state's KV buffers hold (0 for a layer without any).
inline int64_t kv_rows(const LayerState& s, const LayerStateSpec& spec) {
  for (const StateBufferSpec& b : spec)
    if (b.kv) return s[b.name].shape.at(0);
  return 0;
}

// A copy of `v` in the backend's memory.
template <class T>
std::shared_ptr<void> to_backend(Backend& backend, const std::vector<T>& v) {
  std::shared_ptr<void> mem = backend.alloc(std::max<size_t>(1, v.size() * sizeof(T)));
  if (!v.empty()) backend.upload(mem.get(), v.data(), v.size() * sizeof(T));
  return mem;
}

// A state of `spec` with every value v, its KV buffers holding `rows` positions.
inline LayerState filled_state(const LayerStateSpec& spec, int64_t rows, float v) {
  LayerState s = zero_layer_state(spec);
  for (size_t b = 0; b < spec.size(); ++b) {
    if (spec[b].kv) s.buffers[b].shape[0] = rows;
    s.buffers[b].data.assign(size_t(shape_numel(s.buffers[b].shape)), v);
  }
  return s;
}

// Sequence i consumes lens[i] tokens starting from *states[i]: `run` gets the StateBatch over the
// pool's slots holding the states, which afterwards are copied back into *states[i]. Sequence i
// holds slot 2(n−1−i)+1 of 2n+1: slots out of order and apart. The other slots hold NaN, so that
// a layer touching a slot not its own shows; a sequence's KV rows past its own hold 1e30, which
// shows when a layer uses them and not when it reads them under a zero weight.
template <class Run>
void with_pool_states(const std::shared_ptr<Backend>& backend, const Layer& layer, const std::vector<int64_t>& lens,
                      const std::vector<LayerState*>& states, Run&& run) {
  check(lens.size() == states.size(), "with_pool_states: one state per sequence");
  const LayerStateSpec spec = layer.state_spec();
  const size_t n = states.size();
  std::vector<int64_t> pos(n);
  int64_t capacity = 1;
  for (size_t i = 0; i < n; ++i) {
    pos[i] = kv_rows(*states[i], spec);
    capacity = std::max(capacity, pos[i] + lens[i]);
  }
  StatePool pool(backend, std::vector<LayerStateSpec>(1, spec), int64_t(2 * n + 1), capacity, false);
  const LayerState other = filled_state(spec, capacity, NAN), unused_rows = filled_state(spec, capacity, 1e30f);
  std::vector<int32_t> all;
  for (size_t k = 0; k < 2 * n + 1; ++k) {
    all.push_back(pool.acquire());
    pool.write(all.back(), 0, other);
  }
  std::vector<int32_t> slots;
  for (size_t i = 0; i < n; ++i) {
    slots.push_back(all[2 * (n - 1 - i) + 1]);
    pool.write(slots.back(), 0, unused_rows);
    pool.write(slots.back(), 0, *states[i]);
  }
  const std::shared_ptr<void> slot_dev = to_backend(*backend, slots), pos_dev = to_backend(*backend, pos);
  run(pool.batch(0, int64_t(n), slots.data(), static_cast<const int32_t*>(slot_dev.get()), pos.data(),
                 static_cast<const int64_t*>(pos_dev.get())));
  backend->synchronize();
  for (size_t i = 0; i < n; ++i) *states[i] = pool.read(slots[i], 0, pos[i] + lens[i]);
}

// layer.forward over the packed batch pk with x, y [pk.n_tokens(), d_model] in the backend's
// memory; pk.cu_dev is filled in here when the caller left it null. states[i]: sequence i's.
inline void forward_with_states(Layer& layer, const float* x, float* y, Packing pk,
                                const std::vector<LayerState*>& states,
                                const std::shared_ptr<Backend>& backend = cpu_backend()) {
  check(int64_t(states.size()) == pk.n_seqs(), "forward_with_states: one state per sequence");
  std::shared_ptr<void> cu_dev;
  if (!pk.cu_dev) {
    cu_dev = to_backend(*backend, pk.cu_seqlens);
    pk.cu_dev = static_cast<const int64_t*>(cu_dev.get());
  }
  std::vector<int64_t> lens;
  for (int64_t i = 0; i < pk.n_seqs(); ++i) lens.push_back(pk.len(i));
  with_pool_states(backend, layer, lens, states, [&](const StateBatch& s) { layer.forward(x, y, pk, s); });
}

// layer.step: one token of each of the states.size() sequences; x, y [n, d_model] in the backend's memory.
inline void step_with_states(Layer& layer, const float* x, float* y, const std::vector<LayerState*>& states,
                             const std::shared_ptr<Backend>& backend = cpu_backend()) {
  const std::vector<int64_t> lens(states.size(), 1);
  with_pool_states(backend, layer, lens, states,
                   [&](const StateBatch& s) { layer.step(x, y, int64_t(states.size()), s); });
}

// The same two with x and the returned y on the host, copied to and from the backend's memory.
inline std::vector<float> forward_with_states(Layer& layer, const std::vector<float>& x, const Packing& pk,
                                              const std::vector<LayerState*>& states,
                                              const std::shared_ptr<Backend>& backend = cpu_backend()) {
  const std::shared_ptr<void> xd = to_backend(*backend, x), yd = backend->alloc(std::max<size_t>(1, x.size() * 4));
  forward_with_states(layer, static_cast<const float*>(xd.get()), static_cast<float*>(yd.get()), pk, states, backend);
  std::vector<float> y(x.size());
  backend->download(y.data(), yd.get(), y.size() * sizeof(float));
  return y;
}
inline std::vector<float> step_with_states(Layer& layer, const std::vector<float>& x,
                                           const std::vector<LayerState*>& states,
                                           const std::shared_ptr<Backend>& backend = cpu_backend()) {
  const std::shared_ptr<void> xd = to_backend(*backend, x), yd = backend->alloc(std::max<size_t>(1, x.size() * 4));
  step_with_states(layer, static_cast<const float*>(xd.get()), static_cast<float*>(yd.get()), states, backend);
  std::vector<float> y(x.size());
  backend->download(y.data(), yd.get(), y.size() * sizeof(float));
  return y;
}

}  // namespace m3::test
