// MHA forward/backward for training (spec/model.md §4): in_proj (+ bias), rotary at positions
// within each sequence, GQA scaled dot-product attention (causal or not), out_proj (+ bias).
// The forward keeps q, k, v and each query's log-sum-exp; the backward recomputes the
// probabilities from them (no L×L matrix is stored). Work is split over kv heads, so that the
// gradients of a shared k/v head are summed by one thread.
#include <algorithm>
#include <cmath>

#include "train/grad_layer.h"
#include "cpu/ops.h"
#include "train/grad_ops.h"

namespace m3::train {

namespace {

template <class T>
class AttentionGrad final : public GradLayer<T> {
 public:
  AttentionGrad(const AttnConfig& c, int64_t d_model, ParamRefs<T> p) : c_(c), d_(d_model), p_(std::move(p)) {
    check(c_.d_conv == 0, "training: attention with d_conv > 0 is not supported yet");
    check(c_.mlp_dim == 0, "training: attention with mlp_dim > 0 is not supported yet");
    scale_ = c_.softmax_scale > 0 ? T(c_.softmax_scale) : T(1) / std::sqrt(T(c_.head_dim));
    for (int64_t j = 0; j < c_.rotary_emb_dim / 2; ++j)
      inv_freq_.push_back(T(1.0 / std::pow(c_.rotary_emb_base, double(2 * j) / double(c_.rotary_emb_dim))));
  }

  void forward(const T* x, T* y, const std::vector<int64_t>& cu) override {
    cu_ = cu;
    n_ = cu.back();
    const int64_t hd = c_.head_dim, Hq = c_.num_heads, W = c_.qkv_dim(), Dq = Hq * hd;
    x_.assign(x, x + n_ * d_);
    qkv_.resize(size_t(n_ * W));
    linear_forward<T>(qkv_.data(), x, p_.value("in_proj.weight"), bias("in_proj.bias"), n_, d_, W);
    for (size_t i = 0; i + 1 < cu_.size(); ++i)
      for (int64_t t = cu_[i]; t < cu_[i + 1]; ++t) {
        rotate(qkv_.data() + t * W, Hq, t - cu_[size_t(i)], false);
        rotate(qkv_.data() + t * W + Dq, c_.num_heads_kv, t - cu_[size_t(i)], false);
      }
    ctx_.assign(size_t(n_ * Dq), T(0));
    lse_.resize(size_t(n_ * Hq));
    const int64_t ns = int64_t(cu_.size()) - 1;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work() > cpu::kParallelWork)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < ns; ++i) {
        std::vector<T> s;
        for (int64_t t = cu_[size_t(i)]; t < cu_[size_t(i + 1)]; ++t) {
          const int64_t s1 = c_.causal ? t + 1 : cu_[size_t(i + 1)];
          scores(s, h, t, cu_[size_t(i)], s1);
          T mx = s[0];
          for (T v : s) mx = std::max(mx, v);
          T sum = 0;
          for (T& v : s) sum += (v = std::exp(v - mx));
          lse_[size_t(t * Hq + h)] = mx + std::log(sum);
          T* o = ctx_.data() + t * Dq + h * hd;
          for (int64_t j = cu_[size_t(i)]; j < s1; ++j) {
            const T w = s[size_t(j - cu_[size_t(i)])] / sum;
            const T* v = vrow(j, h);
            for (int64_t e = 0; e < hd; ++e) o[e] += w * v[e];
          }
        }
      }
    linear_forward<T>(y, ctx_.data(), p_.value("out_proj.weight"), bias("out_proj.bias"), n_, Dq, d_);
  }

  void backward(const T* dy, T* dx) override {
    const int64_t hd = c_.head_dim, Hq = c_.num_heads, Hk = c_.num_heads_kv, W = c_.qkv_dim(), Dq = Hq * hd;
    std::vector<T> dctx(size_t(n_ * Dq)), dqkv(size_t(n_ * W), T(0));
    linear_backward<T>(dctx.data(), p_.grad("out_proj.weight"), gbias("out_proj.bias"), dy, ctx_.data(),
                       p_.value("out_proj.weight"), n_, Dq, d_);
    // dP_ts = dO_t·v_s; dS_ts = P_ts (dP_ts − dO_t·O_t); dq_t = scale Σ_s dS_ts k_s;
    // dk_s += scale dS_ts q_t; dv_s += P_ts dO_t.
    const int64_t ns = int64_t(cu_.size()) - 1;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work() > cpu::kParallelWork)
    for (int64_t hk = 0; hk < Hk; ++hk)
      for (int64_t i = 0; i < ns; ++i) {
        std::vector<T> s;
        for (int64_t h = hk * (Hq / Hk); h < (hk + 1) * (Hq / Hk); ++h)
          for (int64_t t = cu_[size_t(i)]; t < cu_[size_t(i + 1)]; ++t) {
            const int64_t s1 = c_.causal ? t + 1 : cu_[size_t(i + 1)];
            scores(s, h, t, cu_[size_t(i)], s1);
            const T* dO = dctx.data() + t * Dq + h * hd;
            const T* O = ctx_.data() + t * Dq + h * hd;
            T Dt = 0;
            for (int64_t e = 0; e < hd; ++e) Dt += dO[e] * O[e];
            const T* q = qkv_.data() + t * W + h * hd;
            T* dq = dqkv.data() + t * W + h * hd;
            for (int64_t j = cu_[size_t(i)]; j < s1; ++j) {
              const T pr = std::exp(s[size_t(j - cu_[size_t(i)])] - lse_[size_t(t * Hq + h)]);
              const T* v = vrow(j, h);
              const T* k = qkv_.data() + j * W + Dq + hk * hd;
              T* dk = dqkv.data() + j * W + Dq + hk * hd;
              T* dv = dqkv.data() + j * W + Dq + Hk * hd + hk * hd;
              T dp = 0;
              for (int64_t e = 0; e < hd; ++e) dp += dO[e] * v[e], dv[e] += pr * dO[e];
              const T ds = pr * (dp - Dt) * scale_;
              for (int64_t e = 0; e < hd; ++e) dq[e] += ds * k[e], dk[e] += ds * q[e];
            }
          }
      }
    for (size_t i = 0; i + 1 < cu_.size(); ++i)
      for (int64_t t = cu_[i]; t < cu_[i + 1]; ++t) {
        rotate(dqkv.data() + t * W, Hq, t - cu_[size_t(i)], true);
        rotate(dqkv.data() + t * W + Dq, Hk, t - cu_[size_t(i)], true);
      }
    linear_backward<T>(dx, p_.grad("in_proj.weight"), gbias("in_proj.bias"), dqkv.data(), x_.data(),
                       p_.value("in_proj.weight"), n_, d_, W);
  }

 private:
  // Multiply-adds of one pass over every (query, key) pair, as if non-causal: whether to thread.
  int64_t work() const { return n_ * n_ / std::max<int64_t>(int64_t(cu_.size()) - 1, 1) * c_.num_heads * c_.head_dim; }
  const T* bias(const char* name) const { return p_.has(name) ? p_.value(name) : nullptr; }
  T* gbias(const char* name) const { return p_.has(name) ? p_.grad(name) : nullptr; }
  const T* vrow(int64_t j, int64_t h) const {
    const int64_t hk = h / (c_.num_heads / c_.num_heads_kv);
    return qkv_.data() + j * c_.qkv_dim() + (c_.num_heads + c_.num_heads_kv + hk) * c_.head_dim;
  }
  // s[j − s0] = scale · q_t · k_j for keys j in [s0, s1).
  void scores(std::vector<T>& s, int64_t h, int64_t t, int64_t s0, int64_t s1) const {
    const int64_t hd = c_.head_dim, W = c_.qkv_dim(), hk = h / (c_.num_heads / c_.num_heads_kv);
    const T* q = qkv_.data() + t * W + h * hd;
    s.resize(size_t(s1 - s0));
    for (int64_t j = s0; j < s1; ++j) {
      const T* k = qkv_.data() + j * W + c_.num_heads * hd + hk * hd;
      T a = 0;
      for (int64_t e = 0; e < hd; ++e) a += q[e] * k[e];
      s[size_t(j - s0)] = a * scale_;
    }
  }
  // Rotary at position pos on n heads of v (inverse: the transpose, for gradients).
  void rotate(T* v, int64_t n, int64_t pos, bool inverse) const {
    const int64_t half = c_.rotary_emb_dim / 2;
    for (int64_t j = 0; j < half; ++j) {
      const T ang = T(pos) * inv_freq_[size_t(j)], cs = std::cos(ang), sn = inverse ? -std::sin(ang) : std::sin(ang);
      const int64_t i0 = c_.rotary_emb_interleaved ? 2 * j : j;
      const int64_t i1 = c_.rotary_emb_interleaved ? 2 * j + 1 : j + half;
      for (int64_t h = 0; h < n; ++h) {
        T* hv = v + h * c_.head_dim;
        const T a = hv[i0], b = hv[i1];
        hv[i0] = a * cs - b * sn;
        hv[i1] = a * sn + b * cs;
      }
    }
  }

  AttnConfig c_;
  int64_t d_, n_ = 0;
  ParamRefs<T> p_;
  T scale_;
  std::vector<T> inv_freq_, x_, qkv_, ctx_, lse_;
  std::vector<int64_t> cu_;
};

}  // namespace

template <class T>
std::unique_ptr<GradLayer<T>> make_attention_grad(const AttnConfig& c, int64_t d_model, ParamRefs<T> p) {
  return std::make_unique<AttentionGrad<T>>(c, d_model, std::move(p));
}
template std::unique_ptr<GradLayer<float>> make_attention_grad(const AttnConfig&, int64_t, ParamRefs<float>);
template std::unique_ptr<GradLayer<double>> make_attention_grad(const AttnConfig&, int64_t, ParamRefs<double>);

}  // namespace m3::train
