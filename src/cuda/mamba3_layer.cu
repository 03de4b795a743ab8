// Mamba-3 mixer on the device (spec/mamba3.md), the CPU layer's math (cpu/mamba3_layer.cpp):
// in_proj, per-token preprocessing (§3, mamba3_preprocess), the scan (cuda/mamba3_scan), output
// gating or gated norm and the MIMO down-projection (§4, mamba3_gate_out), out_proj.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <memory>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/mamba3_chunk_scan.h"
#include "cuda/mamba3_chunk_scan_bf16.h"
#include "cuda/mamba3_scan.h"
#include "cuda/pdl.cuh"
#include "cuda/weights.h"
#include "m3/error.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

constexpr int kPrepThreads = 128;
constexpr int kGateWarps = 8;

// Block t (token t of the row layout zx [T, ld], spec §2): RMSNorm (eps 1e-5) of each of its
// n_vec = R·G vectors of B and C over N, one warp per vector, into kn / qn [T, n_vec·N]; then per
// head dt = softplus(dd_dt + dt_bias) and ADT = A·dt with A = min(−f(dd_A), −A_floor),
// f(a) = 1 + a for a ≥ 0 and 1 / (1 − a) below (spec §3), into dt / adt [T, H].
__global__ void mamba3_preprocess(const float* zx, int64_t ld, int64_t off_B, int64_t off_C, int64_t off_dt,
                                  int64_t off_A, int64_t n_vec, int64_t N, const float* B_norm, const float* C_norm,
                                  const float* dt_bias, float A_floor, int64_t H, float* kn, float* qn, float* dt,
                                  float* adt) {
  pdl_trigger();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const float* row = zx + t * ld;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t v = warp; v < 2 * n_vec; v += kPrepThreads / 32) {  // the same v for a whole warp
    const bool is_C = v >= n_vec;
    const int64_t j = is_C ? v - n_vec : v;
    const float* in = row + (is_C ? off_C : off_B) + j * N;
    const float* w = is_C ? C_norm : B_norm;
    float* out = (is_C ? qn : kn) + (t * n_vec + j) * N;
    float ss = 0;
    for (int64_t n = lane; n < N; n += 32) ss += in[n] * in[n];
    const float r = 1.0f / sqrtf(lane_group_sum(ss, 32) / float(N) + 1e-5f);
    for (int64_t n = lane; n < N; n += 32) out[n] = in[n] * r * w[n];
  }
  for (int64_t h = threadIdx.x; h < H; h += kPrepThreads) {
    const float d = softplus(row[off_dt + h] + dt_bias[h]);
    const float a = row[off_A + h];
    const float A = fminf(-(a >= 0 ? 1.0f + a : 1.0f / (1.0f - a)), -A_floor);
    dt[t * H + h] = d;
    adt[t * H + h] = A * d;
  }
}

// Warp (t, h), lanes over p: o[t, h·P + p] = Σ_r mo[h,r,p] · (y_{t,r}[p] · scale_r · nw[h·P + p]) ·
// silu(z_t[h·P + p] · mz[h,r,p]) with scale_r = 1 / sqrt(mean_p y_{t,r}² + 1e-5) when nw (the
// out-proj norm) is given, else 1 (spec §4). Absent factors (SISO, no norm) are 1. ys: token t,
// rank r, head h at ys[t·R·H·P + (r·H + h)·P]; z: token t at zx[t·ld_zx].
__global__ void mamba3_gate_out(const float* ys, const float* zx, int64_t ld_zx, int64_t T, int64_t H, int64_t P,
                                int64_t R, const float* nw, const float* mz, const float* mo, float* o) {
  pdl_trigger();
  pdl_wait();
  const int64_t pair = int64_t(blockIdx.x) * kGateWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (pair >= T * H) return;  // the whole warp
  const int64_t t = pair / H, h = pair % H, DI = H * P;
  const float* z = zx + t * ld_zx + h * P;
  float* out = o + t * DI + h * P;
  // Ranks in order, each lane adding to its own entries: the CPU's summation order.
  for (int64_t r = 0; r < R; ++r) {
    const float* yr = ys + t * R * DI + (r * H + h) * P;
    float scale = 1.0f;
    if (nw) {
      float ss = 0;
      for (int64_t p = lane; p < P; p += 32) ss += yr[p] * yr[p];
      scale = 1.0f / sqrtf(lane_group_sum(ss, 32) / float(P) + 1e-5f);
    }
    const int64_t m0 = (h * R + r) * P;
    for (int64_t p = lane; p < P; p += 32) {
      const float n = yr[p] * scale * (nw ? nw[h * P + p] : 1.0f);
      const float term = (mo ? mo[m0 + p] : 1.0f) * n * silu(z[p] * (mz ? mz[m0 + p] : 1.0f));
      out[p] = r == 0 ? term : out[p] + term;
    }
  }
}

class Mamba3Layer final : public Layer {
 public:
  Mamba3Layer(Context& ctx, const Mamba3Config& c, int64_t d_model, const ParamMap& p)
      : ctx_(ctx), c_(c), d_model_(d_model) {
    check_mamba3_scan_supported(ctx_, dims());
    chunked_ = mamba3_chunk_scan_fits(ctx_, dims(), c_.chunk_size);
    bf16_scan_ = ctx_.precision == Precision::BF16 && mamba3_chunk_scan_bf16_supported(dims());
    auto vec = [&](const char* name) { return upload_f32(ctx_, p.at(name)); };
    in_proj_ = upload_matrix(ctx_, p.at("in_proj.weight"));
    out_proj_ = upload_matrix(ctx_, p.at("out_proj.weight"));
    dt_bias_ = vec("dt_bias");
    B_bias_ = vec("B_bias");
    C_bias_ = vec("C_bias");
    B_norm_ = vec("B_norm.weight");
    C_norm_ = vec("C_norm.weight");
    D_ = vec("D");
    if (c_.is_mimo) {
      mimo_x_ = vec("mimo_x");
      mimo_z_ = vec("mimo_z");
      mimo_o_ = vec("mimo_o");
    }
    if (c_.is_outproj_norm) norm_ = vec("norm.weight");
  }

  // The CPU layer's line (cpu/mamba3_layer.cpp).
  std::string describe() const override { return mamba3_describe(c_); }
  LayerStateSpec state_spec() const override { return mamba3_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    const int64_t T = pk.n_tokens();
    if (T == 0) return;  // every sequence has length 0
    prepare(x, T);
    const int64_t y_ld = c_.rank() * c_.d_inner;
    if (bf16_scan_) {
      int64_t max_len = 0;
      for (size_t i = 0; i + 1 < pk.cu_seqlens.size(); ++i)
        max_len = std::max(max_len, pk.cu_seqlens[i + 1] - pk.cu_seqlens[i]);
      const Mamba3Bf16Split split = mamba3_chunk_scan_bf16_split(ctx_, dims(), pk.n_seqs(), max_len);
      mamba3_chunk_scan_bf16_prefill(ctx_, dims(), inputs(), pk.cu_dev, pk.n_seqs(), states(s), buf_.ys, y_ld, split,
                                     split_);
    }
    else if (chunked_)
      mamba3_chunk_scan_prefill(ctx_, dims(), inputs(), pk.cu_seqlens.data(), pk.cu_dev, pk.n_seqs(), states(s),
                                buf_.ys, y_ld, c_.chunk_size, chunk_);
    else
      mamba3_scan_prefill(ctx_, dims(), inputs(), pk.cu_dev, pk.n_seqs(), states(s), buf_.ys, y_ld);
    finish(y, T);
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    if (n == 0) return;
    prepare(x, n);
    mamba3_scan_step(ctx_, dims(), inputs(), n, states(s), buf_.ys, c_.rank() * c_.d_inner);
    finish(y, n);
  }

 private:
  Mamba3ScanDims dims() const {
    return {c_.nheads, c_.ngroups, c_.headdim, c_.d_state, c_.n_angles, c_.rank(), c_.is_mimo};
  }
  // The in_proj row: z, x [d_inner], B, C [R·G·N], dd_dt, dd_A, trap [H], angle [S] (spec §2).
  int64_t off_x() const { return c_.d_inner; }
  int64_t off_B() const { return 2 * c_.d_inner; }
  int64_t bc_dim() const { return c_.d_state * c_.ngroups * c_.rank(); }
  int64_t off_C() const { return off_B() + bc_dim(); }
  int64_t off_dt() const { return off_C() + bc_dim(); }
  int64_t off_A() const { return off_dt() + c_.nheads; }
  int64_t off_trap() const { return off_A() + c_.nheads; }
  int64_t off_angle() const { return off_trap() + c_.nheads; }

  // in_proj, then the per-token preprocessing (spec §3).
  void prepare(const float* x, int64_t T) {
    check(T <= INT_MAX, "Mamba-3 layer: " + std::to_string(T) + " tokens exceed one launch's grid");
    const int64_t D_in = c_.in_proj_dim(), H = c_.nheads;
    buf_.zx = zx_.get(ctx_, size_t(T * D_in));
    buf_.kn = kn_.get(ctx_, size_t(T * bc_dim()));
    buf_.qn = qn_.get(ctx_, size_t(T * bc_dim()));
    buf_.dt = dt_.get(ctx_, size_t(T * H));
    buf_.adt = adt_.get(ctx_, size_t(T * H));
    buf_.ys = ys_.get(ctx_, size_t(T * c_.rank() * c_.d_inner));
    linear_fwd(ctx_, buf_.zx, x, in_proj_, nullptr, T, d_model_, D_in);
    launch_pdl(mamba3_preprocess, dim3(unsigned(T)), dim3(kPrepThreads), 0, ctx_.stream, buf_.zx, D_in, off_B(),
               off_C(), off_dt(), off_A(), bc_dim() / c_.d_state, c_.d_state, B_norm_.get(), C_norm_.get(),
               dt_bias_.get(), float(c_.A_floor), H, buf_.kn, buf_.qn, buf_.dt, buf_.adt);
  }

  Mamba3ScanInputs inputs() const {
    const int64_t D_in = c_.in_proj_dim();
    return {.q = buf_.qn,
            .k = buf_.kn,
            .qk_ld = bc_dim(),
            .q_bias = C_bias_.get(),
            .k_bias = B_bias_.get(),
            .x = buf_.zx + off_x(),
            .x_ld = D_in,
            .mimo_x = mimo_x_.get(),
            .adt = buf_.adt,
            .dt = buf_.dt,
            .trap = buf_.zx + off_trap(),
            .trap_ld = D_in,
            .angle = buf_.zx + off_angle(),
            .angle_ld = D_in,
            .D = D_.get()};
  }

  // The pool's buffers in model/specs.h order: angle, ssm, k, v.
  static Mamba3ScanStates states(const StateBatch& s) {
    return {s.buf[0], s.buf[1], s.buf[2], s.buf[3], s.stride[0], s.stride[1], s.stride[2], s.stride[3], s.slot_dev};
  }

  // Gating or gated norm and the MIMO sum (spec §4), then out_proj.
  void finish(float* y, int64_t T) {
    const int64_t H = c_.nheads, DI = c_.d_inner;
    buf_.o = o_.get(ctx_, size_t(T * DI));
    const int64_t blocks = (T * H + kGateWarps - 1) / kGateWarps;
    check(blocks <= INT_MAX, "Mamba-3 layer: " + std::to_string(T) + " tokens exceed one launch's grid");
    launch_pdl(mamba3_gate_out, dim3(unsigned(blocks)), dim3(kGateWarps * 32), 0, ctx_.stream, buf_.ys, buf_.zx,
               c_.in_proj_dim(), T, H, c_.headdim, c_.rank(), norm_.get(), mimo_z_.get(), mimo_o_.get(), buf_.o);
    linear_fwd(ctx_, y, buf_.o, out_proj_, nullptr, T, DI, d_model_);
  }

  Context& ctx_;
  Mamba3Config c_;
  int64_t d_model_;
  Matrix in_proj_, out_proj_;
  std::shared_ptr<float> dt_bias_, B_bias_, C_bias_, B_norm_, C_norm_, D_;
  std::shared_ptr<float> mimo_x_, mimo_z_, mimo_o_, norm_;  // null when the variant has none
  Scratch<float> zx_, kn_, qn_, dt_, adt_, ys_, o_;
  // Prefill under bf16 runs the tensor-core scan where it supports the dims; otherwise the FP32
  // chunked scan when its shared memory fits, else the sequential one.
  bool bf16_scan_ = false;
  bool chunked_ = false;
  Mamba3ChunkScratch chunk_;
  Scratch<float> split_;  // the bf16 scan's first-pass states of a split call
  struct {
    float *zx, *kn, *qn, *dt, *adt, *ys, *o;
  } buf_{};  // this call's scratch pointers
};

}  // namespace

std::unique_ptr<Layer> make_mamba3(Context& ctx, const Mamba3Config& c, int64_t d_model, ParamMap p) {
  return std::make_unique<Mamba3Layer>(ctx, c, d_model, p);
}

}  // namespace m3::cuda
