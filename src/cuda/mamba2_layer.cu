// Mamba-2 mixer on the device (spec/mamba2.md §2–§4), the same pipeline as cpu/mamba2_layer.cpp:
// in_proj → [z0 | x0 | z | xBC | dt]; [x | B | C] = silu(causal conv1d(xBC)) with each sequence's
// conv window; the scan (cuda/ssd_scan: dt's softplus and clamp, the recurrence, y = S C + D x);
// gated RMSNorm per group (over all of d_ssm for Hugging Face checkpoints, §5), or y ⊙ silu(z);
// the d_mlp branch silu(z0) ⊙ x0 in front; out_proj. Decode is the same pipeline over one token
// per sequence. Prefill under bf16 runs the scan on tensor cores (cuda/ssd_chunk_scan_bf16.h)
// where it supports the dims.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/conv1d.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/ssd_chunk_scan_bf16.h"
#include "cuda/ssd_scan.h"
#include "cuda/weights.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

class Mamba2Layer final : public Layer {
 public:
  Mamba2Layer(Context& ctx, const Mamba2Config& c, int64_t d_model, const ParamMap& p)
      : ctx_(ctx), c_(c), d_model_(d_model) {
    const auto f32_or_null = [&](const char* name) { return p.count(name) ? upload_f32(ctx, p.at(name)) : nullptr; };
    in_proj_ = upload_matrix(ctx, p.at("in_proj.weight"));
    in_bias_ = f32_or_null("in_proj.bias");
    conv_w_ = upload_f32(ctx, p.at("conv1d.weight"));
    conv_b_ = f32_or_null("conv1d.bias");
    dt_bias_ = upload_f32(ctx, p.at("dt_bias"));
    // A = −exp(A_log) is constant while the layer lives (spec §3.2).
    const Tensor& a_log = p.at("A_log");
    Tensor A = Tensor::zeros(DType::F32, a_log.shape);
    for (int64_t i = 0; i < A.numel(); ++i) A.f32()[i] = -std::exp(a_log.f32()[i]);
    A_ = upload_f32(ctx, A);
    D_ = upload_f32(ctx, p.at("D"));
    norm_w_ = f32_or_null("norm.weight");
    out_proj_ = upload_matrix(ctx, p.at("out_proj.weight"));
    out_bias_ = f32_or_null("out_proj.bias");
    bf16_scan_ = ctx.precision == Precision::BF16 && ssd_chunk_scan_bf16_supported(dims(), c_.D_has_hdim);
  }

  // The CPU layer's line, character for character.
  std::string describe() const override { return mamba2_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba2_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    int64_t max_len = 0;
    int32_t max_slot = 0;
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      max_len = std::max(max_len, pk.len(i));
      max_slot = std::max(max_slot, s.slot[i]);
    }
    run(x, y, pk.n_tokens(), pk.cu_dev, pk.n_seqs(), max_len, s, bf16_scan_ ? max_slot : -1);
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    run(x, y, n, step_cu_.get(ctx_, n), n, 1, s, -1);
  }

 private:
  // Column offsets in the in_proj output (spec §2).
  int64_t off_x0() const { return c_.d_mlp(); }
  int64_t off_z() const { return 2 * c_.d_mlp(); }
  int64_t off_xbc() const { return off_z() + c_.d_ssm; }
  int64_t off_dt() const { return off_xbc() + c_.conv_dim(); }

  SsdScanDims dims() const { return {c_.nheads, c_.ngroups, c_.headdim, c_.d_state}; }

  // T tokens of n_seqs sequences (rows cu[i]..cu[i+1], device offsets), the longest max_len;
  // state buffers s.buf[0] = conv [conv_dim, W], s.buf[1] = ssm [H, P, N] (model/specs.h).
  // tensor_core_max_slot ≥ 0: the scan on tensor cores, the batch's slots at most this.
  void run(const float* x, float* y, int64_t T, const int64_t* cu, int64_t n_seqs, int64_t max_len,
           const StateBatch& s, int32_t tensor_core_max_slot) {
    if (T == 0) return;
    const int64_t D_in = c_.in_proj_dim(), CD = c_.conv_dim(), DI = c_.d_inner, DM = c_.d_mlp(), DS = c_.d_ssm;
    const int64_t GN = c_.ngroups * c_.d_state;
    float* zx = zx_.get(ctx_, size_t(T * D_in));
    linear_fwd(ctx_, zx, x, in_proj_, in_bias_.get(), T, d_model_, D_in);
    float* xbc = xbc_.get(ctx_, size_t(T * CD));
    causal_conv1d_fwd(ctx_, xbc, CD, zx + off_xbc(), D_in, cu, n_seqs, max_len, CD, conv_w_.get(), conv_b_.get(),
                      c_.d_conv, s.buf[0], s.slot_dev, s.stride[0], true);
    float* ys = ys_.get(ctx_, size_t(T * DS));
    const SsdScanInputs in{.x = xbc, .x_ld = CD, .B = xbc + DS, .C = xbc + DS + GN, .bc_ld = CD,
                           .dt = zx + off_dt(), .dt_ld = D_in, .dt_bias = dt_bias_.get(),
                           .dt_min = float(c_.dt_limit_min), .dt_max = float(c_.dt_limit_max), .A = A_.get(),
                           .D = D_.get(), .D_per_channel = c_.D_has_hdim};
    if (tensor_core_max_slot >= 0)
      bf16_chunk_.prefill(ctx_, dims(), in, cu, T, n_seqs, max_len, s.buf[1], s.slot_dev, s.stride[1],
                          tensor_core_max_slot, ys, DS);
    else
      ssd_scan(ctx_, dims(), in, cu, n_seqs, s.buf[1], s.slot_dev, s.stride[1], ys, DS);
    // o = [silu(z0) ⊙ x0 | GatedRMSNorm(y, z) or y ⊙ silu(z)] (spec §3.4–§3.5).
    float* o = o_.get(ctx_, size_t(T * DI));
    if (DM > 0) silu_gate_fwd(ctx_, o, zx + off_x0(), zx, T, DM, D_in, D_in, DI);
    const float* z = zx + off_z();
    if (c_.rmsnorm)
      gated_rmsnorm_fwd(ctx_, o + DM, ys, z, norm_w_.get(), T, DS, c_.norm_per_group ? DS / c_.ngroups : DS,
                        float(c_.norm_eps), c_.norm_before_gate, DS, D_in, DI);
    else
      silu_gate_fwd(ctx_, o + DM, ys, z, T, DS, DS, D_in, DI);
    linear_fwd(ctx_, y, o, out_proj_, out_bias_.get(), T, DI, d_model_);
  }

  Context& ctx_;
  Mamba2Config c_;
  int64_t d_model_;
  Matrix in_proj_, out_proj_;
  std::shared_ptr<float> in_bias_, conv_w_, conv_b_, dt_bias_, A_, D_, norm_w_, out_bias_;  // null: absent
  Scratch<float> zx_, xbc_, ys_, o_;  // [T, in_proj_dim], [T, conv_dim], [T, d_ssm], [T, d_inner]
  OneTokenOffsets step_cu_;
  bool bf16_scan_ = false;  // prefill on tensor cores (bf16 precision, supported dims)
  SsdChunkScanBf16 bf16_chunk_;
};

}  // namespace

std::unique_ptr<Layer> make_mamba2(Context& ctx, const Mamba2Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba2Layer>(ctx, c, d_model, p);
}

}  // namespace m3::cuda
