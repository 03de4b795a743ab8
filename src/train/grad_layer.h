// Trainable layers on the CPU, templated on the scalar type: a forward over a packed batch that
// keeps what its backward needs, and a backward that returns the input gradient and adds the
// parameter gradients. Same split as model/layer.h (one file per layer kind), llm.c's shape:
// parameters and their gradients are arrays owned by the caller, looked up by relative name.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "m3/config.h"
#include "m3/error.h"

namespace m3::train {

// A layer's parameters and gradients (same shapes) by name relative to its key prefix.
template <class T>
struct ParamRefs {
  std::map<std::string, std::pair<T*, T*>> by_name;
  T* value(const std::string& n) const { return find(n).first; }
  T* grad(const std::string& n) const { return find(n).second; }
  bool has(const std::string& n) const { return by_name.count(n) != 0; }
  const std::pair<T*, T*>& find(const std::string& n) const {
    auto it = by_name.find(n);
    check(it != by_name.end(), "training: missing parameter " + n);
    return it->second;
  }
};

template <class T>
class GradLayer {
 public:
  virtual ~GradLayer() = default;
  // x, y [n_tokens, d_model]; sequence i is rows [cu[i], cu[i+1]) and starts from a zero state,
  // or from the layer's carried-in state when one was set.
  virtual void forward(const T* x, T* y, const std::vector<int64_t>& cu) = 0;
  // dy [n_tokens, d_model] of the last forward → dx (written); parameter gradients added.
  virtual void backward(const T* dy, T* dx) = 0;
};

// Each layer kind (one file each): mamba3_grad.cpp (mamba3_grad.h), mamba2_grad.cpp,
// mamba1_grad.cpp, attention_grad.cpp, mlp_grad.cpp. Mamba-2/Mamba-1 sequences start from zero states.
template <class T>
std::unique_ptr<GradLayer<T>> make_gated_mlp_grad(int64_t d_model, int64_t hidden, ParamRefs<T> p);
template <class T>
std::unique_ptr<GradLayer<T>> make_mamba2_grad(const Mamba2Config& c, int64_t d_model, ParamRefs<T> p);
template <class T>
std::unique_ptr<GradLayer<T>> make_mamba1_grad(const Mamba1Config& c, int64_t d_model, ParamRefs<T> p);
template <class T>
std::unique_ptr<GradLayer<T>> make_attention_grad(const AttnConfig& c, int64_t d_model, ParamRefs<T> p);

}  // namespace m3::train
