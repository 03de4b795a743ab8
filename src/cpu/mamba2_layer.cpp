// Mamba-2 mixer on the CPU (spec/mamba2.md §2–§4): in_proj → [z0 | x0 | z | xBC | dt];
// xBC ← silu(causal conv1d(xBC)) = [x | B | C]; dt ← clamp(softplus(dt + dt_bias), dt_limit); the
// SSD scan (cpu/ssd_scan); gated RMSNorm per group (over all of d_ssm for Hugging Face checkpoints,
// §5), or y ⊙ silu(z); the d_mlp branch silu(z0) ⊙ x0 in front; out_proj. Decode is the same
// pipeline over one token per sequence.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/conv1d.h"
#include "cpu/layers.h"
#include "cpu/ops.h"
#include "cpu/ssd_scan.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

// The chunk of the parallel form is the backend's choice (spec §3: numerics do not depend on it).
// Per token and head it costs about 2·Q·(N + P) flops inside the chunk plus 4·P·N for the carried
// state, so on the CPU small chunks win: the 130M shape's scan over 512 tokens on one thread takes
// 6.3 ms at Q = 16, 8.7 ms at 64 and 18.8 ms at the reference's 256.
constexpr int64_t kMaxCpuChunk = 16;

// Buffers of the state, in mamba2_state_spec's order.
enum : size_t { kConv, kSsm };

class Mamba2Layer final : public Layer {
 public:
  Mamba2Layer(const Mamba2Config& c, int64_t d_model, ParamMap p) : c_(c), d_model_(d_model), p_(std::move(p)) {
    // A = −exp(A_log) is constant while the layer lives (spec §3.2).
    const Tensor& a_log = p_.at("A_log");
    A_.resize(static_cast<size_t>(a_log.numel()));
    for (size_t i = 0; i < A_.size(); ++i) A_[i] = -std::exp(a_log.f32()[i]);
  }

  std::string describe() const override { return mamba2_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba2_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    auto ssm = prepare(x, pk, s);
    ssd_scan_chunked(dims(), scan_inputs(), pk.cu_seqlens.data(), pk.n_seqs(), ssm.data(), ys_.data(), c_.d_ssm,
                     std::min(c_.chunk_size, kMaxCpuChunk));
    finish(y, pk.n_tokens());
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    Packing pk;
    for (int64_t i = 0; i <= n; ++i) pk.cu_seqlens.push_back(i);
    auto ssm = prepare(x, pk, s);
    ssd_scan_step(dims(), scan_inputs(), n, ssm.data(), ys_.data(), c_.d_ssm);
    finish(y, n);
  }

 private:
  // Column offsets in the in_proj output (spec §2).
  int64_t off_x0() const { return c_.d_mlp(); }
  int64_t off_z() const { return 2 * c_.d_mlp(); }
  int64_t off_xbc() const { return off_z() + c_.d_ssm; }
  int64_t off_B() const { return off_xbc() + c_.d_ssm; }
  int64_t off_C() const { return off_B() + c_.ngroups * c_.d_state; }
  int64_t off_dt() const { return off_xbc() + c_.conv_dim(); }

  SsdScanDims dims() const { return {c_.nheads, c_.ngroups, c_.headdim, c_.d_state}; }
  const float* bias_or_null(const char* name) const { return p_.count(name) ? p_.at(name).f32() : nullptr; }

  // in_proj; per sequence the conv over xBC (in place, advancing its window); dt. Returns each
  // sequence's SSM state.
  std::vector<float*> prepare(const float* x, const Packing& pk, const StateBatch& s) {
    const int64_t T = pk.n_tokens(), D_in = c_.in_proj_dim(), H = c_.nheads;
    zx_.resize(static_cast<size_t>(T * D_in));
    linear_fwd(zx_.data(), x, p_.at("in_proj.weight").f32(), bias_or_null("in_proj.bias"), T, d_model_, D_in);
    std::vector<float*> ssm(static_cast<size_t>(pk.n_seqs()));
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      float* xbc = zx_.data() + pk.start(i) * D_in + off_xbc();
      causal_conv1d_fwd(xbc, D_in, xbc, D_in, pk.len(i), c_.conv_dim(), p_.at("conv1d.weight").f32(),
                        bias_or_null("conv1d.bias"), c_.d_conv, s.at(kConv, i), true);
      ssm[size_t(i)] = s.at(kSsm, i);
    }
    dt_.resize(static_cast<size_t>(T * H));
    const float* dt_bias = p_.at("dt_bias").f32();
    const float lo = float(c_.dt_limit_min), hi = float(c_.dt_limit_max);
#pragma omp parallel for if (T * H > kParallelWork)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        dt_[size_t(t * H + h)] = std::clamp(softplus_approx(zx_[size_t(t * D_in + off_dt() + h)] + dt_bias[h]), lo, hi);
    ys_.resize(static_cast<size_t>(T * c_.d_ssm));
    return ssm;
  }

  SsdScanInputs scan_inputs() const {
    const int64_t D_in = c_.in_proj_dim();
    return {.x = zx_.data() + off_xbc(), .x_ld = D_in, .B = zx_.data() + off_B(), .C = zx_.data() + off_C(),
            .bc_ld = D_in, .dt = dt_.data(), .dt_ld = c_.nheads, .A = A_.data(), .D = p_.at("D").f32(),
            .D_per_channel = c_.D_has_hdim};
  }

  // o = [silu(z0) ⊙ x0 | GatedRMSNorm(y, z) or y ⊙ silu(z)] (spec §3.4–§3.5); out_proj.
  void finish(float* y, int64_t T) {
    const int64_t D_in = c_.in_proj_dim(), DI = c_.d_inner, DM = c_.d_mlp(), DS = c_.d_ssm;
    o_.resize(static_cast<size_t>(T * DI));
    if (DM > 0) silu_gate_fwd(o_.data(), zx_.data() + off_x0(), zx_.data(), T, DM, D_in, D_in, DI);
    const float* z = zx_.data() + off_z();
    if (c_.rmsnorm)
      gated_rmsnorm_fwd(o_.data() + DM, ys_.data(), z, p_.at("norm.weight").f32(), T, DS,
                        c_.norm_per_group ? DS / c_.ngroups : DS, float(c_.norm_eps), c_.norm_before_gate, DS, D_in,
                        DI);
    else
      silu_gate_fwd(o_.data() + DM, ys_.data(), z, T, DS, DS, D_in, DI);
    linear_fwd(y, o_.data(), p_.at("out_proj.weight").f32(), bias_or_null("out_proj.bias"), T, DI, d_model_);
  }

  Mamba2Config c_;
  int64_t d_model_;
  ParamMap p_;
  std::vector<float> A_;                  // −exp(A_log) [H]
  std::vector<float> zx_, dt_, ys_, o_;  // scratch, reused across calls
};

}  // namespace

std::unique_ptr<Layer> make_mamba2(const Mamba2Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba2Layer>(c, d_model, std::move(p));
}

}  // namespace m3::cpu
