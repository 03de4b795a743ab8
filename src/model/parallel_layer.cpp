// model/parallel_layer.h: part 0 writes y, each later part writes the backend's scratch, added to y.
#include "model/parallel_layer.h"

#include <string>

#include "model/layer_parts.h"

namespace m3 {

namespace {

class ParallelLayer final : public Layer {
 public:
  ParallelLayer(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model, ParallelOps ops)
      : parts_(std::move(parts)), d_(d_model), ops_(std::move(ops)) {}
  std::string describe() const override {
    std::string s;
    for (const auto& p : parts_) s += (s.empty() ? "" : " || ") + p->describe();
    return s;
  }
  LayerStateSpec state_spec() const override {
    LayerStateSpec s;
    for (const auto& p : parts_) {
      const LayerStateSpec ps = p->state_spec();
      s.insert(s.end(), ps.begin(), ps.end());
    }
    return s;
  }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    run(y, pk.n_tokens(), s, [&](Layer& l, float* out, const StateBatch& ps) { l.forward(x, out, pk, ps); });
  }
  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    run(y, n, s, [&](Layer& l, float* out, const StateBatch& ps) { l.step(x, out, n, ps); });
  }

 private:
  template <class Run>
  void run(float* y, int64_t T, const StateBatch& s, Run&& run_part) {
    size_t first = 0;
    for (size_t k = 0; k < parts_.size(); ++k) {
      const size_t nb = parts_[k]->state_spec().size();
      const StateBatch ps = state_buffers(s, first, nb);
      first += nb;
      if (k == 0) {
        run_part(*parts_[k], y, ps);
        continue;
      }
      float* tmp = ops_.scratch(T * d_);
      run_part(*parts_[k], tmp, ps);
      ops_.add(y, tmp, T * d_);
    }
  }

  std::vector<std::unique_ptr<Layer>> parts_;
  int64_t d_;
  ParallelOps ops_;
};

}  // namespace

std::unique_ptr<Layer> make_parallel_layer(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model,
                                           ParallelOps ops) {
  return std::make_unique<ParallelLayer>(std::move(parts), d_model, std::move(ops));
}

}  // namespace m3
