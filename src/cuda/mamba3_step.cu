// Implements cuda/mamba3_scan.h's mamba3_scan_step: the recurrence of spec/mamba3.md §4 for one
// token per sequence, the arithmetic of the CPU step (cpu/mamba3_scan.cpp):
//   θ = (θ_prev + π·tanh(angle)·dt) mod 2π,  q̃_r = Rot_θ(q_r + C_bias[h, r]),  k̃_r likewise with B,
//   H = α H_prev + Σ_r (β v_{prev,r} k̃_{prev,r}ᵀ + γ v_r k̃_rᵀ),  y_r = H q̃_r + D[h] v_r,
// with α = exp(ADT), β = (1 − λ)·dt·α, γ = λ·dt, λ = sigmoid(trap), v_r = x ⊙ mimo_x[h, r].
//
// A decode step reads and writes the whole [P, N] state once and does a few flops per entry, so
// it is bound by memory bandwidth: the kernel streams the state through registers (16-byte
// accesses when the state is aligned for them), with several rows' loads issued before any of
// their arithmetic, and keeps only the small per-token vectors in shared memory. One block per
// (sequence, head): (1) θ, cos θ, sin θ; (2) q̃, k̃ and the previous k̃ into shared memory; (3) each
// group of NS lanes of a warp owns a row p at a time (vectors s, s + NS, ... of the row), updates
// it in registers, stores it and sums its share of y_r[p] = Σ_n H[p, n] q̃_r[n] across the group
// with shuffles. The block's last phase writes the new k̃ and x into the state, after a barrier
// that follows every thread's last read of the previous ones; θ[j] is read and written by the
// same thread only.
#include <climits>
#include <cstdint>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/mamba3_rotary.cuh"
#include "cuda/mamba3_scan.h"
#include "cuda/pdl.cuh"
#include "m3/error.h"

namespace m3::cuda {

namespace {

// Threads per step block, at most, when the batch fills the GPU. A block's life is a chain of dependent memory round trips
// (slot → θ and the previous k̃ → q, k → state rows → y, new k̃ and x) separated by barriers, and its
// state streaming is only a few of those trips; the SM's bandwidth comes from several blocks
// overlapping their chains, with bytes in flight per SM = blocks per SM × threads × kRows × 16.
// At ~100 registers per thread (SISO float4) a 512-thread block takes the SM's 65536 registers
// alone, so its prologue and barriers leave the memory idle. 128 threads (4 warps) keep the same
// resident warps as 4 blocks whose phases interleave (shared memory, 3·R·N + 3·S floats a block,
// does not limit them); each thread then streams several row batches of the head. Measured on the
// H200 (64 heads × 64 × 128): B=128 430 → 238 µs, B=16 59 → 35 µs against 512 threads.
constexpr int kStepThreads = 128;
// When there are too few blocks to put two on every SM (B=1: one per head), nothing overlaps and
// a wide block with fewer serial row batches per thread is faster (B=1: 9.7 µs against 14.7).
constexpr int kStepThreadsWide = 512;

// Blocks per SM asked of the register allocator (65536 / (blocks · kStepThreads) registers a
// thread): 4 (128 registers, the cap 512 threads implied) up to rank 4, which fits it without
// spilling (unbounded, rank 4 takes 158: 3 blocks); 3 (170) at ranks 8 and 16, which spill under 128.
template <int kR>
constexpr int step_blocks_per_sm() {
  return kR <= 4 ? 4 : 3;
}

// State entries moved per access: float4 (16 bytes) or float when the state is not 16-byte aligned.
template <int kW>
struct StateVec {
  float v[kW];
};

template <int kW>
__device__ inline StateVec<kW> load_state(const float* p) {
  StateVec<kW> r;
  if constexpr (kW == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    r.v[0] = f.x, r.v[1] = f.y, r.v[2] = f.z, r.v[3] = f.w;
  } else {
    r.v[0] = *p;
  }
  return r;
}

template <int kW>
__device__ inline void store_state(float* p, const StateVec<kW>& r) {
  if constexpr (kW == 4)
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  else
    *p = r.v[0];
}

// Rows a thread has in flight at once: its loads of kRows rows are issued before their updates.
// Rank-16 registers (β·v_prev, γ·v and an accumulator per rank and row) allow one.
template <int kR>
constexpr int step_rows_in_flight() {
  return kR <= 4 ? 4 : kR <= 8 ? 2 : 1;
}

struct StepLayout {
  int ns;       // lanes per row: a power of two ≤ 32, at most the row's vectors
  int threads;  // whole warps, ≤ the launch's maximum
  size_t smem_bytes;
};

StepLayout step_layout(const Mamba3ScanDims& d, int width, int rows_in_flight, int max_threads) {
  const int64_t nv = d.N / width;  // vectors per row
  int64_t ns = 1;
  while (ns < 32 && 2 * ns <= nv) ns *= 2;
  // Enough row groups for each thread to hold rows_in_flight rows of the head, up to max_threads;
  // past that each thread loops over several batches of rows.
  const int64_t groups = (d.P + rows_in_flight - 1) / rows_in_flight;
  int64_t threads = (groups * ns + 31) / 32 * 32;
  if (threads > max_threads) threads = max_threads;
  // q̃, k̃, previous k̃ [R][N] (first, so 16-byte aligned for the vector reads), θ, cos, sin [S].
  const int64_t floats = 3 * d.R * d.N + 3 * d.S;
  return {int(ns), int(threads), size_t(floats) * sizeof(float)};
}

// Block b: head b % H of sequence b / H (token b / H). kR ≥ R is the compiled rank (ranks r ≥ R
// are skipped); kW the state access width (N % kW = 0); kThreads the block size it is compiled for.
template <int kR, int kW, int kThreads>
__global__ void __launch_bounds__(kThreads, kThreads == kStepThreadsWide ? 1 : step_blocks_per_sm<kR>())
    mamba3_step_fwd(Mamba3ScanDims d, Mamba3ScanInputs in, Mamba3ScanStates st, float* y, int64_t y_ld, int ns) {
  constexpr int kRows = step_rows_in_flight<kR>();
  extern __shared__ float smem[];
  pdl_trigger();
  pdl_wait();
  const int64_t H = d.H, P = d.P, N = d.N, S = d.S, R = d.R;
  const int64_t t = blockIdx.x / H, h = blockIdx.x % H;
  const int tid = threadIdx.x, nthr = blockDim.x;
  float* qb = smem;
  float* kc = qb + R * N;
  float* kp = kc + R * N;
  float* theta = kp + R * N;
  float* cs = theta + S;
  float* sn = cs + S;

  const int64_t slot = st.slot[t];
  float* th_st = st.angle + slot * st.angle_stride + h * S;
  float* H_st = st.ssm + slot * st.ssm_stride + h * P * N;
  float* k_st = st.k + slot * st.k_stride;  // rank r of head h at (r·H + h)·N
  float* v_st = st.v + slot * st.v_stride + h * P;
  const int64_t g = h / (H / d.G);
  const float* mx = in.mimo_x ? in.mimo_x + h * R * P : nullptr;  // rank r at r·P

  // Lane s of row group pg owns vectors s + ns·k of rows pg + rg·j, kRows rows at a time.
  const int s = tid % ns, Ns = int(N), Rs = int(R);
  const int64_t pg = tid / ns, rg = nthr / ns, nv = N / kW;
  // The state rows of batch (base, vector k) into v; rows past P stay zero.
  auto load_rows = [&](int64_t base, int64_t k, StateVec<kW>(&v)[kRows]) {
#pragma unroll
    for (int b = 0; b < kRows; ++b) {
      const int64_t p = base + pg + b * rg;
      v[b] = p < P ? load_state<kW>(H_st + p * N + k * kW) : StateVec<kW>{};
    }
  };
  // The state does not depend on the token: its first batch streams in during (1) and (2), and
  // each batch's loads are issued before the previous batch's arithmetic (at ranks ≤ 2, whose
  // registers allow a second batch in flight). Measured on the H200 (64 heads × 64 × 128):
  // B = 1 / 16 / 128 9.9 / 34.6 / 238 → 8.8 / 32.3 / 224 µs. (Copying the whole head state into
  // shared memory with cp.async before the prologue instead was slower: 9.0 / 37.9 / 237 µs.)
  constexpr bool kPipelined = kR <= 2;
  StateVec<kW> hv[kRows] = {};
  if constexpr (kPipelined) load_rows(0, s, hv);
  const float* xt = in.x + t * in.x_ld + h * P;
  const float dt = in.dt[t * H + h], Dh = in.D[h];
  const float lam = sigmoid(in.trap[t * in.trap_ld + h]);
  const float alpha = expf(in.adt[t * H + h]), beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;

  // (1) θ, the reduction mod 2π the reference's (spec §3); θ[j] is this thread's alone, so the new
  // value may replace the old one in the state at once.
  const float* raw = in.angle + t * in.angle_ld;
  for (int64_t j = tid; j < S; j += nthr) {
    const float th = mamba3_wrap_angle(th_st[j] + mamba3_angle_step(raw[j], dt));
    theta[j] = th;
    th_st[j] = th;
    sincosf(th, &sn[j], &cs[j]);
  }
  for (int64_t e = tid; e < R * N; e += nthr) kp[e] = k_st[((e / N) * H + h) * N + e % N];
  __syncthreads();
  // (2) q̃ and k̃ of the token.
  for (int64_t e = tid; e < R * N; e += nthr) {
    const int64_t r = e / N, n = e % N;
    const int64_t off = t * in.qk_ld + (r * d.G + g) * N, bo = (h * R + r) * N;
    qb[e] = mamba3_rotated(in.q + off, in.q_bias + bo, n, N, S, d.halves_pairing, cs, sn);
    kc[e] = mamba3_rotated(in.k + off, in.k_bias + bo, n, N, S, d.halves_pairing, cs, sn);
  }
  __syncthreads();

  // (3) The loop over row batches is the same for the whole block, so that every lane reaches the
  // shuffles.
  for (int64_t base = 0; base < P; base += kRows * rg) {
    const int64_t p0 = base + pg;
    float bp[kRows][kR], gp[kRows][kR], acc[kRows][kR];
#pragma unroll
    for (int b = 0; b < kRows; ++b) {
      const int64_t p = p0 + b * rg;
      const bool row = p < P;
      const float xp = row ? xt[p] : 0.0f, vpp = row ? v_st[p] : 0.0f;
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const float m = (r < Rs && row) ? (mx ? mx[r * P + p] : 1.0f) : 0.0f;
        bp[b][r] = beta * (vpp * m);
        gp[b][r] = gamma * (xp * m);
        acc[b][r] = 0.0f;
      }
    }
    for (int64_t k = s; k < nv; k += ns) {
      StateVec<kW> next[kRows] = {};
      if constexpr (kPipelined) {
        const bool same_rows = k + ns < nv;
        const int64_t nbase = same_rows ? base : base + kRows * rg;
        if (nbase < P) load_rows(nbase, same_rows ? k + ns : s, next);
      } else {
        load_rows(base, k, hv);
      }
      const int n0 = int(k) * kW;
#pragma unroll
      for (int b = 0; b < kRows; ++b) {
#pragma unroll
        for (int w = 0; w < kW; ++w) hv[b].v[w] *= alpha;
      }
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        if (r >= Rs) break;
        const StateVec<kW> kpv = load_state<kW>(kp + r * Ns + n0), kcv = load_state<kW>(kc + r * Ns + n0);
#pragma unroll
        for (int b = 0; b < kRows; ++b) {
#pragma unroll
          for (int w = 0; w < kW; ++w) hv[b].v[w] += bp[b][r] * kpv.v[w] + gp[b][r] * kcv.v[w];
        }
      }
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        if (r >= Rs) break;
        const StateVec<kW> qv = load_state<kW>(qb + r * Ns + n0);
#pragma unroll
        for (int b = 0; b < kRows; ++b) {
#pragma unroll
          for (int w = 0; w < kW; ++w) acc[b][r] += hv[b].v[w] * qv.v[w];
        }
      }
#pragma unroll
      for (int b = 0; b < kRows; ++b)
        if (p0 + b * rg < P) store_state<kW>(H_st + (p0 + b * rg) * N + k * kW, hv[b]);
      if constexpr (kPipelined) {
#pragma unroll
        for (int b = 0; b < kRows; ++b) hv[b] = next[b];
      }
    }
#pragma unroll
    for (int b = 0; b < kRows; ++b) {
      const int64_t p = p0 + b * rg;
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        if (r >= Rs) break;  // R is the same for the whole block
        const float yr = lane_group_sum(acc[b][r], ns);
        if (p < P && s == 0) y[t * y_ld + (r * H + h) * P + p] = yr + Dh * (xt[p] * (mx ? mx[r * P + p] : 1.0f));
      }
    }
  }

  // The token's k̃ and x become the previous ones, once every thread has read those.
  __syncthreads();
  for (int64_t e = tid; e < R * N; e += nthr) k_st[((e / N) * H + h) * N + e % N] = kc[e];
  for (int64_t e = tid; e < P; e += nthr) v_st[e] = xt[e];
}

template <int kR, int kW, int kThreads>
void launch_step_as(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, unsigned blocks,
                    const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  const StepLayout l = step_layout(d, kW, step_rows_in_flight<kR>(), kThreads);
  // At most 3·16·N + 3·S floats: over 48 KB only for d_state beyond 256 at rank 16.
  if (l.smem_bytes > 48 * 1024)
    M3_CUDA_CHECK(cudaFuncSetAttribute(mamba3_step_fwd<kR, kW, kThreads>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(l.smem_bytes)));
  launch_pdl(mamba3_step_fwd<kR, kW, kThreads>, dim3(blocks), dim3(l.threads), l.smem_bytes, ctx.stream, d, in, st,
             y, y_ld, l.ns);
}

template <int kR>
void launch_step(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                 const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  const bool vec4 = d.N % 4 == 0 && st.ssm_stride % 4 == 0 && reinterpret_cast<uintptr_t>(st.ssm) % 16 == 0;
  const unsigned blocks = unsigned(n_seqs * d.H);
  const bool wide = int64_t(blocks) < 2 * int64_t(ctx.prop.multiProcessorCount);
  if (vec4)
    wide ? launch_step_as<kR, 4, kStepThreadsWide>(ctx, d, in, blocks, st, y, y_ld)
         : launch_step_as<kR, 4, kStepThreads>(ctx, d, in, blocks, st, y, y_ld);
  else
    wide ? launch_step_as<kR, 1, kStepThreadsWide>(ctx, d, in, blocks, st, y, y_ld)
         : launch_step_as<kR, 1, kStepThreads>(ctx, d, in, blocks, st, y, y_ld);
}

}  // namespace

void mamba3_scan_step(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t n_seqs,
                      const Mamba3ScanStates& st, float* y, int64_t y_ld) {
  if (n_seqs == 0) return;
  check(n_seqs * d.H <= INT_MAX, "Mamba-3 step: " + std::to_string(n_seqs) + " sequences × " + std::to_string(d.H) +
                                     " heads exceed one launch's grid");
  if (d.R == 1) return launch_step<1>(ctx, d, in, n_seqs, st, y, y_ld);
  if (d.R == 2) return launch_step<2>(ctx, d, in, n_seqs, st, y, y_ld);
  if (d.R <= 4) return launch_step<4>(ctx, d, in, n_seqs, st, y, y_ld);
  if (d.R <= 8) return launch_step<8>(ctx, d, in, n_seqs, st, y, y_ld);
  return launch_step<16>(ctx, d, in, n_seqs, st, y, y_ld);
}

}  // namespace m3::cuda
