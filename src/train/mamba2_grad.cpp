// Mamba-2 forward/backward for training (spec/mamba2.md §2–§3): in_proj, causal conv + silu on
// xBC, dt = clamp(softplus(dt + dt_bias)), the recurrence S_t = exp(A dt) S_{t−1} + dt x Bᵀ,
// y = S C + D x, gated RMSNorm (per group, or over d_ssm), the d_mlp gated branch, out_proj.
// As for Mamba-3 (mamba3_grad.cpp) the forward keeps each head's state at chunk starts and the
// backward recomputes a chunk's states from it. Adjoint of one step, G = dL/dS_t:
//   G += dy Cᵀ; dC = S_tᵀ dy; dx += D dy + dt G B; dB = dt Gᵀ x; d(dt) = xᵀ G B;
//   d(decay) = ⟨G, S_{t−1}⟩; then G ← decay · G.
#include <algorithm>
#include <cmath>

#include "cpu/ops.h"
#include "train/grad_layer.h"
#include "train/grad_ops.h"

namespace m3::train {

namespace {

template <class T>
class Mamba2Grad final : public GradLayer<T> {
 public:
  Mamba2Grad(const Mamba2Config& c, int64_t d_model, ParamRefs<T> p) : c_(c), dm_(d_model), p_(std::move(p)) {
    H = c.nheads, G = c.ngroups, P = c.headdim, N = c.d_state, DS = c.d_ssm, DM = c.d_mlp(), CD = c.conv_dim();
    D_in = c.in_proj_dim(), K = c.chunk_size;
  }

  void forward(const T* x, T* y, const std::vector<int64_t>& cu) override {
    cu_ = cu;
    n_ = cu.back();
    x_.assign(x, x + n_ * dm_);
    u_.resize(size_t(n_ * D_in));
    linear_forward<T>(u_.data(), x, p_.value("in_proj.weight"), bias("in_proj.bias"), n_, dm_, D_in);
    xbc_.resize(size_t(n_ * CD)), pre_.resize(xbc_.size());
    conv1d_silu_forward<T>(xbc_.data(), pre_.data(), u_.data() + off_xbc(), D_in, p_.value("conv1d.weight"),
                           bias("conv1d.bias"), CD, c_.d_conv, cu_);
    dt_.resize(size_t(n_ * H)), dtraw_.resize(dt_.size());
    const T* dtb = p_.value("dt_bias");
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const T r = softplus(u_[size_t(t * D_in + off_dt() + h)] + dtb[h]);
        dtraw_[size_t(t * H + h)] = r;
        dt_[size_t(t * H + h)] = std::clamp(r, T(c_.dt_limit_min), T(c_.dt_limit_max));
      }
    const int64_t ns = int64_t(cu_.size()) - 1;
    chunk0_.assign(1, 0);
    for (int64_t i = 0; i < ns; ++i) chunk0_.push_back(chunk0_.back() + (cu_[size_t(i + 1)] - cu_[size_t(i)] + K - 1) / K);
    ck_.resize(size_t(chunk0_.back() * H * P * N));
    ys_.resize(size_t(n_ * DS));
#pragma omp parallel for schedule(dynamic, 1) if (n_ * P * N * H > cpu::kParallelWork)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<T> S(size_t(P * N));
      for (int64_t i = 0; i < ns; ++i) {
        std::fill(S.begin(), S.end(), T(0));
        for (int64_t t = cu_[size_t(i)]; t < cu_[size_t(i + 1)]; ++t) {
          if ((t - cu_[size_t(i)]) % K == 0)
            std::copy(S.begin(), S.end(), ck_.begin() + ((chunk0_[size_t(i)] + (t - cu_[size_t(i)]) / K) * H + h) * P * N);
          advance(S.data(), t, h);
          const T* Cv = xbc_.data() + t * CD + DS + G * N + grp(h) * N;
          for (int64_t q = 0; q < P; ++q) {
            T s = 0;
            for (int64_t m = 0; m < N; ++m) s += S[size_t(q * N + m)] * Cv[m];
            ys_[size_t(t * DS + h * P + q)] = s + Dv(h, q) * xv(t, h, q);
          }
        }
      }
    }
    // Output (§3.4, §3.5): o = [silu(z0) ⊙ x0 | gated norm of y].
    o_.resize(size_t(n_ * (DM + DS)));
    rstd_.resize(size_t(n_ * (DS / gsz())));
    const T* nw = c_.rmsnorm ? p_.value("norm.weight") : nullptr;
    for (int64_t t = 0; t < n_; ++t) {
      const T* u = u_.data() + t * D_in;
      T* o = o_.data() + t * (DM + DS);
      for (int64_t j = 0; j < DM; ++j) o[j] = silu(u[j]) * u[DM + j];
      for (int64_t g0 = 0; g0 < DS; g0 += gsz()) {
        T ss = 0;
        for (int64_t j = g0; j < g0 + gsz(); ++j) {
          const T v = c_.norm_before_gate ? ys_[size_t(t * DS + j)] : ys_[size_t(t * DS + j)] * silu(u[off_z() + j]);
          ss += v * v;
        }
        const T r = c_.rmsnorm ? T(1) / std::sqrt(ss / T(gsz()) + T(c_.norm_eps)) : T(1);
        rstd_[size_t(t * (DS / gsz()) + g0 / gsz())] = r;
        for (int64_t j = g0; j < g0 + gsz(); ++j)
          o[DM + j] = ys_[size_t(t * DS + j)] * r * (nw ? nw[j] : T(1)) * silu(u[off_z() + j]);
      }
    }
    linear_forward<T>(y, o_.data(), p_.value("out_proj.weight"), bias("out_proj.bias"), n_, DM + DS, dm_);
  }

  void backward(const T* dy, T* dx) override {
    const int64_t DO = DM + DS;
    std::vector<T> dO(size_t(n_ * DO)), du(size_t(n_ * D_in), T(0)), dY(size_t(n_ * DS)), dxbc(size_t(n_ * CD), T(0));
    linear_backward<T>(dO.data(), p_.grad("out_proj.weight"), gbias("out_proj.bias"), dy, o_.data(),
                       p_.value("out_proj.weight"), n_, DO, dm_);
    const T* nw = c_.rmsnorm ? p_.value("norm.weight") : nullptr;
    T* gnw = c_.rmsnorm ? p_.grad("norm.weight") : nullptr;
    for (int64_t t = 0; t < n_; ++t) {
      const T* u = u_.data() + t * D_in;
      T* d = du.data() + t * D_in;
      const T* g = dO.data() + t * DO;
      for (int64_t j = 0; j < DM; ++j) d[j] = g[j] * u[DM + j] * silu_grad(u[j]), d[DM + j] = g[j] * silu(u[j]);
      // Gated norm: out = v·r ⊙ w (⊙ silu(z) after the norm when norm_before_gate), v = y (⊙ silu(z)).
      for (int64_t g0 = 0; g0 < DS; g0 += gsz()) {
        const T r = rstd_[size_t(t * (DS / gsz()) + g0 / gsz())];
        T dot = 0;
        std::vector<T> dv(static_cast<size_t>(gsz()));
        for (int64_t j = g0; j < g0 + gsz(); ++j) {
          const T yv = ys_[size_t(t * DS + j)], z = u[off_z() + j], sz = silu(z), w = nw ? nw[j] : T(1);
          const T go = g[DM + j];
          const T v = c_.norm_before_gate ? yv : yv * sz;
          const T dn = c_.norm_before_gate ? go * sz : go;  // gradient of v·r ⊙ w
          if (c_.norm_before_gate) d[off_z() + j] += go * yv * r * w * silu_grad(z);
          if (gnw) gnw[j] += dn * v * r;
          dv[size_t(j - g0)] = dn * w;
          dot += dn * w * v;
        }
        for (int64_t j = g0; j < g0 + gsz(); ++j) {
          const T yv = ys_[size_t(t * DS + j)], z = u[off_z() + j], sz = silu(z);
          const T v = c_.norm_before_gate ? yv : yv * sz;
          const T dvj = c_.rmsnorm ? r * (dv[size_t(j - g0)] - v * r * r * dot / T(gsz())) : dv[size_t(j - g0)];
          if (c_.norm_before_gate) {
            dY[size_t(t * DS + j)] = dvj;
          } else {
            dY[size_t(t * DS + j)] = dvj * sz;
            d[off_z() + j] += dvj * yv * silu_grad(z);
          }
        }
      }
    }
    // The recurrence's adjoint per head; dC, dB of a head go to per-head buffers, summed per group below.
    std::vector<T> dBh(size_t(n_ * H * N)), dCh(dBh.size());
    const T* Alog = p_.value("A_log");
    T *gAlog = p_.grad("A_log"), *gD = p_.grad("D"), *gdtb = p_.grad("dt_bias");
    const T* dtb = p_.value("dt_bias");
    const int64_t ns = int64_t(cu_.size()) - 1;
#pragma omp parallel for schedule(dynamic, 1) if (n_ * P * N * H > cpu::kParallelWork)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<T> S(size_t((K + 1) * P * N)), Gm(size_t(P * N));
      const T A = -std::exp(Alog[h]);
      for (int64_t i = 0; i < ns; ++i) {
        const int64_t start = cu_[size_t(i)], end = cu_[size_t(i + 1)];
        std::fill(Gm.begin(), Gm.end(), T(0));
        for (int64_t ci = (end - start + K - 1) / K - 1; ci >= 0; --ci) {
          const int64_t c0 = start + ci * K, c1 = std::min(end, c0 + K);
          const T* ckp = ck_.data() + ((chunk0_[size_t(i)] + ci) * H + h) * P * N;
          std::copy(ckp, ckp + P * N, S.begin());
          for (int64_t t = c0; t < c1; ++t) {
            std::copy(S.begin() + (t - c0) * P * N, S.begin() + (t - c0 + 1) * P * N, S.begin() + (t - c0 + 1) * P * N);
            advance(S.data() + (t - c0 + 1) * P * N, t, h);
          }
          for (int64_t t = c1 - 1; t >= c0; --t) {
            const T* Sp = S.data() + (t - c0) * P * N;
            const T* Sc = Sp + P * N;
            const T* Bv = xbc_.data() + t * CD + DS + grp(h) * N;
            const T* Cv = Bv + G * N;
            const T d = dt_[size_t(t * H + h)], a = std::exp(A * d);
            const T* yg = dY.data() + t * DS + h * P;
            T* dB = dBh.data() + (t * H + h) * N;
            T* dC = dCh.data() + (t * H + h) * N;
            T* dxv = dxbc.data() + t * CD + h * P;
            std::fill(dB, dB + N, T(0));
            std::fill(dC, dC + N, T(0));
            T dd = 0, da = 0;
            for (int64_t q = 0; q < P; ++q) {
              const T xq = xv(t, h, q);
              if (c_.D_has_hdim) gD[h * P + q] += yg[q] * xq;
              else gD[h] += yg[q] * xq;
              dxv[q] += Dv(h, q) * yg[q];
              T gb = 0;
              for (int64_t m = 0; m < N; ++m) {
                dC[m] += Sc[q * N + m] * yg[q];
                T& gm = Gm[size_t(q * N + m)];
                gm += yg[q] * Cv[m];
                da += gm * Sp[q * N + m];
                gb += gm * Bv[m];
                dB[m] += d * gm * xq;
              }
              dd += xq * gb;
              dxv[q] += d * gb;
            }
            for (auto& gm : Gm) gm *= a;
            // decay = exp(A·dt), A = −exp(A_log); dt = clamp(softplus(raw + dt_bias)).
            dd += da * a * A;
            gAlog[h] += da * a * d * A;
            const T raw = dtraw_[size_t(t * H + h)];
            const bool inside = raw >= T(c_.dt_limit_min) && raw <= T(c_.dt_limit_max);
            const T g = inside ? dd * sigmoid(u_[size_t(t * D_in + off_dt() + h)] + dtb[h]) : T(0);
            du[size_t(t * D_in + off_dt() + h)] = g;
            gdtb[h] += g;
          }
        }
      }
    }
    for (int64_t t = 0; t < n_; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t m = 0; m < N; ++m) {
          dxbc[size_t(t * CD + DS + grp(h) * N + m)] += dBh[size_t((t * H + h) * N + m)];
          dxbc[size_t(t * CD + DS + G * N + grp(h) * N + m)] += dCh[size_t((t * H + h) * N + m)];
        }
    conv1d_silu_backward<T>(du.data() + off_xbc(), D_in, p_.grad("conv1d.weight"), gbias("conv1d.bias"), dxbc.data(),
                            pre_.data(), u_.data() + off_xbc(), p_.value("conv1d.weight"), CD, c_.d_conv, cu_);
    linear_backward<T>(dx, p_.grad("in_proj.weight"), gbias("in_proj.bias"), du.data(), x_.data(),
                       p_.value("in_proj.weight"), n_, dm_, D_in);
  }

 private:
  int64_t off_z() const { return 2 * DM; }
  int64_t off_xbc() const { return 2 * DM + DS; }
  int64_t off_dt() const { return 2 * DM + DS + CD; }
  int64_t gsz() const { return c_.norm_per_group ? DS / G : DS; }
  int64_t grp(int64_t h) const { return h / (H / G); }
  T xv(int64_t t, int64_t h, int64_t q) const { return xbc_[size_t(t * CD + h * P + q)]; }
  T Dv(int64_t h, int64_t q) const { return p_.value("D")[c_.D_has_hdim ? h * P + q : h]; }
  const T* bias(const char* name) const { return p_.has(name) ? p_.value(name) : nullptr; }
  T* gbias(const char* name) const { return p_.has(name) ? p_.grad(name) : nullptr; }

  // S ← exp(A dt) S + dt x Bᵀ for head h at token t.
  void advance(T* S, int64_t t, int64_t h) const {
    const T d = dt_[size_t(t * H + h)], a = std::exp(-std::exp(p_.value("A_log")[h]) * d);
    const T* Bv = xbc_.data() + t * CD + DS + grp(h) * N;
    for (int64_t q = 0; q < P; ++q) {
      const T dxq = d * xv(t, h, q);
      for (int64_t m = 0; m < N; ++m) S[q * N + m] = a * S[q * N + m] + dxq * Bv[m];
    }
  }

  Mamba2Config c_;
  int64_t dm_, n_ = 0, H, G, P, N, DS, DM, CD, D_in, K;
  ParamRefs<T> p_;
  std::vector<int64_t> cu_, chunk0_;
  std::vector<T> x_, u_, xbc_, pre_, dt_, dtraw_, ck_, ys_, o_, rstd_;
};

}  // namespace

template <class T>
std::unique_ptr<GradLayer<T>> make_mamba2_grad(const Mamba2Config& c, int64_t d_model, ParamRefs<T> p) {
  return std::make_unique<Mamba2Grad<T>>(c, d_model, std::move(p));
}
template std::unique_ptr<GradLayer<float>> make_mamba2_grad(const Mamba2Config&, int64_t, ParamRefs<float>);
template std::unique_ptr<GradLayer<double>> make_mamba2_grad(const Mamba2Config&, int64_t, ParamRefs<double>);

}  // namespace m3::train
