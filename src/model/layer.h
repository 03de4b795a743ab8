// The layer interface every mixer and MLP implements on every backend (spec/model.md §2):
// a parallel form over a packed batch (prefill, training forward) and a recurrent form that
// advances each sequence by one token (decode). Per-sequence state is plain float buffers
// owned by the caller, so states can be copied (prefix sharing), saved and restored.
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
struct Packing {
  std::vector<int64_t> cu_seqlens;
  int64_t n_seqs() const { return int64_t(cu_seqlens.size()) - 1; }
  int64_t n_tokens() const { return cu_seqlens.back(); }
  int64_t start(int64_t i) const { return cu_seqlens[size_t(i)]; }
  int64_t len(int64_t i) const { return cu_seqlens[size_t(i) + 1] - cu_seqlens[size_t(i)]; }
};

// How a parameter is drawn for a model trained from scratch (spec/model.md §6 and the mixer specs).
using InitFn = std::function<void(float* data, int64_t n, std::mt19937_64& rng)>;

struct ParamSpec {
  std::string name;  // relative to the layer prefix, e.g. "in_proj.weight"
  Shape shape;
  InitFn init;
};

// float32 parameters of one layer by relative name, validated against its ParamSpecs.
using ParamMap = std::map<std::string, Tensor>;

class Layer {
 public:
  virtual ~Layer() = default;
  // One line: kind and options, for `m3 info`.
  virtual std::string describe() const = 0;
  // A fresh (zero) state for one sequence; empty for stateless layers.
  virtual LayerState new_state() const { return {}; }
  // Parallel form: x, y [n_tokens, d_model] (y may not alias x). states[i] is sequence i's state,
  // read as its initial state and left as its state after its last token.
  virtual void forward(const float* x, float* y, const Packing& pk, LayerState* const* states) = 0;
  // Recurrent form: one token for each of n sequences; x, y [n, d_model].
  virtual void step(const float* x, float* y, int64_t n, LayerState* const* states) = 0;
};

}  // namespace m3
