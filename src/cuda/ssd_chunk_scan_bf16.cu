// Mamba-2 prefill through the Mamba-3 tensor-core scan (cuda/ssd_chunk_scan_bf16.h).
#include "cuda/ssd_chunk_scan_bf16.h"

#include <climits>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/mamba3_chunk_scan_bf16.h"
#include "m3/error.h"

namespace m3::cuda {

namespace {

// A trapezoid logit whose sigmoid is exactly 1 in float32 (1 / (1 + e^−1e4) = 1 / (1 + 0)), so that
// Mamba-3's weights become γ = λ·dt = dt and β = (1 − λ)·dt·α = 0 exactly.
constexpr float kTrapOne = 1e4f;

// Row t: dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max) and A·dt per head (ssd_scan's dt,
// spec/mamba2.md §3.2); block 0 also writes the trapezoid logits.
__global__ void ssd_dt_rows(const float* dt_raw, int64_t dt_ld, const float* dt_bias, const float* A, float dt_min,
                            float dt_max, int64_t H, float* dt, float* adt, float* trap) {
  const int64_t t = blockIdx.x;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
    const float d = fminf(fmaxf(softplus(dt_raw[t * dt_ld + h] + dt_bias[h]), dt_min), dt_max);
    dt[t * H + h] = d;
    adt[t * H + h] = A[h] * d;
    if (t == 0) trap[h] = kTrapOne;
  }
}

Mamba3ScanDims mamba3_dims(const SsdScanDims& d) { return {d.H, d.G, d.P, d.N, 1, 1, false}; }

}  // namespace

bool ssd_chunk_scan_bf16_supported(const SsdScanDims& d, bool D_per_channel) {
  return !D_per_channel && mamba3_chunk_scan_bf16_supported(mamba3_dims(d));
}

void SsdChunkScanBf16::prefill(Context& ctx, const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_dev,
                               int64_t T, int64_t n_seqs, int64_t max_len, float* ssm_base, const int32_t* slot_dev,
                               int64_t ssm_stride, int32_t max_slot, float* y, int64_t y_ld) {
  check(ssd_chunk_scan_bf16_supported(d, in.D_per_channel), "Mamba-2 bf16 chunked scan: unsupported dims");
  if (T == 0 || n_seqs == 0) return;
  check(T <= INT_MAX, "Mamba-2 bf16 chunked scan: " + std::to_string(T) + " tokens exceed one launch's grid");
  const int64_t H = d.H, N = d.N, P = d.P, slots = int64_t(max_slot) + 1;
  float* dt = dt_.get(ctx, size_t(T * H));
  float* adt = adt_.get(ctx, size_t(T * H));
  // Zero-filled when allocated and never written but for the trapezoid logits at the end.
  float* consts = consts_.get(ctx, size_t(H * N + 1 + H));
  float *zero_bias = consts, *zero_angle = consts + H * N, *trap = consts + H * N + 1;
  ssd_dt_rows<<<unsigned(T), 128, 0, ctx.stream>>>(in.dt, in.dt_ld, in.dt_bias, in.A, in.dt_min, in.dt_max, H, dt,
                                                   adt, trap);
  M3_CUDA_LAUNCH_CHECK();
  // Rank 1, one rotary angle whose rate is tanh(0)·dt = 0: θ stays at its start, 0 (the scratch is
  // zero-filled and only ever written θ = 0), and the rotation is the identity.
  const Mamba3ScanInputs m3in{.q = in.C,
                              .k = in.B,
                              .qk_ld = in.bc_ld,
                              .q_bias = zero_bias,
                              .k_bias = zero_bias,
                              .x = in.x,
                              .x_ld = in.x_ld,
                              .mimo_x = nullptr,
                              .adt = adt,
                              .dt = dt,
                              .trap = trap,
                              .trap_ld = 0,
                              .angle = zero_angle,
                              .angle_ld = 0,
                              .D = in.D};
  const Mamba3ScanStates st{.angle = angle_.get(ctx, size_t(slots * H)),
                            .ssm = ssm_base,
                            .k = k_.get(ctx, size_t(slots * H * N)),
                            .v = v_.get(ctx, size_t(slots * H * P)),
                            .angle_stride = H,
                            .ssm_stride = ssm_stride,
                            .k_stride = H * N,
                            .v_stride = H * P,
                            .slot = slot_dev};
  const Mamba3ScanDims m3d = mamba3_dims(d);
  mamba3_chunk_scan_bf16_prefill(ctx, m3d, m3in, cu_dev, n_seqs, st, y, y_ld,
                                 mamba3_chunk_scan_bf16_split(ctx, m3d, n_seqs, max_len), split_);
}

}  // namespace m3::cuda
