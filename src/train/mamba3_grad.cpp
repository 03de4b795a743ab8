// Mamba-3 forward/backward for training (spec/mamba3.md §3 preprocessing, §4 recurrence and
// output, §5 state layout, §7 packed sequences). Work is split over heads: everything below the
// in_proj split is per head except B̂/Ĉ (shared by the heads of a group) and the angle rates
// (shared by all heads), whose gradients are summed over heads after the parallel part.
//
// Adjoint of one step H_t = α H_{t−1} + β Σ_r v'_r k'_rᵀ + γ Σ_r v_r k̃_rᵀ, y_r = H_t q̃_r + D v_r
// (v', k' the previous token's), with G = dL/dH_t (including every later step's contribution):
//   G += Σ_r dy_r q̃_rᵀ;  dq̃_r = H_tᵀ dy_r;  dα = ⟨G, H_{t−1}⟩;  dβ = Σ_r v'_rᵀ G k'_r;
//   dγ = Σ_r v_rᵀ G k̃_r;  dv_r += γ G k̃_r + D dy_r;  dk̃_r += γ Gᵀ v_r;
//   dv'_r += β G k'_r;  dk'_r += β Gᵀ v'_r;  then G ← α G for H_{t−1}.
#include "train/mamba3_grad.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "cpu/ops.h"
#include "train/grad_ops.h"

namespace m3::train {

template <class T>
struct Mamba3Grad<T>::Impl {
  Mamba3Config c;
  int64_t d_model;
  ParamRefs<T> p;
  int64_t H, G, P, N, S, R, DI, D_in, C;
  std::vector<T> ones;  // stands in for absent MIMO factors and the out-proj norm weight
  const T *W_in, *W_out, *dt_bias, *B_bias, *C_bias, *B_nw, *C_nw, *Dp, *mx, *mz, *mo, *nw;

  // Saved by forward.
  std::vector<int64_t> cu, chunk0;  // chunk0[i]: index of sequence i's first chunk checkpoint
  int64_t n = 0;
  std::vector<T> x_in, u, kn, krs, qn, qrs, dt, A, adt, lam, omega, theta, qr, kr, y, yrs, o, ck;

  Impl(const Mamba3Config& cfg, int64_t dm, ParamRefs<T> refs) : c(cfg), d_model(dm), p(std::move(refs)) {
    H = c.nheads, G = c.ngroups, P = c.headdim, N = c.d_state, S = c.n_angles, R = c.rank(), DI = c.d_inner;
    D_in = c.in_proj_dim(), C = c.chunk_size;
    ones.assign(size_t(std::max(H * R * P, DI)), T(1));
    W_in = p.value("in_proj.weight"), W_out = p.value("out_proj.weight"), dt_bias = p.value("dt_bias");
    B_bias = p.value("B_bias"), C_bias = p.value("C_bias"), B_nw = p.value("B_norm.weight");
    C_nw = p.value("C_norm.weight"), Dp = p.value("D");
    mx = c.is_mimo ? p.value("mimo_x") : ones.data();
    mz = c.is_mimo ? p.value("mimo_z") : ones.data();
    mo = c.is_mimo ? p.value("mimo_o") : ones.data();
    nw = c.is_outproj_norm ? p.value("norm.weight") : ones.data();
  }

  int64_t off_x() const { return DI; }
  int64_t off_B() const { return 2 * DI; }
  int64_t off_C() const { return 2 * DI + R * G * N; }
  int64_t off_dt() const { return 2 * DI + 2 * R * G * N; }
  int64_t off_A() const { return off_dt() + H; }
  int64_t off_trap() const { return off_A() + H; }
  int64_t off_angle() const { return off_trap() + H; }
  int64_t state_size() const { return H * S + H * P * N + R * H * N + H * P; }
  // Offsets of the state's buffers (spec §5 order) for head h.
  int64_t st_angle(int64_t h) const { return h * S; }
  int64_t st_ssm(int64_t h) const { return H * S + h * P * N; }
  int64_t st_k(int64_t r, int64_t h) const { return H * S + H * P * N + (r * H + h) * N; }
  int64_t st_v(int64_t h) const { return H * S + H * P * N + R * H * N + h * P; }

  // Rotation pairs (spec §3): SISO (2j, 2j+1), MIMO (j, j + N/2).
  int64_t pair0(int64_t j) const { return c.is_mimo ? j : 2 * j; }
  int64_t pair1(int64_t j) const { return c.is_mimo ? j + N / 2 : 2 * j + 1; }

  // Value of token t, rank r, head h: x_t[h] ⊙ mimo_x[h, r].
  T value(int64_t t, int64_t r, int64_t h, int64_t q) const {
    return u[size_t(t * D_in + off_x() + h * P + q)] * mx[(h * R + r) * P + q];
  }

  // One step of §4 for head h at token t of a sequence starting at `start`: Hs ← α Hs + β Σ v'k'ᵀ
  // + γ Σ v k̃ᵀ, the previous token's v', k' from the carried-in state st at the start.
  void advance(T* Hs, int64_t t, int64_t start, int64_t h, const T* st) const {
    const T a = std::exp(adt[t * H + h]), l = lam[t * H + h], d = dt[t * H + h];
    const T beta = (T(1) - l) * d * a, gamma = l * d;
    for (int64_t i = 0; i < P * N; ++i) Hs[i] *= a;
    for (int64_t r = 0; r < R; ++r) {
      const T* k = kr.data() + ((t * H + h) * R + r) * N;
      for (int64_t q = 0; q < P; ++q) {
        const T vq = gamma * value(t, r, h, q);
        for (int64_t m = 0; m < N; ++m) Hs[q * N + m] += vq * k[m];
      }
      if (t > start) {
        const T* kp = kr.data() + (((t - 1) * H + h) * R + r) * N;
        for (int64_t q = 0; q < P; ++q) {
          const T vq = beta * value(t - 1, r, h, q);
          for (int64_t m = 0; m < N; ++m) Hs[q * N + m] += vq * kp[m];
        }
      } else if (st) {
        const T* kp = st + st_k(r, h);
        for (int64_t q = 0; q < P; ++q) {
          const T vq = beta * st[st_v(h) + q] * mx[(h * R + r) * P + q];
          for (int64_t m = 0; m < N; ++m) Hs[q * N + m] += vq * kp[m];
        }
      }
    }
  }

  void forward(const T* x, T* out, const std::vector<int64_t>& cu_in, const std::vector<T>& carried_in,
               std::vector<T>& carried_out) {
    cu = cu_in;
    n = cu.back();
    const int64_t ns = int64_t(cu.size()) - 1;
    check(carried_in.empty() || int64_t(carried_in.size()) == ns * state_size(),
          "Mamba-3 training: carried-in state has the wrong size");
    x_in.assign(x, x + n * d_model);
    u.resize(size_t(n * D_in));
    linear_forward<T>(u.data(), x, W_in, nullptr, n, d_model, D_in);
    // §3: B̂, Ĉ (RMSNorm over N per rank and group), dt, A, ADT, λ, angle rates.
    const int64_t nbc = R * G;
    kn.resize(size_t(n * nbc * N)), qn.resize(kn.size()), krs.resize(size_t(n * nbc)), qrs.resize(krs.size());
    dt.resize(size_t(n * H)), A.resize(dt.size()), adt.resize(dt.size()), lam.resize(dt.size());
    omega.resize(size_t(n * S));
    for (int64_t t = 0; t < n; ++t) {
      const T* row = u.data() + t * D_in;
      rmsnorm_forward<T>(kn.data() + t * nbc * N, krs.data() + t * nbc, row + off_B(), B_nw, nbc, N, T(1e-5));
      rmsnorm_forward<T>(qn.data() + t * nbc * N, qrs.data() + t * nbc, row + off_C(), C_nw, nbc, N, T(1e-5));
      for (int64_t h = 0; h < H; ++h) {
        const T d = softplus(row[off_dt() + h] + dt_bias[h]);
        const T a = row[off_A() + h];
        const T Ah = std::min(-(a >= 0 ? T(1) + a : T(1) / (T(1) - a)), -T(c.A_floor));
        dt[t * H + h] = d, A[t * H + h] = Ah, adt[t * H + h] = Ah * d, lam[t * H + h] = sigmoid(row[off_trap() + h]);
      }
      for (int64_t j = 0; j < S; ++j) omega[t * S + j] = std::numbers::pi_v<T> * std::tanh(row[off_angle() + j]);
    }
    chunk0.resize(size_t(ns + 1));
    chunk0[0] = 0;
    for (int64_t i = 0; i < ns; ++i) chunk0[size_t(i + 1)] = chunk0[size_t(i)] + (cu[size_t(i + 1)] - cu[size_t(i)] + C - 1) / C;
    ck.resize(size_t(chunk0[size_t(ns)] * H * P * N));
    theta.resize(size_t(n * H * S)), qr.resize(size_t(n * H * R * N)), kr.resize(qr.size());
    y.resize(size_t(n * R * DI));
    carried_out.resize(size_t(ns * state_size()));
#pragma omp parallel for schedule(dynamic, 1) if (n * R * P * N * H > cpu::kParallelWork)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      std::vector<T> Hs(size_t(P * N)), th(static_cast<size_t>(S));
      for (int64_t i = 0; i < ns; ++i) {
        const T* st = carried_in.empty() ? nullptr : carried_in.data() + i * state_size();
        T* so = carried_out.data() + i * state_size();
        if (st) {
          std::copy(st + st_ssm(h), st + st_ssm(h) + P * N, Hs.begin());
          std::copy(st + st_angle(h), st + st_angle(h) + S, th.begin());
        } else {
          std::fill(Hs.begin(), Hs.end(), T(0));
          std::fill(th.begin(), th.end(), T(0));
        }
        const int64_t start = cu[size_t(i)], end = cu[size_t(i + 1)];
        for (int64_t t = start; t < end; ++t) {
          // θ_t = θ_{t−1} + ω_t dt_t, kept in [0, 2π) as the reference does; rotated q̃, k̃.
          const T d = dt[t * H + h];
          for (int64_t j = 0; j < S; ++j) {
            T v = th[size_t(j)] + omega[t * S + j] * d;
            v -= T(2) * std::numbers::pi_v<T> * std::floor(v / (T(2) * std::numbers::pi_v<T>));
            th[size_t(j)] = v;
            theta[(t * H + h) * S + j] = v;
          }
          for (int64_t r = 0; r < R; ++r) {
            T* q = qr.data() + ((t * H + h) * R + r) * N;
            T* k = kr.data() + ((t * H + h) * R + r) * N;
            const T* qs = qn.data() + (t * nbc + r * G + g) * N;
            const T* ks = kn.data() + (t * nbc + r * G + g) * N;
            for (int64_t m = 0; m < N; ++m) q[m] = qs[m] + C_bias[(h * R + r) * N + m], k[m] = ks[m] + B_bias[(h * R + r) * N + m];
            for (int64_t j = 0; j < S; ++j) {
              const T cs = std::cos(th[size_t(j)]), sn = std::sin(th[size_t(j)]);
              const int64_t a0 = pair0(j), a1 = pair1(j);
              const T qa = q[a0], qb = q[a1], ka = k[a0], kb = k[a1];
              q[a0] = qa * cs - qb * sn, q[a1] = qa * sn + qb * cs;
              k[a0] = ka * cs - kb * sn, k[a1] = ka * sn + kb * cs;
            }
          }
          if ((t - start) % C == 0)
            std::copy(Hs.begin(), Hs.end(), ck.begin() + ((chunk0[size_t(i)] + (t - start) / C) * H + h) * P * N);
          advance(Hs.data(), t, start, h, st);
          for (int64_t r = 0; r < R; ++r) {
            const T* q = qr.data() + ((t * H + h) * R + r) * N;
            T* yr = y.data() + (t * R + r) * DI + h * P;
            for (int64_t pq = 0; pq < P; ++pq) {
              T s = 0;
              for (int64_t m = 0; m < N; ++m) s += Hs[size_t(pq * N + m)] * q[m];
              yr[pq] = s + Dp[h] * value(t, r, h, pq);
            }
          }
        }
        // State after the last token (spec §5): θ, H, k̃ and the unprojected x of the last token.
        std::copy(th.begin(), th.end(), so + st_angle(h));
        std::copy(Hs.begin(), Hs.end(), so + st_ssm(h));
        for (int64_t r = 0; r < R; ++r)
          for (int64_t m = 0; m < N; ++m)
            so[st_k(r, h) + m] = end > start ? kr[size_t(((end - 1) * H + h) * R + r) * size_t(N) + size_t(m)]
                                             : (st ? st[st_k(r, h) + m] : T(0));
        for (int64_t q = 0; q < P; ++q)
          so[st_v(h) + q] = end > start ? u[size_t((end - 1) * D_in + off_x() + h * P + q)] : (st ? st[st_v(h) + q] : T(0));
      }
    }
    // §4 output: o = Σ_r mimo_o ⊙ (n_r ⊙ silu(z ⊙ mimo_z)), n_r = y_r or its per-head RMSNorm ⊙ w.
    o.assign(size_t(n * DI), T(0));
    yrs.resize(size_t(n * R * H));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const T* yr = y.data() + (t * R + r) * DI + h * P;
          T scale = 1;
          if (c.is_outproj_norm) {
            T ss = 0;
            for (int64_t q = 0; q < P; ++q) ss += yr[q] * yr[q];
            scale = T(1) / std::sqrt(ss / T(P) + T(1e-5));
          }
          yrs[size_t((t * R + r) * H + h)] = scale;
          const T* z = u.data() + t * D_in + h * P;
          for (int64_t q = 0; q < P; ++q) {
            const int64_t m = (h * R + r) * P + q;
            o[size_t(t * DI + h * P + q)] += mo[m] * yr[q] * scale * nw[h * P + q] * silu(z[q] * mz[m]);
          }
        }
    linear_forward<T>(out, o.data(), W_out, nullptr, n, DI, d_model);
  }

  void backward(const T* dout, T* dx, const std::vector<T>& carried_in, std::vector<T>& d_carried_in) {
    const int64_t ns = int64_t(cu.size()) - 1, nbc = R * G;
    std::vector<T> dO(size_t(n * DI));
    linear_backward<T>(dO.data(), p.grad("out_proj.weight"), nullptr, dout, o.data(), W_out, n, DI, d_model);
    std::vector<T> du(size_t(n * D_in), T(0)), dY(size_t(n * R * DI));
    T* g_mz = c.is_mimo ? p.grad("mimo_z") : nullptr;
    T* g_mo = c.is_mimo ? p.grad("mimo_o") : nullptr;
    T* g_nw = c.is_outproj_norm ? p.grad("norm.weight") : nullptr;
    // Output gate (and norm) backward → dY, dz.
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const T* yr = y.data() + (t * R + r) * DI + h * P;
          T* dyr = dY.data() + (t * R + r) * DI + h * P;
          const T* z = u.data() + t * D_in + h * P;
          T* dz = du.data() + t * D_in + h * P;
          const T scale = yrs[size_t((t * R + r) * H + h)];
          T dot = 0;  // Σ_q dn_q · ŷ_q for the norm's backward
          for (int64_t q = 0; q < P; ++q) {
            const int64_t m = (h * R + r) * P + q;
            const T go = dO[size_t(t * DI + h * P + q)];
            const T zr = z[q] * mz[m], nq = yr[q] * scale * nw[h * P + q];
            const T dzr = go * mo[m] * nq * silu_grad(zr);
            dz[q] += dzr * mz[m];
            if (g_mz) g_mz[m] += dzr * z[q];
            if (g_mo) g_mo[m] += go * nq * silu(zr);
            const T dn = go * mo[m] * silu(zr);
            if (g_nw) g_nw[h * P + q] += dn * yr[q] * scale;
            dyr[q] = dn * nw[h * P + q];
            dot += dyr[q] * yr[q] * scale;
          }
          if (c.is_outproj_norm)
            for (int64_t q = 0; q < P; ++q) dyr[q] = scale * (dyr[q] - yr[q] * scale * dot / T(P));
        }
    // The recurrence's adjoint, per head.
    std::vector<T> dqh(size_t(n * H * R * N)), dkh(dqh.size()), domega(size_t(n * H * S));
    if (!carried_in.empty()) d_carried_in.assign(carried_in.size(), T(0));
    T *g_D = p.grad("D"), *g_dtb = p.grad("dt_bias"), *g_Bb = p.grad("B_bias"), *g_Cb = p.grad("C_bias");
    T* g_mx = c.is_mimo ? p.grad("mimo_x") : nullptr;
#pragma omp parallel for schedule(dynamic, 1) if (n * R * P * N * H > cpu::kParallelWork)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<T> Hs(size_t((C + 1) * P * N)), Gm(size_t(P * N)), pdk(size_t(R * N)), pdv(size_t(R * P));
      std::vector<T> dk(size_t(R * N)), dv(size_t(R * P)), dq(size_t(R * N)), dth(static_cast<size_t>(S));
      std::vector<T> vcur(size_t(R * P)), vprev(size_t(R * P)), kprev(size_t(R * N));
      for (int64_t i = 0; i < ns; ++i) {
        const T* st = carried_in.empty() ? nullptr : carried_in.data() + i * state_size();
        const int64_t start = cu[size_t(i)], end = cu[size_t(i + 1)];
        std::fill(Gm.begin(), Gm.end(), T(0));
        std::fill(pdk.begin(), pdk.end(), T(0));
        std::fill(pdv.begin(), pdv.end(), T(0));
        std::fill(dth.begin(), dth.end(), T(0));
        const int64_t nch = (end - start + C - 1) / C;
        for (int64_t ci = nch - 1; ci >= 0; --ci) {
          const int64_t c0 = start + ci * C, c1 = std::min(end, c0 + C);
          const T* ckp = ck.data() + ((chunk0[size_t(i)] + ci) * H + h) * P * N;
          std::copy(ckp, ckp + P * N, Hs.begin());
          for (int64_t t = c0; t < c1; ++t) {
            std::copy(Hs.begin() + (t - c0) * P * N, Hs.begin() + (t - c0 + 1) * P * N, Hs.begin() + (t - c0 + 1) * P * N);
            advance(Hs.data() + (t - c0 + 1) * P * N, t, start, h, st);
          }
          for (int64_t t = c1 - 1; t >= c0; --t) {
            const T* Hprev = Hs.data() + (t - c0) * P * N;
            const T* Hcur = Hprev + P * N;
            const T a = std::exp(adt[t * H + h]), l = lam[t * H + h], d = dt[t * H + h];
            const T beta = (T(1) - l) * d * a, gamma = l * d;
            for (int64_t r = 0; r < R; ++r)
              for (int64_t q = 0; q < P; ++q) {
                vcur[size_t(r * P + q)] = value(t, r, h, q);
                vprev[size_t(r * P + q)] = t > start ? value(t - 1, r, h, q)
                                                     : (st ? st[st_v(h) + q] * mx[(h * R + r) * P + q] : T(0));
              }
            for (int64_t r = 0; r < R; ++r)
              for (int64_t m = 0; m < N; ++m)
                kprev[size_t(r * N + m)] = t > start ? kr[size_t((((t - 1) * H + h) * R + r) * N + m)]
                                                     : (st ? st[st_k(r, h) + m] : T(0));
            std::copy(pdk.begin(), pdk.end(), dk.begin());
            std::copy(pdv.begin(), pdv.end(), dv.begin());
            for (int64_t r = 0; r < R; ++r) {
              const T* dyr = dY.data() + (t * R + r) * DI + h * P;
              const T* q = qr.data() + ((t * H + h) * R + r) * N;
              T* dqr = dq.data() + r * N;
              std::fill(dqr, dqr + N, T(0));
              for (int64_t pq = 0; pq < P; ++pq) {
                g_D[h] += dyr[pq] * vcur[size_t(r * P + pq)];
                dv[size_t(r * P + pq)] += Dp[h] * dyr[pq];
                for (int64_t m = 0; m < N; ++m) {
                  dqr[m] += Hcur[pq * N + m] * dyr[pq];
                  Gm[size_t(pq * N + m)] += dyr[pq] * q[m];
                }
              }
            }
            T dalpha = 0, dbeta = 0, dgamma = 0;
            for (int64_t i2 = 0; i2 < P * N; ++i2) dalpha += Gm[size_t(i2)] * Hprev[i2];
            for (int64_t r = 0; r < R; ++r) {
              const T* k = kr.data() + ((t * H + h) * R + r) * N;
              for (int64_t pq = 0; pq < P; ++pq) {
                const T* g = Gm.data() + pq * N;
                T gk = 0, gkp = 0;
                for (int64_t m = 0; m < N; ++m) gk += g[m] * k[m], gkp += g[m] * kprev[size_t(r * N + m)];
                dgamma += vcur[size_t(r * P + pq)] * gk;
                dbeta += vprev[size_t(r * P + pq)] * gkp;
                dv[size_t(r * P + pq)] += gamma * gk;
                pdv[size_t(r * P + pq)] = beta * gkp;
              }
              // Gᵀ v and Gᵀ v' row by row (contiguous in G).
              T* gk_r = dk.data() + r * N;
              T* gkp_r = pdk.data() + r * N;
              std::fill(gkp_r, gkp_r + N, T(0));
              for (int64_t pq = 0; pq < P; ++pq) {
                const T* g = Gm.data() + pq * N;
                const T gv = gamma * vcur[size_t(r * P + pq)], gvp = beta * vprev[size_t(r * P + pq)];
                for (int64_t m = 0; m < N; ++m) gk_r[m] += gv * g[m], gkp_r[m] += gvp * g[m];
              }
            }
            for (auto& gv : Gm) gv *= a;
            // α = exp(ADT), β = (1 − λ)·dt·α, γ = λ·dt, ADT = A·dt.
            const T dadt = dalpha * a + dbeta * beta;
            const T dlam = -d * a * dbeta + d * dgamma;
            T ddt = (T(1) - l) * a * dbeta + l * dgamma + A[t * H + h] * dadt;
            const T dA = d * dadt;
            // Rotation adjoint: for a pair rotated to (a', b'), da = da'·cos + db'·sin,
            // db = −da'·sin + db'·cos, dθ += −da'·b' + db'·a'.
            T* dq_out = dqh.data() + ((t * H + h) * R) * N;
            T* dk_out = dkh.data() + ((t * H + h) * R) * N;
            std::copy(dq.begin(), dq.end(), dq_out);
            std::copy(dk.begin(), dk.end(), dk_out);
            for (int64_t r = 0; r < R; ++r) {
              const T* q = qr.data() + ((t * H + h) * R + r) * N;
              const T* k = kr.data() + ((t * H + h) * R + r) * N;
              T* gq = dq_out + r * N;
              T* gk = dk_out + r * N;
              for (int64_t j = 0; j < S; ++j) {
                const T th = theta[(t * H + h) * S + j], cs = std::cos(th), sn = std::sin(th);
                const int64_t a0 = pair0(j), a1 = pair1(j);
                dth[size_t(j)] += -gq[a0] * q[a1] + gq[a1] * q[a0] - gk[a0] * k[a1] + gk[a1] * k[a0];
                const T qa = gq[a0], qb = gq[a1], ka = gk[a0], kb = gk[a1];
                gq[a0] = qa * cs + qb * sn, gq[a1] = -qa * sn + qb * cs;
                gk[a0] = ka * cs + kb * sn, gk[a1] = -ka * sn + kb * cs;
              }
              for (int64_t m = 0; m < N; ++m) g_Cb[(h * R + r) * N + m] += gq[m], g_Bb[(h * R + r) * N + m] += gk[m];
            }
            // θ_t = θ_{t−1} + ω_t dt_t: dθ carries back unchanged; dω_t = dθ·dt, ddt += dθ·ω.
            for (int64_t j = 0; j < S; ++j) {
              domega[size_t((t * H + h) * S + j)] = dth[size_t(j)] * d;
              ddt += dth[size_t(j)] * omega[t * S + j];
            }
            T* durow = du.data() + t * D_in;
            for (int64_t r = 0; r < R; ++r)
              for (int64_t q = 0; q < P; ++q) {
                const int64_t m = (h * R + r) * P + q;
                durow[off_x() + h * P + q] += dv[size_t(r * P + q)] * mx[m];
                if (g_mx) g_mx[m] += dv[size_t(r * P + q)] * u[size_t(t * D_in + off_x() + h * P + q)];
              }
            const T sdt = sigmoid(u[size_t(t * D_in + off_dt() + h)] + dt_bias[h]);
            durow[off_dt() + h] = ddt * sdt;
            g_dtb[h] += ddt * sdt;
            const T araw = u[size_t(t * D_in + off_A() + h)];
            const T fa = araw >= 0 ? T(1) + araw : T(1) / (T(1) - araw);
            const T dfa = araw >= 0 ? T(1) : T(1) / ((T(1) - araw) * (T(1) - araw));
            durow[off_A() + h] = fa > T(c.A_floor) ? -dA * dfa : T(0);
            durow[off_trap() + h] = dlam * l * (T(1) - l);
          }
        }
        if (st) {
          T* ds = d_carried_in.data() + i * state_size();
          std::copy(Gm.begin(), Gm.end(), ds + st_ssm(h));
          std::copy(dth.begin(), dth.end(), ds + st_angle(h));
          for (int64_t r = 0; r < R; ++r) {
            std::copy(pdk.begin() + r * N, pdk.begin() + (r + 1) * N, ds + st_k(r, h));
            for (int64_t q = 0; q < P; ++q) {
              const int64_t m = (h * R + r) * P + q;
              ds[st_v(h) + q] += pdv[size_t(r * P + q)] * mx[m];
              if (g_mx) g_mx[m] += pdv[size_t(r * P + q)] * st[st_v(h) + q];
            }
          }
        }
      }
    }
    // Per-group and shared parts: B̂/Ĉ summed over the group's heads, then their RMSNorm;
    // angle rates summed over heads, ω = π·tanh(angle).
    std::vector<T> dkn(size_t(nbc * N)), dqn(size_t(nbc * N));
    for (int64_t t = 0; t < n; ++t) {
      std::fill(dkn.begin(), dkn.end(), T(0));
      std::fill(dqn.begin(), dqn.end(), T(0));
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / G);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t m = 0; m < N; ++m) {
            dkn[size_t((r * G + g) * N + m)] += dkh[size_t(((t * H + h) * R + r) * N + m)];
            dqn[size_t((r * G + g) * N + m)] += dqh[size_t(((t * H + h) * R + r) * N + m)];
          }
      }
      T* durow = du.data() + t * D_in;
      const T* row = u.data() + t * D_in;
      rmsnorm_backward<T>(durow + off_B(), p.grad("B_norm.weight"), dkn.data(), row + off_B(), B_nw,
                          krs.data() + t * nbc, nbc, N, false);
      rmsnorm_backward<T>(durow + off_C(), p.grad("C_norm.weight"), dqn.data(), row + off_C(), C_nw,
                          qrs.data() + t * nbc, nbc, N, false);
      for (int64_t j = 0; j < S; ++j) {
        T s = 0;
        for (int64_t h = 0; h < H; ++h) s += domega[size_t((t * H + h) * S + j)];
        const T th = std::tanh(row[off_angle() + j]);
        durow[off_angle() + j] = s * std::numbers::pi_v<T> * (T(1) - th * th);
      }
    }
    linear_backward<T>(dx, p.grad("in_proj.weight"), nullptr, du.data(), x_in.data(), W_in, n, d_model, D_in);
  }
};

template <class T>
Mamba3Grad<T>::Mamba3Grad(const Mamba3Config& c, int64_t d_model, ParamRefs<T> p)
    : impl_(std::make_unique<Impl>(c, d_model, std::move(p))) {}
template <class T>
Mamba3Grad<T>::~Mamba3Grad() = default;
template <class T>
int64_t Mamba3Grad<T>::state_size() const {
  return impl_->state_size();
}
template <class T>
void Mamba3Grad<T>::forward(const T* x, T* y, const std::vector<int64_t>& cu) {
  impl_->forward(x, y, cu, state_in, state_out);
}
template <class T>
void Mamba3Grad<T>::backward(const T* dy, T* dx) {
  impl_->backward(dy, dx, state_in, d_state_in);
}

template class Mamba3Grad<float>;
template class Mamba3Grad<double>;

}  // namespace m3::train
