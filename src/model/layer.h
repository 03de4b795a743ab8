// The layer interface every mixer and MLP implements on every backend (spec/model.md §2):
// a parallel form over a packed batch (prefill, training forward) and a recurrent form that
// advances each sequence by one token (decode). Activations are float32 arrays in the backend's
// memory; per-sequence state lives in a StatePool (model/state_pool.h) and reaches a layer as a
// StateBatch: which slot each sequence holds, and the pool's buffers for this layer.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "m3/state.h"
#include "m3/tensor.h"

namespace m3 {

// Several sequences packed end to end: sequence i holds rows [cu_seqlens[i], cu_seqlens[i+1]).
// cu_dev: the same offsets in the backend's memory (on the CPU, cu_seqlens.data()).
struct Packing {
  std::vector<int64_t> cu_seqlens;
  const int64_t* cu_dev = nullptr;
  int64_t n_seqs() const { return int64_t(cu_seqlens.size()) - 1; }
  int64_t n_tokens() const { return cu_seqlens.back(); }
  int64_t start(int64_t i) const { return cu_seqlens[size_t(i)]; }
  int64_t len(int64_t i) const { return cu_seqlens[size_t(i) + 1] - cu_seqlens[size_t(i)]; }
};

// The states of the n sequences a call runs, for one layer. Buffer b (in the order of the layer's
// state_spec()) of every slot is one array buf[b] of n_slots · stride[b] floats in the backend's
// memory; sequence i's is at buf[b] + slot[i] · stride[b]. A KV buffer holds kv_capacity rows per
// slot. pos[i]: tokens sequence i consumed before this call (its KV length). *_dev: the same
// arrays in the backend's memory (on the CPU, the host arrays).
struct StateBatch {
  int64_t n = 0;
  const int32_t* slot = nullptr;
  const int32_t* slot_dev = nullptr;
  const int64_t* pos = nullptr;
  const int64_t* pos_dev = nullptr;
  std::vector<float*> buf;
  std::vector<int64_t> stride;
  int64_t kv_capacity = 0;
  float* at(size_t b, int64_t i) const { return buf[b] + int64_t(slot[i]) * stride[b]; }
};

// How a parameter is drawn for a model trained from scratch (spec/model.md §6 and the mixer specs).
using InitFn = std::function<void(float* data, int64_t n, std::mt19937_64& rng)>;

struct ParamSpec {
  std::string name;  // relative to the layer prefix, e.g. "in_proj.weight"
  Shape shape;
  InitFn init;
};

// float32 host parameters of one layer by relative name, validated against its ParamSpecs; a
// backend copies them to its device (and precision) when it builds the layer.
using ParamMap = std::map<std::string, Tensor>;

class Layer {
 public:
  virtual ~Layer() = default;
  // One line: kind and options, for `m3 info`.
  virtual std::string describe() const = 0;
  // The buffers of one sequence's state; empty for stateless layers.
  virtual LayerStateSpec state_spec() const { return {}; }
  // Parallel form: x, y [n_tokens, d_model] (y may not alias x). Sequence i starts from its state
  // in s and leaves its state after its last token there.
  virtual void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) = 0;
  // Recurrent form: one token for each of s.n sequences; x, y [n, d_model].
  virtual void step(const float* x, float* y, int64_t n, const StateBatch& s) = 0;
};

}  // namespace m3
