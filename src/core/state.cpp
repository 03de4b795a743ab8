#include "m3/state.h"

#include <cstring>
#include <map>
#include <set>

#include "m3/error.h"

namespace m3 {

StateBuffer& LayerState::operator[](const std::string& name) {
  for (auto& b : buffers)
    if (b.name == name) return b;
  throw Error("layer state has no buffer '" + name + "'");
}

size_t LayerState::bytes() const {
  size_t n = 0;
  for (const auto& b : buffers) n += b.data.size() * sizeof(float);
  return n;
}

size_t SequenceState::bytes() const {
  size_t n = 0;
  for (const auto& l : layers) n += l.bytes();
  return n;
}

std::vector<std::pair<std::string, Tensor>> state_to_tensors(const SequenceState& s) {
  std::vector<std::pair<std::string, Tensor>> r;
  Tensor n = Tensor::zeros(DType::I64, {1});
  n.ptr<int64_t>()[0] = s.n_tokens;
  r.emplace_back("n_tokens", n);
  for (size_t i = 0; i < s.layers.size(); ++i)
    for (const auto& b : s.layers[i].buffers) {
      Tensor t = Tensor::zeros(DType::F32, b.shape);
      check(size_t(t.numel()) == b.data.size(), "state buffer '" + b.name + "' does not match its shape");
      std::memcpy(t.data, b.data.data(), b.data.size() * sizeof(float));
      r.emplace_back("layers." + std::to_string(i) + "." + b.name, t);
    }
  return r;
}

void state_from_tensors(SequenceState& s, const std::vector<std::pair<std::string, Tensor>>& t,
                        const std::string& source) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, x] : t)
    check(by_name.emplace(n, &x).second, source + ": state tensor '" + n + "' appears twice");
  std::set<std::string> used;
  auto find = [&](const std::string& n) -> const Tensor& {
    auto it = by_name.find(n);
    check(it != by_name.end(), source + ": missing state tensor '" + n + "'");
    used.insert(n);
    return *it->second;
  };
  const Tensor& n = find("n_tokens");
  check(n.dtype == DType::I64 && n.numel() == 1, source + ": 'n_tokens' must be one I64");
  int64_t n_tokens = 0;
  std::memcpy(&n_tokens, n.data, sizeof n_tokens);  // file data need not be aligned
  check(n_tokens >= 0, source + ": 'n_tokens' is negative (" + std::to_string(n_tokens) + ")");

  // Everything is checked before `s` changes, so a bad file leaves the state as it was.
  std::vector<std::pair<StateBuffer*, const Tensor*>> fills;
  for (size_t i = 0; i < s.layers.size(); ++i) {
    int64_t grown = -1;  // the length shared by this layer's growable buffers (the KV cache's k and v)
    for (auto& b : s.layers[i].buffers) {
      std::string name = "layers." + std::to_string(i) + "." + b.name;
      const Tensor& x = find(name);
      check(x.dtype == DType::F32, source + ": state tensor '" + name + "' must be F32");
      // Every axis but the first is fixed by the model; the first may grow (KV cache).
      bool ok = !b.shape.empty() && x.shape.size() == b.shape.size();
      const bool growable = ok && (b.shape[0] == 0 || b.name.rfind("kv_", 0) == 0);
      for (size_t d = 1; ok && d < b.shape.size(); ++d) ok = x.shape[d] == b.shape[d];
      if (ok && !growable) ok = x.shape[0] == b.shape[0];
      check(ok, source + ": state tensor '" + name + "' has shape " + shape_str(x.shape) + ", expected " +
                    shape_str(b.shape));
      if (growable) {
        check(grown < 0 || x.shape[0] == grown, source + ": state tensor '" + name + "' holds " +
                                                    std::to_string(x.shape[0]) + " positions, the layer's other " +
                                                    "cache " + std::to_string(grown));
        grown = x.shape[0];
      }
      fills.emplace_back(&b, &x);
    }
  }
  for (const auto& [name, x] : t)
    check(used.count(name) != 0, source + ": state tensor '" + name + "' is not used by this model");
  s.n_tokens = n_tokens;
  for (auto& [b, x] : fills) {
    b->shape = x->shape;
    b->data.resize(size_t(x->numel()));
    std::memcpy(b->data.data(), x->data, b->data.size() * sizeof(float));
  }
}

}  // namespace m3
