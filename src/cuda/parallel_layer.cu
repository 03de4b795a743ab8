// Layers side by side on the device, as cpu/parallel_layer.cpp (model/parallel_parts.h): each part
// runs on the same input, part 0 into y and the others into scratch added to y, on ctx.stream.
#include <vector>

#include "cuda/layers.h"
#include "cuda/ops.h"
#include "model/parallel_parts.h"

namespace m3::cuda {

namespace {

class ParallelLayer final : public Layer {
 public:
  ParallelLayer(Context& ctx, std::vector<std::unique_ptr<Layer>> parts, int64_t d_model)
      : ctx_(ctx), parts_(std::move(parts)), d_(d_model) {}
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
      float* tmp = tmp_.get(ctx_, size_t(T * d_));
      run_part(*parts_[k], tmp, ps);
      add_fwd(ctx_, y, tmp, T * d_);
    }
  }

  Context& ctx_;
  std::vector<std::unique_ptr<Layer>> parts_;
  int64_t d_;
  Scratch<float> tmp_;  // [T, d_model]: a later part's output
};

}  // namespace

std::unique_ptr<Layer> make_parallel(Context& ctx, std::vector<std::unique_ptr<Layer>> parts, int64_t d_model) {
  return std::make_unique<ParallelLayer>(ctx, std::move(parts), d_model);
}

}  // namespace m3::cuda
