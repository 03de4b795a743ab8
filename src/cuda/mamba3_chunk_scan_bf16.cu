// Implements cuda/mamba3_chunk_scan_bf16.h: spec/mamba3.md §6 in the σ form of
// cuda/mamba3_chunk_scan.cu (whose header comment derives it). Per chunk of a sequence entering
// with state G (fp32, [P, N]), a_i the inclusive sum of ADT within the chunk:
//   y_{i,r} = e^{a_i} q̃_{i,r} Gᵀ + Σ_{j,r'} M_{ir,jr'} v_{j,r'} + D v_{i,r},
//     M_{ir,jr'} = e^{a_i − a_j} σ_j (q̃_{i,r}·k̃_{j,r'}) for j < i, (σ_i − c_i)(q̃_{i,r}·k̃_{i,r'}) for j = i;
//   G ← e^{a_end} G + Σ_{j,r} v_{j,r} (w_j k̃_{j,r})ᵀ,  w_j = e^{a_end − a_j} σ_j.
// A chunk is 64 (token, rank) rows: 64 tokens SISO, 64 / R for rank R.
//
// Block (sequence, head), 16 warps, per chunk (its raw inputs staged by cp.async during the
// previous chunk's products):
//  1. warp 0: a_i, σ_i, c_i, e^{a_i}, w_i by a warp scan over the tokens; warps 1–15: the angles
//     θ_{i,j} = θ_in,j + Σ_{u ≤ i} π tanh(angle_{u,j}) dt_u, reduced mod 2π (one scan per angle);
//  2. rows: q̃, k̃ rotated (bias first) as fp16, w k̃ and V as bf16 [rows][·];
//  3. scores q̃ k̃ᵀ (warp: 16 rows × 16 columns), masked and scaled into M (bf16 [rows][rows]);
//  4. y = e^{a} ⊙ (q̃ Gᵀ) + M V + D v (warp: 16 rows × 16 of P) to device memory, and the
//     state update on G in registers (warp: 16 of P × N/4);
//  5. G to its fp16 copy for the next chunk's q̃ Gᵀ, scaled by a power of two 2^s that puts the
//     largest |G| just under 2^15 (the product is scaled back by 2^−s with e^{a}).
// Precision: q̃, k̃ and G, the operands of the two products q̃ enters, are fp16 rather than bf16
// (relative rounding 2^−11 instead of 2^−8). With bf16 there, Mamba-2's unnormalised B and C made
// the rounding of the scores the largest error of a layer's output: in a float64 emulation of the
// 130M-shaped layer (scripts/emulate_scan_precision.py; bf16 GEMM inputs on both sides) the worst
// row's error exceeded 2% of the row in 33% of random draws, 7% with fp16 q̃, k̃ and G, 0% with an
// fp32 scan; M's bf16 rounding is most of what is left.
// q̃ and k̃ beyond fp16's range saturate at ±65504 (B and C of trained models are far below);
// G cannot overflow (scaled); w k̃, V and M stay bf16, whose range the decays and dt need.
// θ, G and the last token's k̃ and x go to the slot after the last chunk.
//
// Split sequences. With fewer (sequence, head) pairs than SMs (batch 1: 64 heads on 132 SMs) a
// block per pair leaves SMs idle, so each sequence is cut into `segments` parts of whole chunks,
// each walked by a block of its own. The state entering part s follows from the parts before it:
// a first launch (the same kernel, kStates) runs the chunk recurrence over each of `subsegments`
// pieces of every part but the last, from G = 0 and θ = 0, keeping only the piece's own state
// change G_j (in its local rotary frame), its decay total A_j = Σ ADT and its angle advance Θ_j.
// The second launch's block for part s starts from Ĥ and θ_in (which the first launch copied out
// of the slot, so that no block of the second reads the slot that the last part writes) and folds
// the pieces before it in order:
//   G ← e^{A_j} G + Rot_N(θ) G_j,  θ ← θ + Θ_j,
// Rot_N(θ) rotating G's N index pairwise as k̃ is rotated (§3): a piece's keys are its local ones
// turned by the angle at its start, and G is linear in them. The σ_j of a piece's last token
// reads the next token's λ and dt as it does unsplit (the lookahead crosses piece boundaries).
#include "cuda/mamba3_chunk_scan_bf16.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/mamba3_rotary.cuh"
#include "cuda/mma.cuh"
#include "m3/error.h"

namespace m3::cuda {

namespace {

constexpr int kP = 64;      // headdim
constexpr int kRows = 64;   // (token, rank) rows per chunk
// 16 warps: a block is alone on its SM (its shared memory), so its own warps are all there is to
// hide the latencies of shared memory, the special-function unit and the tensor cores.
constexpr int kWarps = 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kLdRows = kRows + 8;  // row stride of V and M (P = rows = 64): 144 bytes
constexpr int kLdTheta = kRows + 1;
constexpr int kMaxRank = 4;  // ranks 1, 2, 4 are compiled

// Shared memory of one block, byte offsets. 16-bit tiles (fp16 q̃, k̃ and G, bf16 the rest; row
// strides 16-byte multiples that put ldmatrix's 8 rows in distinct banks): q̃, k̃, w k̃ [rows][N + 8],
// G [P][N + 8], V [rows][P + 8], M [rows][rows + 8]; fp32: θ [N/2][rows + 1] (angle-major, so that
// both a thread per angle and a thread per token read distinct banks), θ_in [N/2], per token a,
// e^a, σ, c, w [rows], then e^{a_end}, the first launch's Σ ADT and each warp's max |G|; the q and k biases
// [R][N] and mimo_x [R][P] of the head; and the staged raw inputs of a chunk (cp.async, see
// stage_chunk): q, k [rows][N], x [rows][P], angle [rows][N/2], dt and trap [rows + 1] (the token
// after the chunk too), ADT [rows].
template <int N>
struct Bf16ScanSmem {
  static constexpr int ld = N + 8;
  static constexpr size_t q = 0;
  static constexpr size_t k = q + 2 * kRows * ld;
  static constexpr size_t g = k + 2 * kRows * ld;
  static constexpr size_t v = g + 2 * kP * ld;
  static constexpr size_t kw = v + 2 * kRows * kLdRows;
  static constexpr size_t m = kw + 2 * kRows * ld;
  static constexpr size_t theta = m + 2 * kRows * kLdRows;
  static constexpr size_t theta_in = theta + 4 * (N / 2) * kLdTheta;
  static constexpr size_t tok = theta_in + 4 * (N / 2);
  static constexpr size_t bias = tok + 4 * (5 * kRows + 4 + kWarps);  // + e^{a_end}, Σ ADT, max |G| per warp
  static constexpr size_t raw_q = bias + 4 * kMaxRank * (2 * N + kP);
  static constexpr size_t raw_k = raw_q + 4 * kRows * N;
  static constexpr size_t raw_x = raw_k + 4 * kRows * N;
  static constexpr size_t raw_angle = raw_x + 4 * kRows * kP;
  static constexpr size_t raw_tok = raw_angle + 4 * kRows * (N / 2);
  static constexpr size_t bytes = raw_tok + 4 * (3 * kRows + 2);
  static_assert(raw_q % 16 == 0 && raw_k % 16 == 0 && raw_x % 16 == 0, "16-byte copies need aligned rows");
};

__device__ inline void cp_async_4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(unsigned(__cvta_generic_to_shared(dst))), "l"(src));
}
__device__ inline void cp_async_16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(unsigned(__cvta_generic_to_shared(dst))), "l"(src));
}
__device__ inline void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// The raw inputs of the chunk at tokens [t0, t0 + n) of a sequence ending before `end` into the
// staging area, as asynchronous copies (complete after cp_async_wait_all and a barrier): q, k rows
// m = i·R + r (q only when kQ), x [i][P], angle [i][S], dt, trap [i ≤ n] (token n when the
// sequence goes on), ADT.
// Rows past n are not copied (the readers zero them). q, k and x go in 16-byte copies when their
// rows are 16-byte aligned (vec_x for x), else 4-byte ones.
template <int N, bool kQ>
__device__ void stage_chunk(const Mamba3ScanDims& d, const Mamba3ScanInputs& in, int64_t h, int64_t grp, int64_t t0,
                            int n, int64_t end, bool vec_x, unsigned char* smem) {
  using L = Bf16ScanSmem<N>;
  float* rq = reinterpret_cast<float*>(smem + L::raw_q);
  float* rk = reinterpret_cast<float*>(smem + L::raw_k);
  float* rx = reinterpret_cast<float*>(smem + L::raw_x);
  float* rang = reinterpret_cast<float*>(smem + L::raw_angle);
  float *rdt = reinterpret_cast<float*>(smem + L::raw_tok), *rtrap = rdt + kRows + 1, *radt = rtrap + kRows + 1;
  const int tid = int(threadIdx.x), R = int(d.R), S = int(d.S);
  const int64_t H = d.H, G = d.G;
  for (int e = tid; e < n * R * (N / 4); e += kThreads) {
    const int m = e / (N / 4), c = 4 * (e % (N / 4)), i = m / R, r = m % R;
    const int64_t off = (t0 + i) * in.qk_ld + (r * G + grp) * N + c;
    if constexpr (kQ) cp_async_16(rq + m * N + c, in.q + off);
    cp_async_16(rk + m * N + c, in.k + off);
  }
  if (vec_x) {
    for (int e = tid; e < n * (kP / 4); e += kThreads) {
      const int i = e / (kP / 4), c = 4 * (e % (kP / 4));
      cp_async_16(rx + i * kP + c, in.x + (t0 + i) * in.x_ld + h * kP + c);
    }
  } else {
    for (int e = tid; e < n * kP; e += kThreads)
      cp_async_4(rx + e, in.x + (t0 + e / kP) * in.x_ld + h * kP + e % kP);
  }
  for (int e = tid; e < n * S; e += kThreads) cp_async_4(rang + e, in.angle + (t0 + e / S) * in.angle_ld + e % S);
  const int n_next = t0 + n < end ? n + 1 : n;
  for (int i = tid; i < n_next; i += kThreads) {
    cp_async_4(rdt + i, in.dt + (t0 + i) * H + h);
    cp_async_4(rtrap + i, in.trap + (t0 + i) * in.trap_ld + h);
    if (i < n) cp_async_4(radt + i, in.adt + (t0 + i) * H + h);
  }
}

// The warp turns v[i] (i < n ≤ 64) into base + its inclusive prefix sums in place, lane l
// holding entries 2l and 2l + 1, and returns the sum of all n to every lane; the warp may read
// any entry after it.
__device__ inline float pair_scan(float* v, int n, float base = 0.0f) {
  const int lane = int(threadIdx.x) % 32, i0 = 2 * lane, i1 = i0 + 1;
  const float v0 = i0 < n ? v[i0] : 0.0f, v1 = i1 < n ? v[i1] : 0.0f;
  float incl = v0 + v1;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const float u = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += u;
  }
  const float excl = incl - (v0 + v1);
  if (i0 < n) v[i0] = base + excl + v0;
  if (i1 < n) v[i1] = base + incl;
  __syncwarp();
  return __shfl_sync(0xffffffffu, incl, 31);
}

// Rotates the 4 pairs held in q, k (spec §3) by the angles th[j·kLdTheta], j < min(4, n_rot):
// pair j is elements (j, j + 4) in the halves pairing, (2j, 2j + 1) in the adjacent one.
template <bool Halves>
__device__ inline void rotate_pairs(float (&q)[8], float (&k)[8], const float* th, int n_rot) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (j >= n_rot) break;
    float sn, cs;
    __sincosf(th[j * kLdTheta], &sn, &cs);
    constexpr int step = Halves ? 1 : 2;
    const int ia = step * j, ib = Halves ? j + 4 : 2 * j + 1;
    const float qa = q[ia], qb = q[ib], ka = k[ia], kb = k[ib];
    q[ia] = qa * cs - qb * sn, q[ib] = qa * sn + qb * cs;
    k[ia] = ka * cs - kb * sn, k[ib] = ka * sn + kb * cs;
  }
}

// max |acc| over the warp's accumulator tiles to out[warp] (NaN entries are passed over: they
// reach the output through G itself).
template <int NT>
__device__ inline void store_warp_max_abs(const float (&acc)[NT][4], float* out) {
  float m = 0.0f;
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) m = fmaxf(m, fabsf(acc[j][e]));
  // Non-negative floats order as their bit patterns.
  m = __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(m)));
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = m;
}

// The first launch's results for a split call (layout per (sequence, head) pair, J pieces each).
struct SplitArgs {
  int segments = 1, subsegments = 1;
  float* init_g = nullptr;       // [pairs][P·N] Ĥ, the state entering the sequence
  float* init_theta = nullptr;   // [pairs][S] θ_in
  float* piece_g = nullptr;      // [pairs][J][P·N] G_j, local frame
  float* piece_theta = nullptr;  // [pairs][J][S] Θ_j, reduced mod 2π
  float* piece_adt = nullptr;    // [pairs][J] A_j
  __host__ __device__ int pieces() const { return (segments - 1) * subsegments; }
};

// Tokens [b, e) of piece q (of `subsegments`) of part s (of `segments`) of the sequence [start,
// end) cut at chunks of Qt tokens; pieces of one part, and parts, are consecutive.
struct Span {
  int64_t b, e;
};
__device__ inline Span piece_span(int64_t start, int64_t end, int Qt, int segments, int s, int subsegments, int q) {
  const int64_t chunks = (end - start + Qt - 1) / Qt;
  const int64_t per_part = (chunks + segments - 1) / segments;
  const int64_t c0 = min(s * per_part, chunks), c1 = min(c0 + per_part, chunks);
  const int64_t per_piece = (per_part + subsegments - 1) / subsegments;
  const int64_t p0 = min(c0 + q * per_piece, c1), p1 = min(p0 + per_piece, c1);
  return {start + p0 * Qt, min(start + p1 * Qt, end)};
}

// kStates: the first launch of a split call (block = (pair, piece), the pieces' own state
// changes); else the outputs (block = (pair, part), one part per pair when not split).
template <int N, int R, bool kStates>
__global__ void __launch_bounds__(kThreads, 1)
    mamba3_chunk_scan_bf16_kernel(Mamba3ScanDims d, Mamba3ScanInputs in, const int64_t* cu, Mamba3ScanStates st,
                                  float* y, int64_t y_ld, bool vec_x, SplitArgs split) {
  using L = Bf16ScanSmem<N>;
  constexpr int ld = L::ld, half_n = N / 2, NTG = N / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* qs = reinterpret_cast<__half*>(smem + L::q);
  auto* ks = reinterpret_cast<__half*>(smem + L::k);
  auto* gs = reinterpret_cast<__half*>(smem + L::g);
  auto* vs = reinterpret_cast<__nv_bfloat16*>(smem + L::v);
  auto* kws = reinterpret_cast<__nv_bfloat16*>(smem + L::kw);
  auto* ms = reinterpret_cast<__nv_bfloat16*>(smem + L::m);
  auto* theta = reinterpret_cast<float*>(smem + L::theta);
  auto* theta_in = reinterpret_cast<float*>(smem + L::theta_in);
  float* a = reinterpret_cast<float*>(smem + L::tok);
  float *ea = a + kRows, *sig = ea + kRows, *cw = sig + kRows, *w = cw + kRows, *dec = w + kRows,
        *adt_sum = dec + 1;
  float* g_max = dec + 4;  // [kWarps]
  float* qbias = reinterpret_cast<float*>(smem + L::bias);
  float* kbias = qbias + kMaxRank * N;
  float* mx = kbias + kMaxRank * N;
  const float* rq = reinterpret_cast<const float*>(smem + L::raw_q);
  const float* rk = reinterpret_cast<const float*>(smem + L::raw_k);
  const float* rx = reinterpret_cast<const float*>(smem + L::raw_x);
  const float* rang = reinterpret_cast<const float*>(smem + L::raw_angle);
  const float *rdt = reinterpret_cast<const float*>(smem + L::raw_tok), *rtrap = rdt + kRows + 1,
              *radt = rtrap + kRows + 1;

  const int64_t H = d.H, G = d.G;
  constexpr int Qt = kRows / R;
  const int S = int(d.S);
  const int parts = kStates ? split.pieces() : split.segments;
  const int64_t pair = blockIdx.x / parts;
  const int part = int(blockIdx.x % parts);
  const int64_t i_seq = pair / H, h = pair % H;
  const int64_t start = cu[i_seq], end = cu[i_seq + 1];
  const Span sp = kStates ? piece_span(start, end, Qt, split.segments, part / split.subsegments,
                                       split.subsegments, part % split.subsegments)
                          : piece_span(start, end, Qt, split.segments, part, 1, 0);
  // The whole block: a sequence of length 0 keeps its state; an empty piece or part has no work
  // (whoever reads a piece finds it empty the same way).
  if (sp.b == sp.e) return;
  const bool seq_end = sp.e == end, was_split = split.segments > 1;
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const MmaLane l = mma_lane();
  const int64_t slot = st.slot[i_seq], grp = h / (H / G);
  const float Dh = in.D[h];
  stage_chunk<N, !kStates>(d, in, h, grp, sp.b, int(sp.e - sp.b < Qt ? sp.e - sp.b : Qt), end, vec_x, smem);
  for (int e = tid; e < R * N; e += kThreads) qbias[e] = in.q_bias[h * R * N + e], kbias[e] = in.k_bias[h * R * N + e];
  for (int e = tid; e < R * kP; e += kThreads) mx[e] = in.mimo_x ? in.mimo_x[h * R * kP + e] : 1.0f;

  // This warp's accumulator tiles of G: rows pr.. of P, columns nb.. nb + N/4 of N; element (j, e)
  // of a thread is G[g_p(e)][g_n(j, e)].
  const int pr = 16 * (warp % 4), nb = (N / 4) * (warp / 4);
  auto g_p = [&](int e) { return pr + l.g + 8 * (e / 2); };
  auto g_n = [&](int j, int e) { return nb + 8 * j + 2 * l.t + e % 2; };
  float gacc[NTG][4];
  if (!was_split || (kStates && part == 0)) {
    // The state entering the sequence, Ĥ = H₋ + (1 − λ₀) dt₀ Σ_r (v₋ ⊙ mimo_x[h, r]) k̃₋_rᵀ (spec §6).
    const float scale = (1.0f - sigmoid(in.trap[start * in.trap_ld + h])) * in.dt[start * H + h];
    const float* ssm = st.ssm + slot * st.ssm_stride + h * kP * N;
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int p = g_p(e), n = g_n(j, e);
        const float vp = st.v[slot * st.v_stride + h * kP + p];
        float gv = ssm[p * N + n];
        for (int r = 0; r < R; ++r)
          gv += scale * vp * (in.mimo_x ? in.mimo_x[(h * R + r) * kP + p] : 1.0f) *
                st.k[slot * st.k_stride + (r * H + h) * N + n];
        gacc[j][e] = gv;
      }
    for (int j = tid; j < S; j += kThreads) theta_in[j] = st.angle[slot * st.angle_stride + h * S + j];
  } else if (!kStates) {
    // A part of a split sequence: Ĥ and θ_in as the first launch copied them, then the pieces
    // before this part folded in (see the header comment).
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) gacc[j][e] = split.init_g[pair * kP * N + g_p(e) * N + g_n(j, e)];
    for (int j = tid; j < S; j += kThreads) theta_in[j] = split.init_theta[pair * S + j];
    __syncthreads();
    const int J = split.pieces();
    for (int jj = 0; jj < part * split.subsegments; ++jj) {
      const Span ps = piece_span(start, end, Qt, split.segments, jj / split.subsegments, split.subsegments,
                                 jj % split.subsegments);
      if (ps.b == ps.e) continue;
      const int64_t piece = pair * J + jj;
      const float* gl = split.piece_g + piece * kP * N;
      const float decay = expf(split.piece_adt[piece]);
#pragma unroll
      for (int j = 0; j < NTG; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int p = g_p(e), n = g_n(j, e);
          const bool halves = d.halves_pairing;
          const int u = halves ? n % half_n : n / 2;
          const bool first = halves ? n < half_n : n % 2 == 0;
          float gv = gl[p * N + n];
          if (u < S) {
            const float other = gl[p * N + (halves ? (first ? n + half_n : n - half_n) : n ^ 1)];
            float sn, cs;
            sincosf(theta_in[u], &sn, &cs);
            gv = first ? cs * gv - sn * other : sn * other + cs * gv;
          }
          gacc[j][e] = decay * gacc[j][e] + gv;
        }
      __syncthreads();  // every read of θ before it moves on
      for (int j = tid; j < S; j += kThreads)
        theta_in[j] = mamba3_wrap_angle(theta_in[j] + split.piece_theta[piece * S + j]);
      __syncthreads();
    }
  }
  if constexpr (kStates) {
    // A piece runs from G = 0 and θ = 0; the first piece also hands Ĥ and θ_in to the second launch.
    if (part == 0) {
#pragma unroll
      for (int j = 0; j < NTG; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) split.init_g[pair * kP * N + g_p(e) * N + g_n(j, e)] = gacc[j][e];
      __syncthreads();  // theta_in from the slot is in shared memory
      for (int j = tid; j < S; j += kThreads) split.init_theta[pair * S + j] = theta_in[j];
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) gacc[j][e] = 0.0f;
    for (int j = tid; j < S; j += kThreads) theta_in[j] = 0.0f;
    if (tid == 0) *adt_sum = 0.0f;
  }
  if constexpr (!kStates) store_warp_max_abs(gacc, g_max);
  __syncthreads();

  for (int64_t t0 = sp.b; t0 < sp.e; t0 += Qt) {
    const int n_tok = int(sp.e - t0 < Qt ? sp.e - t0 : Qt);
    const bool last = t0 + Qt >= sp.e;
    // G's fp16 copy at scale 2^s (step 5 of the header comment), s from the largest |G| that the
    // warps wrote before the barrier ending the previous chunk; an inf or NaN in G stays one.
    float g_unscale = 1.0f;
    if constexpr (!kStates) {
      float m = 0.0f;
#pragma unroll
      for (int i = 0; i < kWarps; ++i) m = fmaxf(m, g_max[i]);
      int ex = 0;
      if (isfinite(m) && m > 0.0f) frexpf(m, &ex);  // m < 2^ex
      const int s = isfinite(m) ? 15 - max(-100, min(ex, 100)) : 0;
      const float scale = ldexpf(1.0f, s);
      g_unscale = ldexpf(1.0f, -s);
#pragma unroll
      for (int j = 0; j < NTG; ++j) {
        store_f16x2(gs + (pr + l.g) * ld + nb + 8 * j + 2 * l.t, scale * gacc[j][0], scale * gacc[j][1]);
        store_f16x2(gs + (pr + l.g + 8) * ld + nb + 8 * j + 2 * l.t, scale * gacc[j][2], scale * gacc[j][3]);
      }
    }
    cp_async_wait_all();  // this chunk's staged inputs
    __syncthreads();

    // 1. Per-token scalars and angle steps from the staged inputs; then warp 0 scans ADT into a_i
    //    and derives e^{a_i}, w_i, and warps 1–15 scan each angle's steps into θ. Tokens past the
    //    chunk's end get ADT = σ = c = 0 and the angle step 0 (so a = a_end, w = 0). The lookahead
    //    c reads the token after the chunk while the sequence goes on, a piece's or part's end or not.
    for (int i = warp; i < Qt; i += kWarps)
      for (int j = lane; j < S; j += 32)
        theta[j * kLdTheta + i] = i < n_tok ? mamba3_angle_step(rang[i * S + j], rdt[i]) : 0.0f;
    for (int i = tid; i < Qt; i += kThreads) {
      float adt = 0.0f, s = 0.0f, c = 0.0f;
      if (i < n_tok) {
        c = t0 + i + 1 < end ? (1.0f - sigmoid(rtrap[i + 1])) * rdt[i + 1] : 0.0f;
        s = sigmoid(rtrap[i]) * rdt[i] + c;
        adt = radt[i];
      }
      a[i] = adt, sig[i] = s, cw[i] = c;
    }
    __syncthreads();
    if (warp == 0) {
      const float total = pair_scan(a, Qt);
      for (int i = lane; i < Qt; i += 32) {
        ea[i] = expf(a[i]);
        w[i] = expf(total - a[i]) * sig[i];
      }
      if (lane == 0) {
        *dec = expf(total);
        if constexpr (kStates) *adt_sum += total;
      }
    } else {
      for (int j = warp - 1; j < S; j += kWarps - 1) {
        const float th0 = theta_in[j];
        float* th = theta + j * kLdTheta;
        const float total = pair_scan(th, Qt, th0);
        for (int i = lane; i < Qt; i += 32) th[i] = mamba3_wrap_angle(th[i]);
        if (lane == 0) theta_in[j] = mamba3_wrap_angle(th0 + total);
      }
    }
    __syncthreads();

    // 2. Rows m = i·R + r: q̃, k̃, w k̃ and V from the staged inputs, a thread per 4 rotary pairs
    //    or 8 values of a row; rows past the chunk's end are zeros. SISO pairs (2u, 2u + 1) make
    //    8 contiguous elements, MIMO's (u, u + N/2) two runs of 4. The first launch needs no q̃.
    for (int e = tid; e < kRows * (half_n / 4); e += kThreads) {
      const int m = e / (half_n / 4), u0 = 4 * (e % (half_n / 4)), i = m / R, r = m % R;
      const bool halves = d.halves_pairing;
      const int c0 = halves ? u0 : 2 * u0, c1 = halves ? u0 + half_n : 2 * u0 + 4;  // the two runs of 4
      float qv[8] = {}, kv[8] = {};
      float wi = 0.0f;
      if (i < n_tok) {
        const float *qr = rq + m * N, *kr = rk + m * N, *qb = qbias + r * N, *kb = kbias + r * N;
#pragma unroll
        for (int h4 = 0; h4 < 2; ++h4) {
          const int c = h4 ? c1 : c0;
          if constexpr (!kStates) {
            const float4 q4 = *reinterpret_cast<const float4*>(qr + c), qb4 = *reinterpret_cast<const float4*>(qb + c);
            qv[4 * h4] = q4.x + qb4.x, qv[4 * h4 + 1] = q4.y + qb4.y, qv[4 * h4 + 2] = q4.z + qb4.z,
                    qv[4 * h4 + 3] = q4.w + qb4.w;
          }
          const float4 k4 = *reinterpret_cast<const float4*>(kr + c), kb4 = *reinterpret_cast<const float4*>(kb + c);
          kv[4 * h4] = k4.x + kb4.x, kv[4 * h4 + 1] = k4.y + kb4.y, kv[4 * h4 + 2] = k4.z + kb4.z, kv[4 * h4 + 3] = k4.w + kb4.w;
        }
        if (halves) rotate_pairs<true>(qv, kv, theta + u0 * kLdTheta + i, S - u0);
        else rotate_pairs<false>(qv, kv, theta + u0 * kLdTheta + i, S - u0);
        wi = w[i];
      }
#pragma unroll
      for (int h4 = 0; h4 < 2; ++h4) {
        const int c = h4 ? c1 : c0, o = 4 * h4;
        if constexpr (!kStates) {
          store_f16x4_sat(qs + m * ld + c, qv[o], qv[o + 1], qv[o + 2], qv[o + 3]);
          store_f16x4_sat(ks + m * ld + c, kv[o], kv[o + 1], kv[o + 2], kv[o + 3]);
        }
        store_bf16x4(kws + m * ld + c, wi * kv[o], wi * kv[o + 1], wi * kv[o + 2], wi * kv[o + 3]);
      }
    }
    for (int e = tid; e < kRows * (kP / 4); e += kThreads) {
      const int m = e / (kP / 4), p = 4 * (e % (kP / 4)), i = m / R, r = m % R;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (i < n_tok) {
        const float4 x4 = *reinterpret_cast<const float4*>(rx + i * kP + p);
        const float4 m4 = *reinterpret_cast<const float4*>(mx + r * kP + p);
        v = make_float4(x4.x * m4.x, x4.y * m4.y, x4.z * m4.z, x4.w * m4.w);
      }
      store_bf16x4(vs + m * kLdRows + p, v.x, v.y, v.z, v.w);
    }
    if (!kStates && last && seq_end) {
      // The slot's θ, k̃ (fp32, rotated again from the inputs) and x of the sequence's last token.
      const int i = n_tok - 1;
      for (int j = tid; j < S; j += kThreads) st.angle[slot * st.angle_stride + h * S + j] = theta[j * kLdTheta + i];
      for (int e = tid; e < R * half_n; e += kThreads) {
        const int r = e / half_n, u = e % half_n;
        const int na = d.halves_pairing ? u : 2 * u, nb2 = d.halves_pairing ? u + half_n : 2 * u + 1;
        const float *kr = rk + (i * R + r) * N, *kbr = kbias + r * N;
        float ka = kr[na] + kbr[na], kb = kr[nb2] + kbr[nb2];
        if (u < S) {
          float sn, cs;
          __sincosf(theta[u * kLdTheta + i], &sn, &cs);
          const float k0 = ka;
          ka = k0 * cs - kb * sn, kb = k0 * sn + kb * cs;
        }
        float* kst = st.k + slot * st.k_stride + (r * H + h) * N;
        kst[na] = ka, kst[nb2] = kb;
      }
      for (int p = tid; p < kP; p += kThreads) st.v[slot * st.v_stride + h * kP + p] = rx[i * kP + p];
    }
    __syncthreads();
    // The next chunk's inputs load while this one's products run.
    if (!last)
      stage_chunk<N, !kStates>(d, in, h, grp, t0 + Qt, int(sp.e - t0 - Qt < Qt ? sp.e - t0 - Qt : Qt), end, vec_x,
                               smem);

    if constexpr (!kStates) {
      // 3. M = (q̃ k̃ᵀ) ∘ coefficients.
      const int rb = 16 * (warp % 4), cb = 16 * (warp / 4);  // this warp's 16 × 16 tile of M and of y
      {
        float sc[2][4] = {};
        warp_mma<2, false, false>(sc, qs, ld, rb, ks, ld, cb, N);
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int row = rb + l.g + 8 * hr, col = cb + 8 * j + 2 * l.t, ti = row / R;
            float val[2];
#pragma unroll
            for (int cc = 0; cc < 2; ++cc) {
              const int tj = (col + cc) / R;
              const float coef = tj < ti ? expf(a[ti] - a[tj]) * sig[tj] : tj == ti ? sig[ti] - cw[ti] : 0.0f;
              val[cc] = coef * sc[j][2 * hr + cc];
            }
            store_bf16x2(ms + row * kLdRows + col, val[0], val[1]);
          }
      }
      __syncthreads();

      // 4. Outputs, then (below) the state update.
      float yo[2][4] = {};
      warp_mma<2, false, false>(yo, qs, ld, rb, gs, ld, cb, N);
      const float e0 = g_unscale * ea[(rb + l.g) / R], e1 = g_unscale * ea[(rb + l.g + 8) / R];
#pragma unroll
      for (int j = 0; j < 2; ++j) yo[j][0] *= e0, yo[j][1] *= e0, yo[j][2] *= e1, yo[j][3] *= e1;
      warp_mma<2, false, true>(yo, ms, kLdRows, rb, vs, kLdRows, cb, kRows);
      // D·v from the fp32 inputs, all loaded before the first store.
      float2 dv[2][2];
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int row = rb + l.g + 8 * hr, i = row / R, r = row % R;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int p = cb + 8 * j + 2 * l.t;
          dv[hr][j] = make_float2(0.0f, 0.0f);
          if (i < n_tok) {
            const float2 xv = *reinterpret_cast<const float2*>(in.x + (t0 + i) * in.x_ld + h * kP + p);
            const float2 m2 = *reinterpret_cast<const float2*>(mx + r * kP + p);
            dv[hr][j] = make_float2(Dh * xv.x * m2.x, Dh * xv.y * m2.y);
          }
        }
      }
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int row = rb + l.g + 8 * hr, i = row / R, r = row % R;
        if (i >= n_tok) continue;
        float* yr = y + (t0 + i) * y_ld + (r * H + h) * kP;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int p = cb + 8 * j + 2 * l.t;
          *reinterpret_cast<float2*>(yr + p) = make_float2(yo[j][2 * hr] + dv[hr][j].x, yo[j][2 * hr + 1] + dv[hr][j].y);
        }
      }
    }
    const float decay = *dec;
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) gacc[j][e] *= decay;
    warp_mma<NTG, true, true>(gacc, vs, kLdRows, pr, kws, ld, nb, kRows);
    if constexpr (!kStates) store_warp_max_abs(gacc, g_max);  // read after the barrier, overwritten after the next
    __syncthreads();  // every read of this chunk's tiles and scalars is done
  }

  if constexpr (kStates) {
    const int64_t piece = pair * split.pieces() + part;
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) split.piece_g[piece * kP * N + g_p(e) * N + g_n(j, e)] = gacc[j][e];
    for (int j = tid; j < S; j += kThreads) split.piece_theta[piece * S + j] = theta_in[j];
    if (tid == 0) split.piece_adt[piece] = *adt_sum;
  } else if (seq_end) {
    float* ssm = st.ssm + slot * st.ssm_stride + h * kP * N;
#pragma unroll
    for (int j = 0; j < NTG; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) ssm[g_p(e) * N + g_n(j, e)] = gacc[j][e];
  }
}

template <int N, int R>
void launch(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_dev, int64_t n_seqs,
            const Mamba3ScanStates& st, float* y, int64_t y_ld, const Mamba3Bf16Split& split,
            Scratch<float>& scratch) {
  constexpr size_t bytes = Bf16ScanSmem<N>::bytes;
  static_assert(bytes <= 227 * 1024, "the block's shared memory fits an SM");
  for (const void* fn : {reinterpret_cast<const void*>(&mamba3_chunk_scan_bf16_kernel<N, R, false>),
                         reinterpret_cast<const void*>(&mamba3_chunk_scan_bf16_kernel<N, R, true>)})
    M3_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  // q and k rows are 16-byte aligned in the layouts callers use (row length R·G·N floats, N a
  // multiple of 32); x rows are when the in_proj row length is a multiple of 4 floats.
  auto aligned = [](const float* p, int64_t ld) { return reinterpret_cast<uintptr_t>(p) % 16 == 0 && ld % 4 == 0; };
  check(aligned(in.q, in.qk_ld) && aligned(in.k, in.qk_ld), "Mamba-3 bf16 chunked scan: q and k rows must be 16-byte aligned");
  const bool vec_x = aligned(in.x, in.x_ld);
  const int64_t pairs = n_seqs * d.H;
  SplitArgs sa;
  sa.segments = split.segments, sa.subsegments = split.subsegments;
  if (split.segments > 1) {
    const int64_t PN = kP * N, J = sa.pieces();
    float* base = scratch.get(ctx, size_t(pairs * (PN + d.S + J * (PN + d.S + 1))));
    sa.init_g = base;
    sa.init_theta = sa.init_g + pairs * PN;
    sa.piece_g = sa.init_theta + pairs * d.S;
    sa.piece_theta = sa.piece_g + pairs * J * PN;
    sa.piece_adt = sa.piece_theta + pairs * J * d.S;
    mamba3_chunk_scan_bf16_kernel<N, R, true>
        <<<unsigned(pairs * J), kThreads, bytes, ctx.stream>>>(d, in, cu_dev, st, y, y_ld, vec_x, sa);
    M3_CUDA_LAUNCH_CHECK();
  }
  mamba3_chunk_scan_bf16_kernel<N, R, false>
      <<<unsigned(pairs * split.segments), kThreads, bytes, ctx.stream>>>(d, in, cu_dev, st, y, y_ld, vec_x, sa);
  M3_CUDA_LAUNCH_CHECK();
}

template <int N>
void launch_rank(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in, const int64_t* cu_dev,
                 int64_t n_seqs, const Mamba3ScanStates& st, float* y, int64_t y_ld, const Mamba3Bf16Split& split,
                 Scratch<float>& scratch) {
  switch (d.R) {
    case 1: return launch<N, 1>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
    case 2: return launch<N, 2>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
    default: return launch<N, 4>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
  }
}

}  // namespace

bool mamba3_chunk_scan_bf16_supported(const Mamba3ScanDims& d) {
  return d.P == kP && (d.N == 32 || d.N == 64 || d.N == 128) && (d.R == 1 || d.R == 2 || d.R == 4) &&
         d.S >= 1 && 2 * d.S <= d.N;
}

Mamba3Bf16Split mamba3_chunk_scan_bf16_split(const Context& ctx, const Mamba3ScanDims& d, int64_t n_seqs,
                                             int64_t max_len) {
  // A part shorter than kMinPartChunks chunks would spend more on the first launch and the fold
  // than the SMs it fills give back.
  constexpr int64_t kMinPartChunks = 4, kMaxParts = 64;
  // M3_NO_SCAN_SPLIT=1: a block per (sequence, head), the baseline of the split side by side.
  if (const char* off = std::getenv("M3_NO_SCAN_SPLIT"); off && *off && std::string(off) != "0") return {};
  const int64_t pairs = n_seqs * d.H, sms = ctx.prop.multiProcessorCount;
  const int64_t chunks = (max_len + kRows / d.R - 1) / (kRows / d.R);
  if (pairs <= 0) return {};
  const int64_t segments = std::min({sms / pairs, chunks / kMinPartChunks, kMaxParts});
  if (segments < 2) return {};
  // Pieces that fill the SMs in the first launch too, each at least a chunk.
  const int64_t per_part = (chunks + segments - 1) / segments;
  const int64_t sub = std::clamp(sms / (pairs * (segments - 1)), int64_t{1}, std::min(per_part, kMaxParts));
  return {int(segments), int(sub)};
}

void mamba3_chunk_scan_bf16_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in,
                                    const int64_t* cu_dev, int64_t n_seqs, const Mamba3ScanStates& st, float* y,
                                    int64_t y_ld, const Mamba3Bf16Split& split, Scratch<float>& scratch) {
  check(mamba3_chunk_scan_bf16_supported(d), "Mamba-3 bf16 chunked scan: unsupported dims");
  check(split.segments >= 1 && split.segments <= 64 && split.subsegments >= 1 && split.subsegments <= 64,
        "Mamba-3 bf16 chunked scan: a split of " + std::to_string(split.segments) + " × " +
            std::to_string(split.subsegments) + " is outside 1..64 × 1..64");
  if (n_seqs == 0) return;
  check(n_seqs * d.H * split.segments * split.subsegments <= INT_MAX,
        "Mamba-3 bf16 chunked scan: " + std::to_string(n_seqs) + " sequences × " + std::to_string(d.H) +
            " heads exceed one launch's grid");
  switch (d.N) {
    case 32: return launch_rank<32>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
    case 64: return launch_rank<64>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
    default: return launch_rank<128>(ctx, d, in, cu_dev, n_seqs, st, y, y_ld, split, scratch);
  }
}

}  // namespace m3::cuda
