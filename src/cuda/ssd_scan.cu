// Implements cuda/ssd_scan.h (spec/mamba2.md §3 steps 2–3). One warp per (sequence, head, row p)
// of the state; lane l holds S[p, n] for n = l + 32k, k < NPL, in registers (NPL = ceil(N / 32)
// rounded up to a power of two, a template argument so that the array is never spilled by a
// dynamic index). Consecutive warps of a block are consecutive rows of one head, so the B and C
// rows they all read come from L1.
#include <climits>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/ssd_scan.h"

namespace m3::cuda {

namespace {

constexpr int kWarps = 8;  // rows per block

// The arguments of ssd_scan; n_rows = n_seqs·H·P.
struct ScanArgs {
  SsdScanDims d;
  SsdScanInputs in;
  const int64_t* cu;
  float* ssm_base;
  const int32_t* slot;
  int64_t ssm_stride;
  float* y;
  int64_t y_ld;
  int64_t n_rows;
};

template <int NPL>
__global__ void ssd_scan_rows(ScanArgs r) {
  const SsdScanDims& d = r.d;
  const SsdScanInputs& in = r.in;
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;  // (i·H + h)·P + p
  const int lane = int(threadIdx.x % 32);
  if (row >= r.n_rows) return;  // the whole warp: row is uniform across it
  const int64_t N = d.N, P = d.P, p = row % P, h = (row / P) % d.H, i = row / (P * d.H);
  const int64_t s0 = r.cu[i], L = r.cu[i + 1] - s0;
  if (L == 0) return;
  const int64_t g = h / (d.H / d.G);
  float* S = r.ssm_base + int64_t(r.slot[i]) * r.ssm_stride + (h * P + p) * N;
  float s[NPL];
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int64_t n = lane + 32 * k;
    s[k] = n < N ? S[n] : 0.0f;
  }
  const float A = in.A[h], dt_bias = in.dt_bias[h];
  const float Dp = in.D_per_channel ? in.D[h * P + p] : in.D[h];
  for (int64_t t = s0; t < s0 + L; ++t) {
    const float dt = fminf(fmaxf(softplus(in.dt[t * in.dt_ld + h] + dt_bias), in.dt_min), in.dt_max);
    const float a = expf(A * dt);
    const float xp = in.x[t * in.x_ld + h * P + p], u = dt * xp;
    const float* B = in.B + t * in.bc_ld + g * N;
    const float* C = in.C + t * in.bc_ld + g * N;
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < NPL; ++k) {
      const int64_t n = lane + 32 * k;
      if (n < N) {
        s[k] = a * s[k] + u * B[n];
        acc += s[k] * C[n];
      }
    }
    acc = lane_group_sum(acc, 32);
    if (lane == 0) r.y[t * r.y_ld + h * P + p] = acc + Dp * xp;
  }
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int64_t n = lane + 32 * k;
    if (n < N) S[n] = s[k];
  }
}

template <int NPL>
void launch(Context& ctx, const ScanArgs& r) {
  ssd_scan_rows<NPL><<<unsigned((r.n_rows + kWarps - 1) / kWarps), kWarps * 32, 0, ctx.stream>>>(r);
  M3_CUDA_LAUNCH_CHECK();
}

}  // namespace

void ssd_scan(Context& ctx, const SsdScanDims& d, const SsdScanInputs& in, const int64_t* cu_dev, int64_t n_seqs,
              float* ssm_base, const int32_t* slot_dev, int64_t ssm_stride, float* y, int64_t y_ld) {
  check(d.N >= 1 && d.N <= kSsdScanMaxN,
        "ssd_scan: d_state " + std::to_string(d.N) + " is outside 1.." + std::to_string(kSsdScanMaxN));
  const ScanArgs r{d, in, cu_dev, ssm_base, slot_dev, ssm_stride, y, y_ld, n_seqs * d.H * d.P};
  if (r.n_rows == 0) return;
  check((r.n_rows + kWarps - 1) / kWarps <= INT_MAX,
        "ssd_scan: " + std::to_string(r.n_rows) + " state rows exceed one launch's grid");
  if (d.N <= 32)
    launch<1>(ctx, r);
  else if (d.N <= 64)
    launch<2>(ctx, r);
  else if (d.N <= 128)
    launch<4>(ctx, r);
  else if (d.N <= 256)
    launch<8>(ctx, r);
  else if (d.N <= 512)
    launch<16>(ctx, r);
  else
    launch<32>(ctx, r);
}

}  // namespace m3::cuda
