// Mamba-3 mixer on the CPU (spec/mamba3.md): in_proj, per-token preprocessing (§3), the scan
// (cpu/mamba3_scan), output gating or gated norm and MIMO down-projection (§4), out_proj.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/layers.h"
#include "cpu/mamba3_scan.h"
#include "cpu/ops.h"
#include "m3/error.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

// Buffers of the state, in mamba3_state_spec's order.
enum : size_t { kAngle, kSsm, kK, kV };

class Mamba3Layer final : public Layer {
 public:
  Mamba3Layer(const Mamba3Config& c, int64_t d_model, ParamMap p) : c_(c), d_model_(d_model), p_(std::move(p)) {
    check(c_.rank() <= kMamba3MaxRank, "Mamba-3 MIMO rank " + std::to_string(c_.rank()) +
                                           ": the CPU backend supports ranks up to " + std::to_string(kMamba3MaxRank));
    // Absent per-variant factors point at ones, so that one loop serves every variant (× 1 is exact).
    ones_.assign(size_t(std::max(c_.nheads * c_.rank() * c_.headdim, c_.d_inner)), 1.0f);
    auto get = [&](const char* name) { return p_.at(name).f32(); };
    w_.in_proj = get("in_proj.weight");
    w_.out_proj = get("out_proj.weight");
    w_.dt_bias = get("dt_bias");
    w_.B_bias = get("B_bias");
    w_.C_bias = get("C_bias");
    w_.B_norm = get("B_norm.weight");
    w_.C_norm = get("C_norm.weight");
    w_.D = get("D");
    w_.mimo_x = c_.is_mimo ? get("mimo_x") : nullptr;
    w_.mimo_z = c_.is_mimo ? get("mimo_z") : ones_.data();
    w_.mimo_o = c_.is_mimo ? get("mimo_o") : ones_.data();
    w_.norm = c_.is_outproj_norm ? get("norm.weight") : ones_.data();
  }

  std::string describe() const override { return mamba3_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba3_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    const int64_t T = pk.n_tokens();
    if (T == 0) return;  // no token changes a state (and the empty buffers' data() may be null)
    prepare(x, T);
    scan_states(s);
    mamba3_scan_chunked(dims(), inputs(), pk.cu_seqlens.data(), pk.n_seqs(), st_.data(), ys_.data(),
                        c_.rank() * c_.d_inner, c_.chunk_size);
    finish(y, T);
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    prepare(x, n);
    scan_states(s);
    mamba3_scan_step(dims(), inputs(), n, st_.data(), ys_.data(), c_.rank() * c_.d_inner);
    finish(y, n);
  }

 private:
  Mamba3ScanDims dims() const {
    return {c_.nheads, c_.ngroups, c_.headdim, c_.d_state, c_.n_angles, c_.rank(), c_.is_mimo};
  }
  int64_t off_x() const { return c_.d_inner; }
  int64_t off_B() const { return 2 * c_.d_inner; }
  int64_t bc_dim() const { return c_.d_state * c_.ngroups * c_.rank(); }
  int64_t off_C() const { return off_B() + bc_dim(); }
  int64_t off_dt() const { return off_C() + bc_dim(); }
  int64_t off_A() const { return off_dt() + c_.nheads; }
  int64_t off_trap() const { return off_A() + c_.nheads; }
  int64_t off_angle() const { return off_trap() + c_.nheads; }

  // in_proj, RMSNorm of B and C per (rank, group), dt = softplus(dd_dt + dt_bias) and
  // ADT = A·dt with A = min(−f(dd_A), −A_floor), f the heavy-tail activation (spec §3).
  void prepare(const float* x, int64_t T) {
    const int64_t D_in = c_.in_proj_dim(), H = c_.nheads, N = c_.d_state;
    zx_.resize(size_t(T * D_in));
    linear_fwd(zx_.data(), x, w_.in_proj, nullptr, T, d_model_, D_in);
    kn_.resize(size_t(T * bc_dim()));
    qn_.resize(size_t(T * bc_dim()));
    dt_.resize(size_t(T * H));
    adt_.resize(size_t(T * H));
    ys_.resize(size_t(T * c_.rank() * c_.d_inner));
    const int64_t nbc = bc_dim() / N;
#pragma omp parallel for if (T > 16)
    for (int64_t t = 0; t < T; ++t) {
      const float* row = zx_.data() + t * D_in;
      rmsnorm_fwd(kn_.data() + t * bc_dim(), row + off_B(), w_.B_norm, nbc, N, 1e-5f);
      rmsnorm_fwd(qn_.data() + t * bc_dim(), row + off_C(), w_.C_norm, nbc, N, 1e-5f);
      for (int64_t h = 0; h < H; ++h) {
        const float dt = softplus_approx(row[off_dt() + h] + w_.dt_bias[h]);
        const float a = row[off_A() + h];
        const float A = std::min(-(a >= 0 ? 1.0f + a : 1.0f / (1.0f - a)), -float(c_.A_floor));
        dt_[t * H + h] = dt;
        adt_[t * H + h] = A * dt;
      }
    }
  }

  Mamba3ScanInputs inputs() const {
    const int64_t D_in = c_.in_proj_dim(), H = c_.nheads;
    Mamba3ScanInputs in{};
    in.q = qn_.data();
    in.k = kn_.data();
    in.qk_ld = bc_dim();
    in.q_bias = w_.C_bias;
    in.k_bias = w_.B_bias;
    in.x = zx_.data() + off_x();
    in.x_ld = D_in;
    in.mimo_x = w_.mimo_x;
    in.adt = {adt_.data(), H, 1};
    in.dt = {dt_.data(), H, 1};
    in.trap = {zx_.data() + off_trap(), D_in, 1};
    in.angle = zx_.data() + off_angle();
    in.angle_ld = D_in;
    in.angle_hs = 0;  // one set of angle rates per token, shared by all heads
    in.D = w_.D;
    return in;
  }

  void scan_states(const StateBatch& s) {
    st_.resize(size_t(s.n));
    for (int64_t i = 0; i < s.n; ++i) st_[size_t(i)] = {s.at(kAngle, i), s.at(kSsm, i), s.at(kK, i), s.at(kV, i)};
  }

  // o = y ⊙ silu(z) or RMSNorm_P(y)·w ⊙ silu(z); MIMO: per rank with z ⊙ mimo_z[r], summed with
  // weights mimo_o[r] (spec §4); then out_proj.
  void finish(float* y, int64_t T) {
    const int64_t D_in = c_.in_proj_dim(), H = c_.nheads, P = c_.headdim, R = c_.rank(), DI = c_.d_inner;
    o_.resize(size_t(T * DI));
    const float *nw = w_.norm, *mz = w_.mimo_z, *mo = w_.mimo_o;
#pragma omp parallel for if (T > 16)
    for (int64_t t = 0; t < T; ++t) {
      const float* z = zx_.data() + t * D_in;
      float* o = o_.data() + t * DI;
      std::fill(o, o + DI, 0.0f);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const float* yr = ys_.data() + t * R * DI + (r * H + h) * P;
          float scale = 1.0f;
          if (c_.is_outproj_norm) {
            float ss = 0;
#pragma omp simd reduction(+ : ss)
            for (int64_t p = 0; p < P; ++p) ss += yr[p] * yr[p];
            scale = 1.0f / std::sqrt(ss / float(P) + 1e-5f);
          }
          const int64_t i0 = h * P, m0 = (h * R + r) * P;
#pragma omp simd
          for (int64_t p = 0; p < P; ++p)
            o[i0 + p] += mo[m0 + p] * (yr[p] * scale * nw[i0 + p]) * silu(z[i0 + p] * mz[m0 + p]);
        }
    }
    linear_fwd(y, o_.data(), w_.out_proj, nullptr, T, DI, d_model_);
  }

  Mamba3Config c_;
  int64_t d_model_;
  ParamMap p_;
  std::vector<float> ones_;
  struct {
    const float *in_proj, *out_proj, *dt_bias, *B_bias, *C_bias, *B_norm, *C_norm, *D;
    const float *mimo_x, *mimo_z, *mimo_o, *norm;
  } w_;  // p_'s data, looked up once
  std::vector<float> zx_, kn_, qn_, dt_, adt_, ys_, o_;  // scratch, reused across calls
  std::vector<Mamba3ScanState> st_;
};

}  // namespace

std::unique_ptr<Layer> make_mamba3(const Mamba3Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba3Layer>(c, d_model, std::move(p));
}

}  // namespace m3::cpu
