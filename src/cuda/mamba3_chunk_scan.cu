// Implements cuda/mamba3_chunk_scan.h: spec/mamba3.md §6 in the σ form the CPU runs
// (cpu/mamba3_scan.cpp). With σ_t = λ_t dt_t + c_t, c_t = (1 − λ_{t+1}) dt_{t+1} (0 for a
// sequence's last token), the state G_t = H_t + c_t Σ_r v_{t,r} k̃_{t,r}ᵀ obeys
//   G_t = α_t G_{t−1} + σ_t Σ_r v_{t,r} k̃_{t,r}ᵀ,   G_{−1} = Ĥ,   G_{L−1} = H_{L−1},
//   y_{t,r} = G_t q̃_{t,r} − c_t Σ_r' (q̃_{t,r}·k̃_{t,r'}) v_{t,r'} + D v_{t,r}.
// A chunk of tokens i entering with G_in, a_i = Σ_{u ≤ i} ADT_u within the chunk:
//   y_{i,r} = e^{a_i} G_in q̃_{i,r} + Σ_{j ≤ i, r'} M_{ir,jr'} v_{j,r'} + D v_{i,r},
//     M_{ir,jr'} = e^{a_i − a_j} σ_j (q̃_{i,r}·k̃_{j,r'}) for j < i, (σ_i − c_i)(q̃_{i,r}·k̃_{i,r'}) for j = i;
//   G_out = e^{a_end} G_in + S_c,   S_c = Σ_{j,r} e^{a_end − a_j} σ_j v_{j,r} k̃_{j,r}ᵀ.
// Exponents are differences of cumulative sums within a chunk, all ≤ 0 (spec §8).
//
// A chunk holds at most kMaxRows (token, rank) rows, so every product below is one 64-row tile.
// Four launches on the stream, each sequence's chunks listed in a table built on the host:
//  1. mamba3_chunk_angles, block per (sequence, head): each chunk's sum of angle steps, then the
//     angle entering each chunk by a walk over the chunks from the slot's angle (reduced mod 2π per
//     chunk; inside a chunk the kernels below walk the tokens as the CPU does).
//  2. mamba3_chunk_state, block per (chunk, head): S_c [P, N] = Σ_rows (w·v)ᵀ k̃, and e^{a_end}.
//  3. mamba3_chunk_pass, block per (sequence, head, run of state entries): G over the chunks in
//     order, Ĥ first; overwrites each S_c with the G_in of its chunk; the final G to the slot.
//  4. mamba3_chunk_out, block per (chunk, head): the masked score matrix q̃ k̃ᵀ ∘ M, then
//     y = M V + (e^{a} q̃) G_inᵀ + D v as one product over the concatenated inner dimension; the
//     sequence's last chunk stores θ, k̃ and x of the last token to the slot.
// The products are FP32 SIMT tiles from shared memory (block_gemm).
#include "cuda/mamba3_chunk_scan.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/mamba3_rotary.cuh"
#include "m3/error.h"

namespace m3::cuda {

namespace {

constexpr int64_t kMaxRows = 64;  // (token, rank) rows per chunk: one tile of block_gemm
constexpr int kGemmThreads = 256;  // block_gemm's 16 × 16 threads
constexpr int kAngleThreads = 128;
constexpr int kPassThreads = 256;
constexpr int kAhead = 8;  // chunks whose loads the walks over chunks issue together

// C = Σ_k A(k, i) B(k, j) for i < M, j < Nc, each entry handed to out(i, j, c). The block's 256
// threads as 16 × 16 (tx fastest) cover C in 64 × 64 tiles, thread (ty, tx) holding rows ty + 16u
// and columns tx + 16v (u, v < 4) in registers: the 16 lanes of a half warp read 16 consecutive
// columns, or 16 rows of an odd stride, of B — distinct banks — and two rows of A. Out-of-range
// rows and columns read the last valid one and are not handed out. No barrier inside.
template <class FA, class FB, class FOut>
__device__ void block_gemm(int M, int Nc, int K, FA A, FB B, FOut out) {
  const int tx = int(threadIdx.x) % 16, ty = int(threadIdx.x) / 16;
  for (int i0 = 0; i0 < M; i0 += 64)
    for (int j0 = 0; j0 < Nc; j0 += 64) {
      int ii[4], jj[4];
      float acc[4][4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        ii[u] = min(i0 + ty + 16 * u, M - 1);
        jj[u] = min(j0 + tx + 16 * u, Nc - 1);
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = 0.0f;
      }
      for (int k = 0; k < K; ++k) {
        float a[4], b[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) a[u] = A(k, ii[u]), b[u] = B(k, jj[u]);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
          for (int v = 0; v < 4; ++v) acc[u][v] = fmaf(a[u], b[v], acc[u][v]);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const int i = i0 + ty + 16 * u, j = j0 + tx + 16 * v;
          if (i < M && j < Nc) out(i, j, acc[u][v]);
        }
    }
}

// The chunk table (host-built): chunk_first [n_seqs + 1] (sequence i owns chunks
// [chunk_first[i], chunk_first[i + 1])), then the sequence of each chunk.
struct ChunkPos {
  int64_t seq, t0, n, end;  // rows [t0, t0 + n) of the batch; the sequence ends before row end
  bool last;                // the sequence's last chunk
};

__device__ ChunkPos chunk_pos(const int64_t* table, int64_t n_seqs, const int64_t* cu, int64_t c, int64_t Qt) {
  const int64_t i = table[n_seqs + 1 + c];
  const int64_t t0 = cu[i] + (c - table[i]) * Qt, end = cu[i + 1];
  return {i, t0, std::min(Qt, end - t0), end, t0 + Qt >= end};
}

// Shared-memory layout of one chunk, in floats: per token a, σ, c [Qt]; cos, sin [Qt][S] (the
// output kernel's score matrix [rows][ldr] later in the same place); k̃ [rows][ldn] (the output
// kernel also holds q̃ there, and G_in [P][ldn] in k̃'s place later); v [rows][P]. Odd row strides
// ldn, ldr keep block_gemm's column reads of k̃, G_in and the scores free of bank conflicts.
struct ChunkSmem {
  int64_t rows, ldn, ldr;
  int64_t tok, trig, qk, kg, v, floats;
};

ChunkSmem chunk_smem(const Mamba3ScanDims& d, int64_t Qt, bool out) {
  ChunkSmem s{};
  s.rows = Qt * d.R;
  s.ldn = d.N | 1;
  s.ldr = s.rows | 1;
  s.tok = 0;
  s.trig = 3 * Qt;
  const int64_t trig = out ? std::max(2 * Qt * d.S, s.rows * s.ldr) : 2 * Qt * d.S;
  s.qk = s.trig + trig;
  s.kg = s.qk + (out ? s.rows * s.ldn : 0);
  s.v = s.kg + (out ? std::max(s.rows, d.P) : s.rows) * s.ldn;
  s.floats = s.v + s.rows * d.P;
  return s;
}

// The chunk's per-token scalars and angles (spec §3, §6): a_i (inclusive sum of ADT within the
// chunk), c_i, σ_i, and cos θ_i, sin θ_i [n][S] with θ walked token by token from theta0 as the
// CPU walks it; θ of the chunk's last token to theta_out when given. Ends with a barrier.
__device__ void chunk_scalars(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const ChunkPos& c, int64_t h,
                              const float* theta0, float* a, float* sig, float* cw, float* cs, float* sn,
                              float* theta_out) {
  const int tid = int(threadIdx.x), nthr = int(blockDim.x);
  const int64_t H = d.H, S = d.S;
  for (int64_t i = tid; i < c.n; i += nthr) {
    const int64_t t = c.t0 + i;
    const float dt = in.dt[t * H + h], lam = sigmoid(in.trap[t * in.trap_ld + h]);
    const float next =
        t + 1 < c.end ? (1.0f - sigmoid(in.trap[(t + 1) * in.trap_ld + h])) * in.dt[(t + 1) * H + h] : 0.0f;
    cw[i] = next;
    sig[i] = lam * dt + next;
    a[i] = in.adt[t * H + h];
  }
  for (int64_t e = tid; e < c.n * S; e += nthr) {
    const int64_t t = c.t0 + e / S;
    cs[e] = mamba3_angle_step(in.angle[t * in.angle_ld + e % S], in.dt[t * H + h]);
  }
  __syncthreads();
  for (int64_t j = tid; j < S; j += nthr) {
    float th = theta0[j];
    for (int64_t i = 0; i < c.n; ++i) cs[i * S + j] = th = mamba3_wrap_angle(th + cs[i * S + j]);
    if (theta_out) theta_out[j] = th;
  }
  if (tid == nthr - 1) {
    float sum = 0.0f;
    for (int64_t i = 0; i < c.n; ++i) a[i] = sum += a[i];
  }
  __syncthreads();
  for (int64_t e = tid; e < c.n * S; e += nthr) {
    const float th = cs[e];
    sincosf(th, &sn[e], &cs[e]);
  }
  __syncthreads();
}

// Rows m = i·R + r (token i, rank r) of k̃ — and of q̃ when q is given — [rows][ld], rotated by
// the token's angle; v [rows][P] = w_i · x_i[h] ⊙ mimo_x[h, r] (w null: 1). No barrier.
__device__ void chunk_rows(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const ChunkPos& c, int64_t h,
                           const float* cs, const float* sn, const float* w, int64_t ld, float* k, float* q,
                           float* v) {
  const int tid = int(threadIdx.x), nthr = int(blockDim.x);
  const int64_t R = d.R, N = d.N, P = d.P, S = d.S, rows = c.n * R;
  const int64_t g = h / (d.H / d.G);
  for (int64_t e = tid; e < rows * N; e += nthr) {
    const int64_t m = e / N, n = e % N, i = m / R, r = m % R;
    const int64_t off = (c.t0 + i) * in.qk_ld + (r * d.G + g) * N, bo = (h * R + r) * N;
    k[m * ld + n] = mamba3_rotated(in.k + off, in.k_bias + bo, n, N, S, d.halves_pairing, cs + i * S, sn + i * S);
    if (q)
      q[m * ld + n] = mamba3_rotated(in.q + off, in.q_bias + bo, n, N, S, d.halves_pairing, cs + i * S, sn + i * S);
  }
  for (int64_t e = tid; e < rows * P; e += nthr) {
    const int64_t m = e / P, p = e % P, i = m / R, r = m % R;
    const float x = in.x[(c.t0 + i) * in.x_ld + h * P + p] * (in.mimo_x ? in.mimo_x[(h * R + r) * P + p] : 1.0f);
    v[e] = w ? w[i] * x : x;
  }
}

// Block (sequence i, head h): theta0 [chunk, h, S] = the angle entering each of the sequence's
// chunks. Each chunk's steps are summed, then walked over from the slot's angle.
__global__ void mamba3_chunk_angles(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, const int64_t* table,
                                    int64_t Qt, Mamba3ScanStates st, float* theta0) {
  const int64_t H = d.H, S = d.S;
  const int64_t i = blockIdx.x / H, h = blockIdx.x % H, start = cu[i], end = cu[i + 1];
  if (start == end) return;
  const int tid = int(threadIdx.x), nthr = int(blockDim.x);
  const int64_t c0 = table[i], nc = table[i + 1] - c0;
  for (int64_t e = tid; e < nc * S; e += nthr) {
    const int64_t k = e / S, j = e % S, ts = start + k * Qt, te = std::min(ts + Qt, end);
    float sum = 0.0f;
    for (int64_t t = ts; t < te; ++t) sum += mamba3_angle_step(in.angle[t * in.angle_ld + j], in.dt[t * H + h]);
    theta0[((c0 + k) * H + h) * S + j] = sum;
  }
  __syncthreads();
  const float* th_st = st.angle + st.slot[i] * st.angle_stride + h * S;
  for (int64_t j = tid; j < S; j += nthr) {
    float th = th_st[j];
    for (int64_t k0 = 0; k0 < nc; k0 += kAhead) {  // loads ahead of stores, as in mamba3_chunk_pass
      float step[kAhead];
#pragma unroll
      for (int k = 0; k < kAhead; ++k) step[k] = k0 + k < nc ? theta0[((c0 + k0 + k) * H + h) * S + j] : 0.0f;
#pragma unroll
      for (int k = 0; k < kAhead; ++k)
        if (k0 + k < nc) {
          theta0[((c0 + k0 + k) * H + h) * S + j] = th;
          th = mamba3_wrap_angle(th + step[k]);
        }
    }
  }
}

// Block (chunk c, head h): S_c [P, N] = Σ_m (w_m v_m)ᵀ k̃_m over the chunk's rows m, w = e^{a_end − a_i} σ_i,
// into states [c, h]; e^{a_end} into decay [c, h].
__global__ void __launch_bounds__(kGemmThreads)
    mamba3_chunk_state(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, const int64_t* table,
                       int64_t n_seqs, int64_t Qt, ChunkSmem l, const float* theta0, float* states, float* decay) {
  extern __shared__ float smem[];
  const int64_t H = d.H, P = d.P, N = d.N;
  const int64_t c = blockIdx.x / H, h = blockIdx.x % H;
  const ChunkPos pos = chunk_pos(table, n_seqs, cu, c, Qt);
  float *a = smem + l.tok, *sig = a + Qt, *w = sig + Qt, *cs = smem + l.trig, *sn = cs + Qt * d.S;
  float *k = smem + l.kg, *v = smem + l.v;
  chunk_scalars(d, in, pos, h, theta0 + (c * H + h) * d.S, a, sig, w, cs, sn, nullptr);
  const float a_end = a[pos.n - 1];
  for (int64_t i = threadIdx.x; i < pos.n; i += blockDim.x) w[i] = expf(a_end - a[i]) * sig[i];
  __syncthreads();
  chunk_rows(d, in, pos, h, cs, sn, w, l.ldn, k, nullptr, v);
  __syncthreads();
  const int64_t ldn = l.ldn;
  float* out = states + (c * H + h) * P * N;
  block_gemm(
      int(P), int(N), int(pos.n * d.R), [&](int m, int p) { return v[m * P + p]; },
      [&](int m, int n) { return k[m * ldn + n]; }, [&](int p, int n, float s) { out[p * N + n] = s; });
  if (threadIdx.x == 0) decay[c * H + h] = expf(a_end);
}

// Block (sequence i, head h, run b of kPassThreads state entries e = (p, n)): G = Ĥ, then per
// chunk states[c] ← G, G ← decay_c G + S_c; the final G is the sequence's H_{L−1}, to the slot.
__global__ void mamba3_chunk_pass(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, const int64_t* table,
                                  int64_t runs, Mamba3ScanStates st, float* states, const float* decay) {
  const int64_t H = d.H, P = d.P, N = d.N, R = d.R;
  const int64_t ih = blockIdx.x / runs, i = ih / H, h = ih % H, t0 = cu[i];
  const int64_t e = (blockIdx.x % runs) * blockDim.x + threadIdx.x;
  if (t0 == cu[i + 1] || e >= P * N) return;
  const int64_t p = e / N, n = e % N, slot = st.slot[i];
  // Ĥ = H₋ + (1 − λ₀) dt₀ Σ_r (v₋ ⊙ mimo_x[h, r]) k̃₋_rᵀ (spec §6).
  const float scale = (1.0f - sigmoid(in.trap[t0 * in.trap_ld + h])) * in.dt[t0 * H + h];
  const float vp = st.v[slot * st.v_stride + h * P + p];
  float G = st.ssm[slot * st.ssm_stride + h * P * N + e];
  for (int64_t r = 0; r < R; ++r)
    G += scale * vp * (in.mimo_x ? in.mimo_x[(h * R + r) * P + p] : 1.0f) *
         st.k[slot * st.k_stride + (r * H + h) * N + n];
  // kAhead chunks' contributions are loaded before any store, so that the loads of a long
  // sequence overlap instead of each waiting for the previous chunk's update.
  for (int64_t c0 = table[i], c1 = table[i + 1]; c0 < c1; c0 += kAhead) {
    float contribution[kAhead], dec[kAhead];
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      const bool on = c0 + k < c1;
      contribution[k] = on ? states[((c0 + k) * H + h) * P * N + e] : 0.0f;
      dec[k] = on ? decay[(c0 + k) * H + h] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kAhead; ++k)
      if (c0 + k < c1) {
        states[((c0 + k) * H + h) * P * N + e] = G;
        G = dec[k] * G + contribution[k];
      }
  }
  st.ssm[slot * st.ssm_stride + h * P * N + e] = G;
}

// Block (chunk c, head h): the chunk's outputs (see the top of the file); the sequence's last
// chunk also stores θ, k̃ and x of its last token to the slot.
__global__ void __launch_bounds__(kGemmThreads)
    mamba3_chunk_out(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, const int64_t* table, int64_t n_seqs,
                     int64_t Qt, ChunkSmem l, const float* theta0, const float* states, Mamba3ScanStates st, float* y,
                     int64_t y_ld) {
  extern __shared__ float smem[];
  const int64_t H = d.H, P = d.P, N = d.N, R = d.R, S = d.S;
  const int64_t c = blockIdx.x / H, h = blockIdx.x % H;
  const ChunkPos pos = chunk_pos(table, n_seqs, cu, c, Qt);
  const int64_t slot = st.slot[pos.seq], rows = pos.n * R, ldn = l.ldn, ldr = l.ldr;
  float *a = smem + l.tok, *sig = a + Qt, *cw = sig + Qt, *cs = smem + l.trig, *sn = cs + Qt * S;
  float *q = smem + l.qk, *k = smem + l.kg, *v = smem + l.v;
  float* scores = smem + l.trig;  // over cos, sin once the rows are built
  chunk_scalars(d, in, pos, h, theta0 + (c * H + h) * S, a, sig, cw, cs, sn,
                pos.last ? st.angle + slot * st.angle_stride + h * S : nullptr);
  chunk_rows(d, in, pos, h, cs, sn, nullptr, ldn, k, q, v);
  __syncthreads();
  const int tid = int(threadIdx.x), nthr = int(blockDim.x);
  if (pos.last) {
    const int64_t last = pos.n - 1;
    for (int64_t e = tid; e < R * N; e += nthr)
      st.k[slot * st.k_stride + ((e / N) * H + h) * N + e % N] = k[(last * R + e / N) * ldn + e % N];
    for (int64_t p = tid; p < P; p += nthr)
      st.v[slot * st.v_stride + h * P + p] = in.x[(pos.t0 + last) * in.x_ld + h * P + p];
  }
  const int Ri = int(R);
  block_gemm(
      int(rows), int(rows), int(N), [&](int n, int m) { return q[m * ldn + n]; },
      [&](int n, int m) { return k[m * ldn + n]; },
      [&](int mi, int mj, float s) {
        const int ti = mi / Ri, tj = mj / Ri;
        const float coef = tj < ti ? expf(a[ti] - a[tj]) * sig[tj] : tj == ti ? sig[ti] - cw[ti] : 0.0f;
        scores[mi * ldr + mj] = coef * s;
      });
  __syncthreads();
  for (int64_t e = tid; e < rows * N; e += nthr) q[(e / N) * ldn + e % N] *= expf(a[e / N / R]);
  const float* G = states + (c * H + h) * P * N;
  for (int64_t e = tid; e < P * N; e += nthr) k[(e / N) * ldn + e % N] = G[e];
  __syncthreads();
  const int rows_i = int(rows);
  const float Dh = in.D[h];
  block_gemm(
      rows_i, int(P), rows_i + int(N),
      [&](int kk, int m) { return kk < rows_i ? scores[m * ldr + kk] : q[m * ldn + kk - rows_i]; },
      [&](int kk, int p) { return kk < rows_i ? v[kk * P + p] : k[p * ldn + kk - rows_i]; },
      [&](int m, int p, float s) {
        y[(pos.t0 + m / Ri) * y_ld + ((m % Ri) * H + h) * P + p] = s + Dh * v[m * P + p];
      });
}

void set_smem(const void* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    M3_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace

int64_t mamba3_chunk_tokens(const Mamba3ScanDims& d, int64_t chunk) {
  return std::max<int64_t>(1, std::min(chunk, kMaxRows / std::max<int64_t>(d.R, 1)));
}

bool mamba3_chunk_scan_fits(const Context& ctx, const Mamba3ScanDims& d, int64_t chunk) {
  const int64_t Qt = mamba3_chunk_tokens(d, chunk);
  if (d.R > kMaxRows || d.P * d.N > INT_MAX) return false;
  const int64_t bytes = std::max(chunk_smem(d, Qt, true).floats, chunk_smem(d, Qt, false).floats) * 4;
  return bytes <= int64_t(ctx.prop.sharedMemPerBlockOptin);
}

void mamba3_chunk_scan_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in,
                               const int64_t* cu_host, const int64_t* cu_dev, int64_t n_seqs,
                               const Mamba3ScanStates& st, float* y, int64_t y_ld, int64_t chunk,
                               Mamba3ChunkScratch& scratch) {
  const int64_t Qt = mamba3_chunk_tokens(d, chunk), H = d.H;
  std::vector<int64_t> table(size_t(n_seqs + 1));
  int64_t n_chunks = 0;
  for (int64_t i = 0; i < n_seqs; ++i) {
    table[size_t(i)] = n_chunks;
    n_chunks += (cu_host[i + 1] - cu_host[i] + Qt - 1) / Qt;
  }
  table[size_t(n_seqs)] = n_chunks;
  if (n_chunks == 0) return;  // every sequence has length 0
  for (int64_t i = 0; i < n_seqs; ++i)
    for (int64_t c = table[size_t(i)]; c < table[size_t(i) + 1]; ++c) table.push_back(i);
  const int64_t runs = (d.P * d.N + kPassThreads - 1) / kPassThreads;
  check(n_chunks * H <= INT_MAX && n_seqs * H * runs <= INT_MAX,
        "Mamba-3 chunked scan: " + std::to_string(n_chunks) + " chunks × " + std::to_string(H) +
            " heads exceed one launch's grid");
  const int64_t* tab = upload_small(ctx, scratch.table, table.data(), table.size());
  float* theta0 = scratch.theta0.get(ctx, size_t(std::max<int64_t>(n_chunks * H * d.S, 1)));
  float* states = scratch.states.get(ctx, size_t(n_chunks * H * d.P * d.N));
  float* decay = scratch.decay.get(ctx, size_t(n_chunks * H));

  mamba3_chunk_angles<<<unsigned(n_seqs * H), kAngleThreads, 0, ctx.stream>>>(d, in, cu_dev, tab, Qt, st, theta0);
  M3_CUDA_LAUNCH_CHECK();
  const ChunkSmem ls = chunk_smem(d, Qt, false), lo = chunk_smem(d, Qt, true);
  const size_t state_bytes = size_t(ls.floats) * sizeof(float), out_bytes = size_t(lo.floats) * sizeof(float);
  set_smem(reinterpret_cast<const void*>(mamba3_chunk_state), state_bytes);
  mamba3_chunk_state<<<unsigned(n_chunks * H), kGemmThreads, state_bytes, ctx.stream>>>(d, in, cu_dev, tab, n_seqs, Qt, ls, theta0, states, decay);
  M3_CUDA_LAUNCH_CHECK();
  mamba3_chunk_pass<<<unsigned(n_seqs * H * runs), kPassThreads, 0, ctx.stream>>>(d, in, cu_dev, tab, runs, st, states, decay);
  M3_CUDA_LAUNCH_CHECK();
  set_smem(reinterpret_cast<const void*>(mamba3_chunk_out), out_bytes);
  mamba3_chunk_out<<<unsigned(n_chunks * H), kGemmThreads, out_bytes, ctx.stream>>>(d, in, cu_dev, tab, n_seqs, Qt, lo, theta0, states, st, y, y_ld);
  M3_CUDA_LAUNCH_CHECK();
}

}  // namespace m3::cuda
