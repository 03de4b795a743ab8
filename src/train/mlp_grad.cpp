// GatedMLP forward/backward for training (spec/model.md §3): fc1 → [y, gate], y ⊙ silu(gate), fc2.
#include "train/grad_layer.h"
#include "train/grad_ops.h"

namespace m3::train {

namespace {

template <class T>
class GatedMlpGrad final : public GradLayer<T> {
 public:
  GatedMlpGrad(int64_t d_model, int64_t hidden, ParamRefs<T> p) : d_(d_model), h_(hidden), p_(std::move(p)) {}

  void forward(const T* x, T* y, const std::vector<int64_t>& cu) override {
    n_ = cu.back();
    x_.assign(x, x + n_ * d_);
    a_.resize(size_t(n_ * 2 * h_));
    act_.resize(size_t(n_ * h_));
    linear_forward<T>(a_.data(), x, p_.value("fc1.weight"), nullptr, n_, d_, 2 * h_);
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t j = 0; j < h_; ++j) act_[size_t(t * h_ + j)] = a_[size_t(t * 2 * h_ + j)] * silu(a_[size_t(t * 2 * h_ + h_ + j)]);
    linear_forward<T>(y, act_.data(), p_.value("fc2.weight"), nullptr, n_, h_, d_);
  }

  void backward(const T* dy, T* dx) override {
    std::vector<T> dact(size_t(n_ * h_)), da(size_t(n_ * 2 * h_));
    linear_backward<T>(dact.data(), p_.grad("fc2.weight"), nullptr, dy, act_.data(), p_.value("fc2.weight"), n_, h_, d_);
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t j = 0; j < h_; ++j) {
        const T a = a_[size_t(t * 2 * h_ + j)], g = a_[size_t(t * 2 * h_ + h_ + j)], d = dact[size_t(t * h_ + j)];
        da[size_t(t * 2 * h_ + j)] = d * silu(g);
        da[size_t(t * 2 * h_ + h_ + j)] = d * a * silu_grad(g);
      }
    linear_backward<T>(dx, p_.grad("fc1.weight"), nullptr, da.data(), x_.data(), p_.value("fc1.weight"), n_, d_, 2 * h_);
  }

 private:
  int64_t d_, h_, n_ = 0;
  ParamRefs<T> p_;
  std::vector<T> x_, a_, act_;
};

}  // namespace

template <class T>
std::unique_ptr<GradLayer<T>> make_gated_mlp_grad(int64_t d_model, int64_t hidden, ParamRefs<T> p) {
  return std::make_unique<GatedMlpGrad<T>>(d_model, hidden, std::move(p));
}
template std::unique_ptr<GradLayer<float>> make_gated_mlp_grad(int64_t, int64_t, ParamRefs<float>);
template std::unique_ptr<GradLayer<double>> make_gated_mlp_grad(int64_t, int64_t, ParamRefs<double>);

}  // namespace m3::train
