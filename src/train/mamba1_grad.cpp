// Mamba-1 forward/backward for training (spec/mamba1.md §2–§3, FalconMamba's weightless δ/B/C
// norms of §5): in_proj → x, z; causal conv + silu → u; x_proj → δ, B, C; Δ = softplus(dt_proj(δ));
// h_t = exp(Δ A) ⊙ h_{t−1} + Δ B u, y = h C + D u; out_proj(y ⊙ silu(z)). The forward keeps each
// channel's state at chunk starts (chunks of kChunk tokens); the backward recomputes a chunk's
// states from it. Adjoint per channel, G = dL/dh_t: G += dy C; dC += h_t dy; du += D dy + Σ G Δ B;
// dB += G Δ u; dΔ += Σ_n (G_n B_n u + ⟨G_n, h_{t−1,n}⟩ a_n A_n); then G ← a ⊙ G.
#include <algorithm>
#include <cmath>

#include "cpu/ops.h"
#include "train/grad_layer.h"
#include "train/grad_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace m3::train {

namespace {

constexpr int64_t kChunk = 64;

template <class T>
class Mamba1Grad final : public GradLayer<T> {
 public:
  Mamba1Grad(const Mamba1Config& c, int64_t d_model, ParamRefs<T> p) : c_(c), dm_(d_model), p_(std::move(p)) {
    DI = c.d_inner, N = c.d_state, Rd = c.dt_rank, XP = Rd + 2 * N;
  }

  void forward(const T* x, T* y, const std::vector<int64_t>& cu) override {
    cu_ = cu;
    n_ = cu.back();
    x_.assign(x, x + n_ * dm_);
    u_.resize(size_t(n_ * 2 * DI));
    linear_forward<T>(u_.data(), x, p_.value("in_proj.weight"), bias("in_proj.bias"), n_, dm_, 2 * DI);
    cv_.resize(size_t(n_ * DI)), pre_.resize(cv_.size());
    conv1d_silu_forward<T>(cv_.data(), pre_.data(), u_.data(), 2 * DI, p_.value("conv1d.weight"), bias("conv1d.bias"),
                           DI, c_.d_conv, cu_);
    xp_.resize(size_t(n_ * XP));
    linear_forward<T>(xp_.data(), cv_.data(), p_.value("x_proj.weight"), nullptr, n_, DI, XP);
    // FalconMamba: δ, B and C each through a weightless RMSNorm.
    xpn_ = xp_;
    rs_.resize(size_t(n_ * 3));
    if (c_.bcdt_rmsnorm)
      for (int64_t t = 0; t < n_; ++t) {
        T* row = xpn_.data() + t * XP;
        const T* src = xp_.data() + t * XP;
        rmsnorm_forward<T>(row, &rs_[size_t(t * 3)], src, nullptr, 1, Rd, T(c_.bcdt_rms_eps));
        rmsnorm_forward<T>(row + Rd, &rs_[size_t(t * 3 + 1)], src + Rd, nullptr, 1, N, T(c_.bcdt_rms_eps));
        rmsnorm_forward<T>(row + Rd + N, &rs_[size_t(t * 3 + 2)], src + Rd + N, nullptr, 1, N, T(c_.bcdt_rms_eps));
      }
    dpre_.resize(size_t(n_ * DI));
    gemm<T>(false, true, n_, DI, Rd, T(1), xpn_.data(), XP, p_.value("dt_proj.weight"), Rd, T(0), dpre_.data(), DI);
    delta_.resize(dpre_.size());
    const T* dtb = p_.value("dt_proj.bias");
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t ch = 0; ch < DI; ++ch) {
        dpre_[size_t(t * DI + ch)] += dtb[ch];
        delta_[size_t(t * DI + ch)] = softplus(dpre_[size_t(t * DI + ch)]);
      }
    const int64_t ns = int64_t(cu_.size()) - 1;
    chunk0_.assign(1, 0);
    for (int64_t i = 0; i < ns; ++i)
      chunk0_.push_back(chunk0_.back() + (cu_[size_t(i + 1)] - cu_[size_t(i)] + kChunk - 1) / kChunk);
    ck_.resize(size_t(chunk0_.back() * DI * N));
    ys_.resize(size_t(n_ * DI));
#pragma omp parallel for if (n_ * DI * N > cpu::kParallelWork)
    for (int64_t ch = 0; ch < DI; ++ch) {
      std::vector<T> h(static_cast<size_t>(N));
      for (int64_t i = 0; i < ns; ++i) {
        std::fill(h.begin(), h.end(), T(0));
        for (int64_t t = cu_[size_t(i)]; t < cu_[size_t(i + 1)]; ++t) {
          if ((t - cu_[size_t(i)]) % kChunk == 0)
            std::copy(h.begin(), h.end(), ck_.begin() + ((chunk0_[size_t(i)] + (t - cu_[size_t(i)]) / kChunk) * DI + ch) * N);
          advance(h.data(), t, ch);
          const T* C = xpn_.data() + t * XP + Rd + N;
          T s = 0;
          for (int64_t m = 0; m < N; ++m) s += h[size_t(m)] * C[m];
          ys_[size_t(t * DI + ch)] = s + p_.value("D")[ch] * cv_[size_t(t * DI + ch)];
        }
      }
    }
    o_.resize(size_t(n_ * DI));
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t ch = 0; ch < DI; ++ch)
        o_[size_t(t * DI + ch)] = ys_[size_t(t * DI + ch)] * silu(u_[size_t(t * 2 * DI + DI + ch)]);
    linear_forward<T>(y, o_.data(), p_.value("out_proj.weight"), bias("out_proj.bias"), n_, DI, dm_);
  }

  void backward(const T* dy, T* dx) override {
    std::vector<T> dO(size_t(n_ * DI)), du(size_t(n_ * 2 * DI), T(0)), dY(size_t(n_ * DI));
    linear_backward<T>(dO.data(), p_.grad("out_proj.weight"), gbias("out_proj.bias"), dy, o_.data(),
                       p_.value("out_proj.weight"), n_, DI, dm_);
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t ch = 0; ch < DI; ++ch) {
        const T z = u_[size_t(t * 2 * DI + DI + ch)], g = dO[size_t(t * DI + ch)];
        dY[size_t(t * DI + ch)] = g * silu(z);
        du[size_t(t * 2 * DI + DI + ch)] = g * ys_[size_t(t * DI + ch)] * silu_grad(z);
      }
    // Scan adjoint per channel; B and C are shared by all channels, so each thread sums their
    // gradients in its own buffer.
    std::vector<T> dcv(size_t(n_ * DI)), ddelta(size_t(n_ * DI));
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::vector<std::vector<T>> dBC(static_cast<size_t>(threads));
    const T *Alog = p_.value("A_log"), *Dp = p_.value("D");
    T *gAlog = p_.grad("A_log"), *gD = p_.grad("D");
    const int64_t ns = int64_t(cu_.size()) - 1;
#pragma omp parallel if (n_ * DI * N > cpu::kParallelWork)
    {
      int tid = 0;
#ifdef _OPENMP
      tid = omp_get_thread_num();
#endif
      std::vector<T>& acc = dBC[size_t(tid)];
      acc.assign(size_t(n_ * 2 * N), T(0));
      std::vector<T> h(size_t((kChunk + 1) * N)), G(static_cast<size_t>(N));
#pragma omp for
      for (int64_t ch = 0; ch < DI; ++ch) {
        for (int64_t i = 0; i < ns; ++i) {
          const int64_t start = cu_[size_t(i)], end = cu_[size_t(i + 1)];
          std::fill(G.begin(), G.end(), T(0));
          for (int64_t ci = (end - start + kChunk - 1) / kChunk - 1; ci >= 0; --ci) {
            const int64_t c0 = start + ci * kChunk, c1 = std::min(end, c0 + kChunk);
            const T* ckp = ck_.data() + ((chunk0_[size_t(i)] + ci) * DI + ch) * N;
            std::copy(ckp, ckp + N, h.begin());
            for (int64_t t = c0; t < c1; ++t) {
              std::copy(h.begin() + (t - c0) * N, h.begin() + (t - c0 + 1) * N, h.begin() + (t - c0 + 1) * N);
              advance(h.data() + (t - c0 + 1) * N, t, ch);
            }
            for (int64_t t = c1 - 1; t >= c0; --t) {
              const T* hp = h.data() + (t - c0) * N;
              const T* hc = hp + N;
              const T* B = xpn_.data() + t * XP + Rd;
              const T* C = B + N;
              T* dB = acc.data() + t * 2 * N;
              T* dC = dB + N;
              const T g = dY[size_t(t * DI + ch)], u = cv_[size_t(t * DI + ch)], d = delta_[size_t(t * DI + ch)];
              T du_t = Dp[ch] * g, dd = 0;
              gD[ch] += g * u;
              for (int64_t m = 0; m < N; ++m) {
                const T A = -std::exp(Alog[ch * N + m]), a = std::exp(d * A);
                dC[m] += hc[m] * g;
                G[size_t(m)] += g * C[m];
                const T da = G[size_t(m)] * hp[m] * a;  // d(decay)·decay
                dd += da * A + G[size_t(m)] * B[m] * u;
                gAlog[ch * N + m] += da * d * A;
                du_t += G[size_t(m)] * d * B[m];
                dB[m] += G[size_t(m)] * d * u;
                G[size_t(m)] *= a;
              }
              dcv[size_t(t * DI + ch)] = du_t;
              ddelta[size_t(t * DI + ch)] = dd;
            }
          }
        }
      }
    }
    // Δ = softplus(dt_proj(δ)); x_proj's output gradient [dδ | dB | dC].
    std::vector<T> dpre(size_t(n_ * DI)), dxpn(size_t(n_ * XP), T(0)), dxp(size_t(n_ * XP));
    for (size_t i = 0; i < dpre.size(); ++i) dpre[i] = ddelta[i] * sigmoid(dpre_[i]);
    T* gdtb = p_.grad("dt_proj.bias");
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t ch = 0; ch < DI; ++ch) gdtb[ch] += dpre[size_t(t * DI + ch)];
    gemm<T>(false, false, n_, Rd, DI, T(1), dpre.data(), DI, p_.value("dt_proj.weight"), Rd, T(0), dxpn.data(), XP);
    gemm<T>(true, false, DI, Rd, n_, T(1), dpre.data(), DI, xpn_.data(), XP, T(1), p_.grad("dt_proj.weight"), Rd);
    for (const auto& acc : dBC)
      if (!acc.empty())
        for (int64_t t = 0; t < n_; ++t)
          for (int64_t m = 0; m < 2 * N; ++m) dxpn[size_t(t * XP + Rd + m)] += acc[size_t(t * 2 * N + m)];
    if (c_.bcdt_rmsnorm) {
      for (int64_t t = 0; t < n_; ++t) {
        const T* src = xp_.data() + t * XP;
        const T* g = dxpn.data() + t * XP;
        T* d = dxp.data() + t * XP;
        rmsnorm_backward<T>(d, nullptr, g, src, nullptr, &rs_[size_t(t * 3)], 1, Rd, false);
        rmsnorm_backward<T>(d + Rd, nullptr, g + Rd, src + Rd, nullptr, &rs_[size_t(t * 3 + 1)], 1, N, false);
        rmsnorm_backward<T>(d + Rd + N, nullptr, g + Rd + N, src + Rd + N, nullptr, &rs_[size_t(t * 3 + 2)], 1, N, false);
      }
    } else {
      dxp = dxpn;
    }
    linear_backward<T>(dcv.data(), p_.grad("x_proj.weight"), nullptr, dxp.data(), cv_.data(), p_.value("x_proj.weight"),
                       n_, DI, XP, true);
    conv1d_silu_backward<T>(du.data(), 2 * DI, p_.grad("conv1d.weight"), gbias("conv1d.bias"), dcv.data(), pre_.data(),
                            u_.data(), p_.value("conv1d.weight"), DI, c_.d_conv, cu_);
    linear_backward<T>(dx, p_.grad("in_proj.weight"), gbias("in_proj.bias"), du.data(), x_.data(),
                       p_.value("in_proj.weight"), n_, dm_, 2 * DI);
  }

 private:
  const T* bias(const char* name) const { return p_.has(name) ? p_.value(name) : nullptr; }
  T* gbias(const char* name) const { return p_.has(name) ? p_.grad(name) : nullptr; }
  // h ← exp(Δ A) ⊙ h + Δ B u for channel ch at token t.
  void advance(T* h, int64_t t, int64_t ch) const {
    const T d = delta_[size_t(t * DI + ch)], u = cv_[size_t(t * DI + ch)];
    const T* B = xpn_.data() + t * XP + Rd;
    const T* Alog = p_.value("A_log") + ch * N;
    for (int64_t m = 0; m < N; ++m) h[m] = std::exp(-d * std::exp(Alog[m])) * h[m] + d * B[m] * u;
  }

  Mamba1Config c_;
  int64_t dm_, n_ = 0, DI, N, Rd, XP;
  ParamRefs<T> p_;
  std::vector<int64_t> cu_, chunk0_;
  std::vector<T> x_, u_, cv_, pre_, xp_, xpn_, rs_, dpre_, delta_, ck_, ys_, o_;
};

}  // namespace

template <class T>
std::unique_ptr<GradLayer<T>> make_mamba1_grad(const Mamba1Config& c, int64_t d_model, ParamRefs<T> p) {
  return std::make_unique<Mamba1Grad<T>>(c, d_model, std::move(p));
}
template std::unique_ptr<GradLayer<float>> make_mamba1_grad(const Mamba1Config&, int64_t, ParamRefs<float>);
template std::unique_ptr<GradLayer<double>> make_mamba1_grad(const Mamba1Config&, int64_t, ParamRefs<double>);

}  // namespace m3::train
