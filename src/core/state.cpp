#include "m3/state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "core/finite.h"
#include "m3/error.h"
#include "model/state_pool.h"

namespace m3 {

int64_t StateBufferSpec::row_numel() const {
  int64_t n = 1;
  for (size_t d = kv ? 1 : 0; d < shape.size(); ++d) n *= shape[d];
  return n;
}

StateBuffer& LayerState::operator[](const std::string& name) {
  for (auto& b : buffers)
    if (b.name == name) return b;
  throw Error("layer state has no buffer '" + name + "'");
}

const StateBuffer& LayerState::operator[](const std::string& name) const {
  for (const auto& b : buffers)
    if (b.name == name) return b;
  throw Error("layer state has no buffer '" + name + "'");
}

size_t LayerState::bytes() const {
  size_t n = 0;
  for (const auto& b : buffers) n += b.data.size() * sizeof(float);
  return n;
}

LayerState zero_layer_state(const LayerStateSpec& spec) {
  LayerState s;
  for (const auto& b : spec) {
    Shape shape = b.shape;
    if (b.kv) shape[0] = 0;
    s.buffers.push_back({b.name, shape, std::vector<float>(size_t(shape_numel(shape)))});
  }
  return s;
}

SequenceState::SequenceState(std::shared_ptr<StatePool> pool, int32_t slot) : pool_(std::move(pool)), slot_(slot) {}

SequenceState::SequenceState(const SequenceState& o) : n_tokens(o.n_tokens), pool_(o.pool_) {
  if (pool_) {
    slot_ = pool_->acquire();
    pool_->copy_slot(slot_, o.slot_);
  }
}

SequenceState& SequenceState::operator=(const SequenceState& o) {
  if (this != &o) {
    SequenceState copy(o);
    *this = std::move(copy);
  }
  return *this;
}

SequenceState::SequenceState(SequenceState&& o) noexcept
    : n_tokens(o.n_tokens), pool_(std::move(o.pool_)), slot_(o.slot_) {
  o.slot_ = -1;
  o.n_tokens = 0;
}

SequenceState& SequenceState::operator=(SequenceState&& o) noexcept {
  if (this != &o) {
    if (pool_) pool_->release(slot_);
    pool_ = std::move(o.pool_);
    slot_ = o.slot_;
    n_tokens = o.n_tokens;
    o.slot_ = -1;
    o.n_tokens = 0;
  }
  return *this;
}

SequenceState::~SequenceState() {
  if (pool_) pool_->release(slot_);
}

size_t SequenceState::bytes() const { return pool_ ? pool_->bytes_per_sequence(n_tokens) : 0; }

size_t SequenceState::n_layers() const { return pool_ ? pool_->n_layers() : 0; }

LayerState SequenceState::layer(size_t i) const {
  check(pool_ != nullptr, "the sequence state holds no slot");
  check(i < pool_->n_layers(), "layer " + std::to_string(i) + " is past the model's " +
                                   std::to_string(pool_->n_layers()) + " layers");
  return pool_->read(slot_, i, n_tokens);
}

std::vector<std::pair<std::string, Tensor>> state_to_tensors(const SequenceState& s) {
  std::vector<std::pair<std::string, Tensor>> r;
  Tensor n = Tensor::zeros(DType::I64, {1});
  n.ptr<int64_t>()[0] = s.n_tokens;
  r.emplace_back("n_tokens", n);
  for (size_t i = 0; i < s.n_layers(); ++i)
    for (const auto& b : s.layer(i).buffers) {
      Tensor t = Tensor::zeros(DType::F32, b.shape);
      std::copy(b.data.begin(), b.data.end(), t.f32());  // (an empty KV cache has no data pointer)
      r.emplace_back("layers." + std::to_string(i) + "." + b.name, t);
    }
  return r;
}

void state_from_tensors(SequenceState& s, const std::vector<std::pair<std::string, Tensor>>& t,
                        const std::string& source) {
  check(s.valid(), source + ": the target sequence state holds no slot");
  StatePool& pool = *s.pool();
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

  // Everything is checked (and copied to the host format) before the pool changes, so a bad file
  // leaves the state as it was.
  std::vector<LayerState> layers;
  bool has_kv = false;
  for (size_t i = 0; i < pool.n_layers(); ++i) {
    LayerState ls;
    for (const auto& b : pool.spec(i)) {
      const std::string name = "layers." + std::to_string(i) + "." + b.name;
      const Tensor& x = find(name);
      check(x.dtype == DType::F32, source + ": state tensor '" + name + "' must be F32");
      Shape want = b.shape;
      if (b.kv) want[0] = n_tokens, has_kv = true;  // a KV cache holds every consumed position
      check(x.shape == want, source + ": state tensor '" + name + "' has shape " + shape_str(x.shape) +
                                 ", expected " + shape_str(want));
      StateBuffer buf{b.name, x.shape, std::vector<float>(size_t(x.numel()))};
      if (!buf.data.empty()) std::memcpy(buf.data.data(), x.data, buf.data.size() * sizeof(float));
      // No state a model computes from finite weights is infinite or NaN.
      const int64_t size = int64_t(buf.data.size());
      if (const int64_t bad = first_non_finite(buf.data.data(), size); bad < size)
        throw Error(source + ": state tensor '" + name + "' holds " + std::to_string(buf.data[size_t(bad)]) +
                    " at element " + std::to_string(bad));
      ls.buffers.push_back(std::move(buf));
    }
    layers.push_back(std::move(ls));
  }
  for (const auto& [name, x] : t)
    check(used.count(name) != 0, source + ": state tensor '" + name + "' is not used by this model");
  if (has_kv) pool.reserve_kv(n_tokens);
  for (size_t i = 0; i < layers.size(); ++i) pool.write(s.slot(), i, layers[i]);
  s.n_tokens = n_tokens;
}

}  // namespace m3
