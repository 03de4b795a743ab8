// Mamba-1 mixer on the device (spec/mamba1.md §3), the same pipeline as cpu/mamba1_layer.cpp:
// in_proj → [x | z]; u = silu(causal conv1d(x)) with each sequence's conv window;
// x_proj(u) → [δ | B | C] (FalconMamba, §5: each then through a weightless RMSNorm);
// dt_proj(δ) (+ bias); the selective scan (cuda/selective_scan: Δ's softplus, the recurrence,
// y = Σ h C + D u); y ⊙ silu(z); out_proj. Decode is the same pipeline over one token per sequence.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/conv1d.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/selective_scan.h"
#include "cuda/weights.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

class Mamba1Layer final : public Layer {
 public:
  Mamba1Layer(Context& ctx, const Mamba1Config& c, int64_t d_model, const ParamMap& p)
      : ctx_(ctx), c_(c), d_model_(d_model) {
    const auto f32_or_null = [&](const char* name) { return p.count(name) ? upload_f32(ctx, p.at(name)) : nullptr; };
    in_proj_ = upload_matrix(ctx, p.at("in_proj.weight"));
    in_bias_ = f32_or_null("in_proj.bias");
    conv_w_ = upload_f32(ctx, p.at("conv1d.weight"));
    conv_b_ = f32_or_null("conv1d.bias");
    x_proj_ = upload_matrix(ctx, p.at("x_proj.weight"));
    dt_proj_ = upload_matrix(ctx, p.at("dt_proj.weight"));
    dt_bias_ = upload_f32(ctx, p.at("dt_proj.bias"));
    // A = −exp(A_log) is constant while the layer lives.
    const Tensor& a_log = p.at("A_log");
    Tensor A = Tensor::zeros(DType::F32, a_log.shape);
    for (int64_t i = 0; i < A.numel(); ++i) A.f32()[i] = -std::exp(a_log.f32()[i]);
    A_ = upload_f32(ctx, A);
    D_ = upload_f32(ctx, p.at("D"));
    out_proj_ = upload_matrix(ctx, p.at("out_proj.weight"));
    out_bias_ = f32_or_null("out_proj.bias");
    if (c_.bcdt_rmsnorm && c_.bcdt_norm_weight) {  // Jamba's norms have weights
      w_dt_ = upload_f32(ctx, p.at("dt_layernorm.weight"));
      w_b_ = upload_f32(ctx, p.at("b_layernorm.weight"));
      w_c_ = upload_f32(ctx, p.at("c_layernorm.weight"));
    } else if (c_.bcdt_rmsnorm) {  // FalconMamba's have none: rmsnorm_fwd with a weight of ones
      Tensor ones = Tensor::zeros(DType::F32, {std::max(c_.dt_rank, c_.d_state)});
      std::fill_n(ones.f32(), ones.numel(), 1.0f);
      w_dt_ = w_b_ = w_c_ = upload_f32(ctx, ones);
    }
  }

  // The CPU layer's line, character for character.
  std::string describe() const override { return mamba1_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba1_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    int64_t max_len = 0;
    for (int64_t i = 0; i < pk.n_seqs(); ++i) max_len = std::max(max_len, pk.len(i));
    run(x, y, pk.n_tokens(), pk.cu_dev, pk.n_seqs(), max_len, s);
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    run(x, y, n, step_cu_.get(ctx_, n), n, 1, s);
  }

 private:
  // T tokens of n_seqs sequences (rows cu[i]..cu[i+1], device offsets), the longest max_len;
  // state buffers s.buf[0] = conv [d_inner, W], s.buf[1] = ssm [d_inner, N] (model/specs.h).
  void run(const float* x, float* y, int64_t T, const int64_t* cu, int64_t n_seqs, int64_t max_len,
           const StateBatch& s) {
    if (T == 0) return;
    const int64_t DI = c_.d_inner, N = c_.d_state, R = c_.dt_rank, XBC = R + 2 * N;
    // xz: [T, 2·DI], x in the first half, z in the second.
    float* xz = xz_.get(ctx_, size_t(T * 2 * DI));
    linear_fwd(ctx_, xz, x, in_proj_, in_bias_.get(), T, d_model_, 2 * DI);
    float* u = u_.get(ctx_, size_t(T * DI));
    causal_conv1d_fwd(ctx_, u, DI, xz, 2 * DI, cu, n_seqs, max_len, DI, conv_w_.get(), conv_b_.get(), c_.d_conv,
                      s.buf[0], s.slot_dev, s.stride[0], true);
    // dbc: [T, R + 2N] = [δ | B | C]; delta: [T, DI] = dt_proj(δ) + bias (softplus in the scan).
    float* dbc = dbc_.get(ctx_, size_t(T * XBC));
    linear_fwd(ctx_, dbc, u, x_proj_, nullptr, T, DI, XBC);
    if (c_.bcdt_rmsnorm) {
      const float eps = float(c_.bcdt_rms_eps);
      rmsnorm_fwd(ctx_, dbc, dbc, w_dt_.get(), T, R, eps, XBC, XBC);
      rmsnorm_fwd(ctx_, dbc + R, dbc + R, w_b_.get(), T, N, eps, XBC, XBC);
      rmsnorm_fwd(ctx_, dbc + R + N, dbc + R + N, w_c_.get(), T, N, eps, XBC, XBC);
    }
    float* delta = delta_.get(ctx_, size_t(T * DI));
    linear_fwd(ctx_, delta, dbc, dt_proj_, dt_bias_.get(), T, R, DI, XBC);
    const SelectiveScanInputs in{.u = u, .u_ld = DI, .delta = delta, .delta_ld = DI, .B = dbc + R, .C = dbc + R + N,
                                 .bc_ld = XBC, .A = A_.get(), .D = D_.get()};
    float* ys = ys_.get(ctx_, size_t(T * DI));
    selective_scan(ctx_, DI, N, in, cu, n_seqs, s.buf[1], s.slot_dev, s.stride[1], ys, DI);
    float* g = g_.get(ctx_, size_t(T * DI));
    silu_gate_fwd(ctx_, g, ys, xz + DI, T, DI, DI, 2 * DI, DI);
    linear_fwd(ctx_, y, g, out_proj_, out_bias_.get(), T, DI, d_model_);
  }

  Context& ctx_;
  Mamba1Config c_;
  int64_t d_model_;
  Matrix in_proj_, x_proj_, dt_proj_, out_proj_;
  std::shared_ptr<float> in_bias_, conv_w_, conv_b_, dt_bias_, A_, D_, out_bias_;  // null: absent
  std::shared_ptr<float> w_dt_, w_b_, w_c_;  // the δ, B, C norms' weights (ones for FalconMamba)
  // [T, 2·DI], [T, DI], [T, R + 2N], [T, DI], [T, DI], [T, DI]
  Scratch<float> xz_, u_, dbc_, delta_, ys_, g_;
  OneTokenOffsets step_cu_;
};

}  // namespace

std::unique_ptr<Layer> make_mamba1(Context& ctx, const Mamba1Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba1Layer>(ctx, c, d_model, p);
}

}  // namespace m3::cuda
