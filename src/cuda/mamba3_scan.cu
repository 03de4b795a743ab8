// Implements cuda/mamba3_scan.h's prefill (the decode step is cuda/mamba3_step.cu): one thread
// block per (sequence, head) walks the sequence's tokens in order through the recurrence of
// spec/mamba3.md §4, so prefill is the step applied L times:
//   θ_t = (θ_{t−1} + π·tanh(angle_t)·dt_t) mod 2π,  q̃_{t,r} = Rot_θt(q_{t,r} + C_bias[h, r]),
//   k̃_{t,r} likewise with B,  v_{t,r} = x_t[h] ⊙ mimo_x[h, r]  (SISO: x_t[h]),
//   H_t = α_t H_{t−1} + Σ_r (β_t v_{t−1,r} k̃_{t−1,r}ᵀ + γ_t v_{t,r} k̃_{t,r}ᵀ),
//   y_{t,r} = H_t q̃_{t,r} + D[h] v_{t,r},
// with α = exp(ADT), β = (1 − λ)·dt·α, γ = λ·dt, λ = sigmoid(trap), and (k̃, v) of the token before
// the first one taken from the state. This is the CPU step's arithmetic; the CPU's prefill sums
// the same terms in the σ form of §6, equal to rounding.
//
// Threads are (p, s) pairs, tid = p·NS + s with NS a power of two ≤ 32 (NS lanes of one warp share
// a row p). Thread (p, s) owns the state entries H[p, n] for n = s + NS·k, kept in shared memory at
// G[k·(threads + NS) + tid]: free of bank conflicts both for the owner (consecutive tid) and for
// the coalesced load and store of the state in its [P, N] layout (consecutive n of a row land in
// consecutive banks, as n + p·NS ≡ k·(threads + NS) + p·NS + s mod 32). y_{t,r}[p] is the sum of
// the NS partial dot products of the row's lanes. Per token: (1) the angles; (2) q̃, k̃ and v of
// the token into shared memory — k̃ and v double-buffered, as the next token reads them as its
// previous ones; (3) the update and the outputs. Two barriers per token: (1) → (2) for cos/sin,
// (2) → (3) for q̃, k̃, v; the next token's (2) overwrites buffers that (3) read only after the
// next token's first barrier. One more before the state is stored: threads store entries they do
// not own.
#include "cuda/mamba3_scan.h"

#include <climits>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/mamba3_rotary.cuh"
#include "m3/error.h"

namespace m3::cuda {

namespace {

// Threads per block aimed at (a row p gets more lanes while P·NS stays at or under it); blocks
// hold up to kMaxThreads for headdims above it. The launch bound lets a thread use up to 128
// registers (the rank-16 accumulators need them; with the default bound ptxas spills).
constexpr int64_t kTargetThreads = 256;
constexpr int kMaxThreads = 512;

struct ScanLayout {
  int ns;       // lanes per row p
  int threads;  // P·ns rounded up to whole warps
  int kn;       // state entries per thread, ceil(N / ns)
  size_t smem_bytes;
};

ScanLayout scan_layout(const Mamba3ScanDims& d) {
  int64_t ns = 1;
  while (ns < 32 && 2 * ns * d.P <= kTargetThreads && 2 * ns <= d.N) ns *= 2;
  const int64_t threads = (d.P * ns + 31) / 32 * 32, kn = (d.N + ns - 1) / ns;
  // G [kn][threads + ns], θ, cos, sin [S], q̃ [R][N], k̃ [2][R][N], v [2][R][P].
  const int64_t floats = kn * (threads + ns) + 3 * d.S + 3 * d.R * d.N + 2 * d.R * d.P;
  return {int(ns), int(threads), int(kn), size_t(floats) * sizeof(float)};
}

// Block b: head b % H of sequence b / H, rows [cu[i], cu[i+1]) (cu null: the step, row i). kR ≥ R
// is the compiled rank: the per-rank registers; ranks r ≥ R are skipped.
template <int kR>
__global__ void __launch_bounds__(kMaxThreads, 1)
    mamba3_scan_fwd(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, Mamba3ScanStates st, float* y,
                    int64_t y_ld, int ns, int kn) {
  extern __shared__ float smem[];
  const int64_t H = d.H, P = d.P, N = d.N, S = d.S, R = d.R;
  const int64_t i = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t t0 = cu ? cu[i] : i, L = cu ? cu[i + 1] - t0 : 1;
  if (L == 0) return;  // the whole block: its state stays as it was
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int64_t p = tid / ns;
  const int s = tid % ns;
  const bool has_row = p < P;  // threads past P·ns only fill the last warp
  const int gs = nthr + ns;      // G's row stride
  float* G = smem;
  float* theta = G + int64_t(kn) * gs;
  float* cs = theta + S;
  float* sn = cs + S;
  float* qb = sn + S;
  float* kb = qb + R * N;
  float* vb = kb + 2 * R * N;

  const int64_t slot = st.slot[i];
  float* th_st = st.angle + slot * st.angle_stride + h * S;
  float* H_st = st.ssm + slot * st.ssm_stride + h * P * N;
  float* k_st = st.k + slot * st.k_stride;  // rank r of head h at (r·H + h)·N
  float* v_st = st.v + slot * st.v_stride + h * P;
  const int64_t g = h / (H / d.G);
  const float* mx = in.mimo_x ? in.mimo_x + h * R * P : nullptr;  // rank r at r·P
  const float Dh = in.D[h];

  // Entry (p, n) of the state is G[(n / ns)·gs + p·ns + n % ns] (entries no thread owns stay unset).
  for (int64_t e = tid; e < P * N; e += nthr) {
    const int64_t n = e % N;
    G[(n / ns) * gs + (e / N) * ns + n % ns] = H_st[e];
  }
  for (int64_t j = tid; j < S; j += nthr) theta[j] = th_st[j];
  // The previous token's k̃ and v into buffer 1 (the first token writes buffer 0).
  for (int64_t e = tid; e < R * N; e += nthr) kb[R * N + e] = k_st[((e / N) * H + h) * N + e % N];
  for (int64_t e = tid; e < R * P; e += nthr) vb[R * P + e] = v_st[e % P] * (mx ? mx[e] : 1.0f);

  int cur = 0;
  for (int64_t t = t0; t < t0 + L; ++t, cur ^= 1) {
    const float dt = in.dt[t * H + h];
    // (1) θ_t, cos θ_t, sin θ_t; the reduction mod 2π is the reference's (spec §3).
    const float* raw = in.angle + t * in.angle_ld;
    for (int64_t j = tid; j < S; j += nthr) {
      const float th = mamba3_wrap_angle(theta[j] + mamba3_angle_step(raw[j], dt));
      theta[j] = th;
      sincosf(th, &sn[j], &cs[j]);
    }
    __syncthreads();
    // (2) q̃, k̃ and v of token t.
    float* kc = kb + cur * R * N;
    float* vc = vb + cur * R * P;
    for (int64_t e = tid; e < R * N; e += nthr) {
      const int64_t r = e / N, n = e % N;
      const int64_t off = t * in.qk_ld + (r * d.G + g) * N, bo = (h * R + r) * N;
      qb[e] = mamba3_rotated(in.q + off, in.q_bias + bo, n, N, S, d.halves_pairing, cs, sn);
      kc[e] = mamba3_rotated(in.k + off, in.k_bias + bo, n, N, S, d.halves_pairing, cs, sn);
    }
    const float* xt = in.x + t * in.x_ld + h * P;
    for (int64_t e = tid; e < R * P; e += nthr) vc[e] = xt[e % P] * (mx ? mx[e] : 1.0f);
    __syncthreads();
    // (3) H_t and y_{t,r} on the thread's entries of row p.
    const float lam = sigmoid(in.trap[t * in.trap_ld + h]);
    const float alpha = expf(in.adt[t * H + h]), beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;
    const float* kp = kb + (cur ^ 1) * R * N;
    const float* vp = vb + (cur ^ 1) * R * P;
    float bp[kR], gp[kR], acc[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const bool on = has_row && r < R;
      bp[r] = on ? beta * vp[r * P + p] : 0.0f;
      gp[r] = on ? gamma * vc[r * P + p] : 0.0f;
      acc[r] = 0.0f;
    }
    if (has_row) {
      const int Ns = int(N), Rs = int(R);  // shared-memory indices: int is enough
      for (int k = 0; k < kn; ++k) {
        const int n = s + ns * k;
        if (n >= Ns) break;
        float hv = alpha * G[k * gs + tid];
#pragma unroll
        for (int r = 0; r < kR; ++r)
          if (r < Rs) hv += bp[r] * kp[r * Ns + n] + gp[r] * kc[r * Ns + n];
        G[k * gs + tid] = hv;
#pragma unroll
        for (int r = 0; r < kR; ++r)
          if (r < Rs) acc[r] += hv * qb[r * Ns + n];
      }
    }
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (r < R) {  // R is the same for the whole block: every lane shuffles
        const float yr = lane_group_sum(acc[r], ns);
        if (has_row && s == 0) y[t * y_ld + (r * H + h) * P + p] = yr + Dh * vc[r * P + p];
      }
    }
  }

  // The state after the last token: H (once every thread's last update is done), θ, its k̃
  // (buffer cur ^ 1, complete since the barrier after its (2)) and its x.
  __syncthreads();
  for (int64_t e = tid; e < P * N; e += nthr) {
    const int64_t n = e % N;
    H_st[e] = G[(n / ns) * gs + (e / N) * ns + n % ns];
  }
  for (int64_t j = tid; j < S; j += nthr) th_st[j] = theta[j];
  const float* k_last = kb + (cur ^ 1) * R * N;
  for (int64_t e = tid; e < R * N; e += nthr) k_st[((e / N) * H + h) * N + e % N] = k_last[e];
  const float* x_last = in.x + (t0 + L - 1) * in.x_ld + h * P;
  for (int64_t e = tid; e < P; e += nthr) v_st[e] = x_last[e];
}

template <int kR>
void launch_scan(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu,
                 int64_t n_seqs, const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  const ScanLayout l = scan_layout(d);
  if (l.smem_bytes > 48 * 1024)
    M3_CUDA_CHECK(cudaFuncSetAttribute(mamba3_scan_fwd<kR>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(l.smem_bytes)));
  mamba3_scan_fwd<kR><<<unsigned(n_seqs * d.H), l.threads, l.smem_bytes, ctx.stream>>>(d, in, cu, st, y, y_ld, l.ns,
                                                                                       l.kn);
  M3_CUDA_LAUNCH_CHECK();
}

void run_scan(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu, int64_t n_seqs,
              const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  if (n_seqs == 0) return;
  check(n_seqs * d.H <= INT_MAX, "Mamba-3 scan: " + std::to_string(n_seqs) + " sequences × " +
                                     std::to_string(d.H) + " heads exceed one launch's grid");
  if (d.R == 1) return launch_scan<1>(ctx, d, in, cu, n_seqs, st, y, y_ld);
  if (d.R == 2) return launch_scan<2>(ctx, d, in, cu, n_seqs, st, y, y_ld);
  if (d.R <= 4) return launch_scan<4>(ctx, d, in, cu, n_seqs, st, y, y_ld);
  if (d.R <= 8) return launch_scan<8>(ctx, d, in, cu, n_seqs, st, y, y_ld);
  return launch_scan<16>(ctx, d, in, cu, n_seqs, st, y, y_ld);
}

}  // namespace

void check_mamba3_scan_supported(const Context& ctx, const Mamba3ScanDims& d) {
  check(d.R <= kMamba3MaxRank, "Mamba-3 MIMO rank " + std::to_string(d.R) +
                                   ": the CUDA scan supports ranks up to " + std::to_string(kMamba3MaxRank));
  check(d.P <= kMaxThreads, "Mamba-3 headdim " + std::to_string(d.P) + ": the CUDA scan supports headdims up to " +
                                std::to_string(kMaxThreads));
  const ScanLayout l = scan_layout(d);
  check(l.smem_bytes <= ctx.prop.sharedMemPerBlockOptin,
        "Mamba-3 scan with headdim " + std::to_string(d.P) + ", d_state " + std::to_string(d.N) + ", rank " +
            std::to_string(d.R) + ": needs " + std::to_string(l.smem_bytes) + " bytes of shared memory per block, " +
            "the device has " + std::to_string(ctx.prop.sharedMemPerBlockOptin));
}

void mamba3_scan_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_dev,
                         int64_t n_seqs, const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  run_scan(ctx, d, in, cu_dev, n_seqs, st, y, y_ld);
}

}  // namespace m3::cuda
