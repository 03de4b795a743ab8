// Implements cuda/selective_scan.h (spec/mamba1.md §3 step 4). A group of GW lanes (GW the
// smallest power of two with GW·kStatesPerLane ≥ N) owns one (sequence, channel): lane j of the
// group holds the states n = j + GW·k, k < kStatesPerLane, in registers. A block covers
// kThreads / GW consecutive channels of one sequence, so every lane of a block walks the same
// number of tokens and the group sums (warp shuffles) are reached by all lanes of each warp; lanes
// past the last channel run on zeros and store nothing.
#include <climits>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/selective_scan.h"

namespace m3::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kStatesPerLane = 16;  // N = 16 (every Mamba-1 checkpoint) takes one lane per channel

// The arguments of selective_scan; n_cblk channel blocks per sequence, GW lanes per channel.
struct ScanArgs {
  int64_t D, N;
  SelectiveScanInputs in;
  const int64_t* cu;
  float* ssm_base;
  const int32_t* slot;
  int64_t ssm_stride;
  float* y;
  int64_t y_ld;
  int64_t n_cblk;
  int GW;
};

__global__ void selective_scan_channels(ScanArgs r) {
  const SelectiveScanInputs& in = r.in;
  const int64_t N = r.N, b = blockIdx.x, i = b / r.n_cblk;
  const int64_t c = (b % r.n_cblk) * (kThreads / r.GW) + threadIdx.x / r.GW;
  const int j = int(threadIdx.x) % r.GW;
  const bool active = c < r.D;
  const int64_t s0 = r.cu[i], L = r.cu[i + 1] - s0;
  if (L == 0) return;  // uniform across the block
  float* S = active ? r.ssm_base + int64_t(r.slot[i]) * r.ssm_stride + c * N : nullptr;
  float h[kStatesPerLane], a[kStatesPerLane];
#pragma unroll
  for (int k = 0; k < kStatesPerLane; ++k) {
    const int64_t n = j + int64_t(r.GW) * k;
    const bool own = active && n < N;
    h[k] = own ? S[n] : 0.0f;
    a[k] = own ? in.A[c * N + n] : 0.0f;
  }
  const float Dc = active ? in.D[c] : 0.0f;
  for (int64_t t = s0; t < s0 + L; ++t) {
    // Inactive lanes: u = Δ = 0 keeps their (zero) states and contributes nothing.
    const float u = active ? in.u[t * in.u_ld + c] : 0.0f;
    const float dt = active ? softplus(in.delta[t * in.delta_ld + c]) : 0.0f, du = dt * u;
    const float* B = in.B + t * in.bc_ld;
    const float* C = in.C + t * in.bc_ld;
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < kStatesPerLane; ++k) {
      const int64_t n = j + int64_t(r.GW) * k;
      if (n < N) {
        h[k] = expf(dt * a[k]) * h[k] + du * B[n];
        acc += h[k] * C[n];
      }
    }
    acc = lane_group_sum(acc, r.GW);
    if (active && j == 0) r.y[t * r.y_ld + c] = acc + Dc * u;
  }
  if (!active) return;
#pragma unroll
  for (int k = 0; k < kStatesPerLane; ++k) {
    const int64_t n = j + int64_t(r.GW) * k;
    if (n < N) S[n] = h[k];
  }
}

}  // namespace

void selective_scan(Context& ctx, int64_t D, int64_t N, const SelectiveScanInputs& in, const int64_t* cu_dev,
                    int64_t n_seqs, float* ssm_base, const int32_t* slot_dev, int64_t ssm_stride, float* y,
                    int64_t y_ld) {
  check(N >= 1 && N <= kSelectiveScanMaxN,
        "selective_scan: d_state " + std::to_string(N) + " is outside 1.." + std::to_string(kSelectiveScanMaxN));
  if (n_seqs == 0 || D == 0) return;
  int GW = 1;
  while (int64_t(GW) * kStatesPerLane < N) GW *= 2;
  const int64_t n_cblk = (D + kThreads / GW - 1) / (kThreads / GW), blocks = n_seqs * n_cblk;
  check(blocks <= INT_MAX, "selective_scan: " + std::to_string(n_seqs) + " sequences × " + std::to_string(D) +
                               " channels exceed one launch's grid");
  const ScanArgs r{D, N, in, cu_dev, ssm_base, slot_dev, ssm_stride, y, y_ld, n_cblk, GW};
  selective_scan_channels<<<unsigned(blocks), kThreads, 0, ctx.stream>>>(r);
  M3_CUDA_LAUNCH_CHECK();
}

}  // namespace m3::cuda
