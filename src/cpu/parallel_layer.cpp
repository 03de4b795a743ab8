// Layers side by side (FalconH1's attention and Mamba-2, transformers' FalconH1DecoderLayer): each
// part runs on the same input, their outputs are summed (model/parallel_parts.h).
#include <vector>

#include "cpu/layers.h"
#include "cpu/ops.h"
#include "model/parallel_parts.h"

namespace m3::cpu {

namespace {

class ParallelLayer final : public Layer {
 public:
  ParallelLayer(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model) : parts_(std::move(parts)), d_(d_model) {}
  std::string describe() const override { return parallel_describe(parts_); }
  LayerStateSpec state_spec() const override { return parallel_state_spec(parts_); }
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
      const StateBatch ps = state_part(s, first, nb);
      first += nb;
      if (k == 0) {
        run_part(*parts_[k], y, ps);
        continue;
      }
      tmp_.resize(size_t(T * d_));
      run_part(*parts_[k], tmp_.data(), ps);
      const int64_t n = T * d_;
#pragma omp parallel for if (n > kParallelWork)
      for (int64_t i = 0; i < n; ++i) y[i] += tmp_[size_t(i)];
    }
  }

  std::vector<std::unique_ptr<Layer>> parts_;
  int64_t d_;
  std::vector<float> tmp_;
};

}  // namespace

std::unique_ptr<Layer> make_parallel(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model) {
  return std::make_unique<ParallelLayer>(std::move(parts), d_model);
}

}  // namespace m3::cpu
