#include "m3/state.h"

#include <cstring>
#include <map>

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
  for (const auto& [n, x] : t) by_name[n] = &x;
  auto find = [&](const std::string& n) -> const Tensor& {
    auto it = by_name.find(n);
    check(it != by_name.end(), source + ": missing state tensor '" + n + "'");
    return *it->second;
  };
  const Tensor& n = find("n_tokens");
  check(n.dtype == DType::I64 && n.numel() == 1, source + ": 'n_tokens' must be one I64");
  s.n_tokens = n.ptr<int64_t>()[0];
  size_t expected = 1;
  for (size_t i = 0; i < s.layers.size(); ++i)
    for (auto& b : s.layers[i].buffers) {
      std::string name = "layers." + std::to_string(i) + "." + b.name;
      const Tensor& x = find(name);
      check(x.dtype == DType::F32, source + ": state tensor '" + name + "' must be F32");
      // Every axis but the first is fixed by the model; the first may grow (KV cache).
      bool ok = x.shape.size() == b.shape.size() && !b.shape.empty();
      for (size_t d = 1; ok && d < b.shape.size(); ++d) ok = x.shape[d] == b.shape[d];
      bool growable = b.shape[0] == 0 || b.name.rfind("kv_", 0) == 0;
      if (ok && !growable) ok = x.shape[0] == b.shape[0];
      check(ok, source + ": state tensor '" + name + "' has shape " + shape_str(x.shape) + ", expected " +
                    shape_str(b.shape));
      b.shape = x.shape;
      b.data.assign(x.ptr<float>(), x.ptr<float>() + x.numel());
      ++expected;
    }
  check(expected == t.size(), source + ": " + std::to_string(t.size() - expected) + " state tensors not used by this model");
}

}  // namespace m3
