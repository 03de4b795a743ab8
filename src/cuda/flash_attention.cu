// Implements cuda/flash_attention.h with float32 SIMT kernels (tensor cores would need TF32 or
// bf16 operands, too coarse for the f32 checking path). Both keep, per query, a running max m,
// sum l and unnormalised output o over the keys seen so far (online softmax): after a block of
// scores s_k, m' = max(m, max_k s_k), l' = l·e^{m−m'} + Σ_k e^{s_k−m'},
// o' = o·e^{m−m'} + Σ_k e^{s_k−m'}·v_k, and out = o / l at the end.
//  - attention_prefill: one block per (sequence, tile of 64 queries, query head) walks the keys
//    the tile may see in tiles of 32 staged in shared memory.
//  - attention_decode (every sequence has at most one query): one block per (sequence, query
//    head, split of the keys); each warp scores 32 keys at a time (lane j scores key j). With more
//    than one split, attention_decode_combine merges the splits' (m, l, o) the same way.
// Any head_dim from 1 to 256: attention_prefill is instantiated for 64, 128 and 256 dims and runs
// a head_dim on the next size up, leaving the dims past it unused; attention_decode loads K rows
// as float4 when head_dim is a multiple of 4.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/flash_attention.h"

namespace m3::cuda {

namespace {

// The online-softmax reference point for a running max m: a row that has seen no key yet
// (m = −inf) uses 0, so that e^{−inf − 0} = 0 gives it zero weight instead of NaN.
__device__ inline float softmax_ref(float m) { return m == -INFINITY ? 0.0f : m; }

constexpr int kPrefillQueries = 64;          // queries per block
constexpr int kPrefillKeys = 32;             // keys per shared-memory tile
constexpr int kPrefillThreads = 256;         // a 16 × 16 grid of threads (ty, tx)
constexpr int kProbLd = kPrefillKeys + 1;    // padded row of the probability tile

// Row stride of the Q and K tiles for head dim D: the smallest odd number ≥ D, so that the 16
// threads of a half-warp, reading 16 different rows at one column, hit 16 different banks.
__host__ __device__ inline int prefill_qk_ld(int D) { return D | 1; }

// Shared memory of attention_prefill for head dim D: Q [64, ld], K [32, ld], V [32, D], P [64, 33].
size_t prefill_smem_bytes(int D) {
  return sizeof(float) * (size_t(kPrefillQueries + kPrefillKeys) * size_t(prefill_qk_ld(D)) +
                          size_t(kPrefillKeys) * size_t(D) + size_t(kPrefillQueries) * kProbLd);
}

// Thread (ty, tx) owns query rows ty + 16r of the tile (r < 4), the scores of keys tx + 16c of a
// key tile (c < 2) and output dims tx + 16c (c < kMaxDim / 16; those ≥ head_dim stay unused: any
// head_dim ≤ kMaxDim runs on the kernel of the next size up). The 16 threads sharing a row form
// an aligned half-warp, so a row's max and sum are lane-group reductions of width 16.
// Block x = sequence · tiles_per_seq + query tile, block y = query head.
template <int kMaxDim>
__global__ void __launch_bounds__(kPrefillThreads) attention_prefill(AttentionArgs a, int64_t tiles_per_seq) {
  constexpr int kRows = kPrefillQueries / 16, kKeys = kPrefillKeys / 16, kDims = kMaxDim / 16;
  const int64_t i = blockIdx.x / tiles_per_seq, q0 = (blockIdx.x % tiles_per_seq) * kPrefillQueries;
  const int64_t t0 = a.cu[i], L = a.cu[i + 1] - t0;
  if (q0 >= L) return;
  const int D = a.head_dim, ldqk = prefill_qk_ld(D), h = blockIdx.y, g = h / (a.num_heads / a.num_heads_kv);
  const int64_t past = a.pos[i], row_stride = int64_t(a.num_heads_kv) * D;
  const int64_t cache_off = int64_t(a.slot[i]) * a.cache_stride + int64_t(g) * D;
  const float* K = a.k_cache + cache_off;
  const float* V = a.v_cache + cache_off;
  const int nq = int(min(int64_t(kPrefillQueries), L - q0));
  // Keys any query of the tile sees: causal, the last one (absolute position past + q0 + nq − 1)
  // sees keys up to its own.
  const int64_t n_keys = a.causal ? past + q0 + nq : past + L;

  extern __shared__ float smem[];
  float* Qs = smem;
  float* Ks = Qs + kPrefillQueries * ldqk;
  float* Vs = Ks + kPrefillKeys * ldqk;
  float* Ps = Vs + kPrefillKeys * D;

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  for (int e = tid; e < kPrefillQueries * D; e += kPrefillThreads) {
    const int r = e / D, d = e % D;
    Qs[r * ldqk + d] = r < nq ? a.q[(t0 + q0 + r) * a.ldq + int64_t(h) * D + d] : 0.0f;
  }
  float m[kRows], l[kRows], o[kRows][kDims];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDims; ++c) o[r][c] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < n_keys; k0 += kPrefillKeys) {
    const int nk = int(min(int64_t(kPrefillKeys), n_keys - k0));
    __syncthreads();  // Q is staged (first tile); every thread is done with the last tile's K, V, P
    for (int e = tid; e < kPrefillKeys * D; e += kPrefillThreads) {
      const int r = e / D, d = e % D;
      const int64_t off = (k0 + r) * row_stride + d;
      Ks[r * ldqk + d] = r < nk ? K[off] : 0.0f;
      Vs[r * D + d] = r < nk ? V[off] : 0.0f;
    }
    __syncthreads();

    float s[kRows][kKeys];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kKeys; ++c) s[r][c] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      float qv[kRows], kv[kKeys];
#pragma unroll
      for (int r = 0; r < kRows; ++r) qv[r] = Qs[(ty + 16 * r) * ldqk + d];
#pragma unroll
      for (int c = 0; c < kKeys; ++c) kv[c] = Ks[(tx + 16 * c) * ldqk + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kKeys; ++c) s[r][c] = fmaf(qv[r], kv[c], s[r][c]);
    }

#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t q_pos = past + q0 + ty + 16 * r;  // the query's absolute position
      float tile_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        const int kk = tx + 16 * c;
        const bool seen = kk < nk && (!a.causal || k0 + kk <= q_pos);
        s[r][c] = seen ? s[r][c] * a.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[r][c]);
      }
      const float m_new = fmaxf(m[r], lane_group_max(tile_max, 16)), ref = softmax_ref(m_new);
      const float alpha = expf(m[r] - ref);
      float p_sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        const float p = expf(s[r][c] - ref);
        Ps[(ty + 16 * r) * kProbLd + tx + 16 * c] = p;
        p_sum += p;
      }
      l[r] = l[r] * alpha + lane_group_sum(p_sum, 16);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kDims; ++c) o[r][c] *= alpha;
    }
    __syncthreads();

    for (int k = 0; k < nk; ++k) {
      float p[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) p[r] = Ps[(ty + 16 * r) * kProbLd + k];
#pragma unroll
      for (int c = 0; c < kDims; ++c) {
        const int d = tx + 16 * c;
        if (d < D) {
          const float v = Vs[k * D + d];
#pragma unroll
          for (int r = 0; r < kRows; ++r) o[r][c] = fmaf(p[r], v, o[r][c]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = ty + 16 * r;
    if (row >= nq) continue;
    float* out = a.out + (t0 + q0 + row) * a.ldo + int64_t(h) * D;
#pragma unroll
    for (int c = 0; c < kDims; ++c) {
      const int d = tx + 16 * c;
      if (d < D) out[d] = o[r][c] / l[r];
    }
  }
}

template <int kMaxDim>
void launch_prefill(Context& ctx, const AttentionArgs& a, int64_t tiles_per_seq) {
  const size_t smem = prefill_smem_bytes(a.head_dim);
  if (smem > 48 * 1024)
    M3_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill<kMaxDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)));
  const dim3 grid(unsigned(a.n_seqs * tiles_per_seq), unsigned(a.num_heads));
  attention_prefill<kMaxDim><<<grid, kPrefillThreads, smem, ctx.stream>>>(a, tiles_per_seq);
  M3_CUDA_LAUNCH_CHECK();
}

constexpr int kDecodeWarps = 8;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kDecodeDims = int(kMaxAttentionHeadDim) / 32;  // output dims per lane: lane + 32c
constexpr int64_t kMinSplitKeys = 32 * kDecodeWarps;         // a tile of keys for every warp
constexpr int64_t kMaxSplits = 64;
constexpr int64_t kDecodeBlocksPerSm = 4;  // splits are added until the grid fills the GPU this much
constexpr int kCombineThreads = 128;

// q·k over D dims as one fma chain in ascending d, whatever the load width. kVec4: float4 loads,
// for D a multiple of 4 (then every head's row in the cache starts 16-byte aligned, the pool's
// buffers being cudaMalloc'd, and so does q in shared memory); otherwise one float at a time.
template <bool kVec4>
__device__ inline float dot_q_k(const float* q, const float* k, int D) {
  float dot = 0.0f;
  if constexpr (kVec4) {
    const float4* q4 = reinterpret_cast<const float4*>(q);
    const float4* k4 = reinterpret_cast<const float4*>(k);
    for (int d4 = 0; d4 < D / 4; ++d4) {
      const float4 kv = k4[d4], qv = q4[d4];
      dot = fmaf(qv.x, kv.x, dot);
      dot = fmaf(qv.y, kv.y, dot);
      dot = fmaf(qv.z, kv.z, dot);
      dot = fmaf(qv.w, kv.w, dot);
    }
  } else {
    for (int d = 0; d < D; ++d) dot = fmaf(q[d], k[d], dot);
  }
  return dot;
}

// Block (sequence i, query head h, split) covers keys [split·split_len, (split+1)·split_len) of the
// pos[i] + 1 the sequence's query sees. Warp w takes the key tiles starting at
// split·split_len + 32w + 256j; lane j scores key j of a tile (its own K row, dot_q_k<kVec4>), then
// every lane accumulates its output dims lane + 32c < head_dim over the tile's keys. The warps'
// (m, l, o) are merged through shared memory; with one split the block writes the output,
// otherwise (m, l) to part_ml and o to part_o at (i·H + h)·n_splits + split.
template <bool kVec4>
__global__ void __launch_bounds__(kDecodeThreads)
    attention_decode(AttentionArgs a, int64_t split_len, float* part_o, float* part_ml) {
  const int64_t i = blockIdx.x, t = a.cu[i];
  if (a.cu[i + 1] == t) return;  // a sequence of length 0
  const int h = blockIdx.y, split = blockIdx.z, n_splits = gridDim.z;
  const int D = a.head_dim, g = h / (a.num_heads / a.num_heads_kv);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row_stride = int64_t(a.num_heads_kv) * D, n_keys = a.pos[i] + 1;
  const int64_t k_begin = split * split_len, k_end = min(n_keys, k_begin + split_len);
  const int64_t cache_off = int64_t(a.slot[i]) * a.cache_stride + int64_t(g) * D;
  const float* K = a.k_cache + cache_off;
  const float* V = a.v_cache + cache_off;

  __shared__ __align__(16) float qs[kMaxAttentionHeadDim];
  __shared__ float warp_m[kDecodeWarps], warp_l[kDecodeWarps];
  __shared__ float warp_o[kDecodeWarps][kMaxAttentionHeadDim];
  for (int d = threadIdx.x; d < D; d += kDecodeThreads) qs[d] = a.q[t * a.ldq + int64_t(h) * D + d];
  __syncthreads();

  float m = -INFINITY, l = 0.0f, o[kDecodeDims];
#pragma unroll
  for (int c = 0; c < kDecodeDims; ++c) o[c] = 0.0f;
  for (int64_t kt = k_begin + 32 * warp; kt < k_end; kt += kDecodeThreads) {
    const int64_t key = kt + lane;
    float s = -INFINITY;
    if (key < k_end) s = dot_q_k<kVec4>(qs, K + key * row_stride, D) * a.scale;
    // Lane 0's key is in range, so m_new is finite.
    const float m_new = fmaxf(m, lane_group_max(s, 32));
    const float alpha = expf(m - m_new), p = expf(s - m_new);
    l = l * alpha + lane_group_sum(p, 32);
    m = m_new;
#pragma unroll
    for (int c = 0; c < kDecodeDims; ++c) o[c] *= alpha;
    const int nk = int(min(int64_t(32), k_end - kt));
    for (int j = 0; j < nk; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const float* vr = V + (kt + j) * row_stride;
#pragma unroll
      for (int c = 0; c < kDecodeDims; ++c) {
        const int d = lane + 32 * c;
        if (d < D) o[c] = fmaf(pj, vr[d], o[c]);
      }
    }
  }

  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int c = 0; c < kDecodeDims; ++c) {
    const int d = lane + 32 * c;
    if (d < D) warp_o[warp][d] = o[c];
  }
  __syncthreads();
  // Warps (and whole splits) that saw no key have m = −inf and weight 0.
  float m_all = -INFINITY, l_all = 0.0f;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
  auto weight = [&](int w) { return warp_m[w] == -INFINITY ? 0.0f : expf(warp_m[w] - m_all); };
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) l_all += weight(w) * warp_l[w];
  const int64_t part = (i * a.num_heads + h) * n_splits + split;
  for (int d = threadIdx.x; d < D; d += kDecodeThreads) {
    float od = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) od = fmaf(weight(w), warp_o[w][d], od);
    if (n_splits == 1)
      a.out[t * a.ldo + int64_t(h) * D + d] = od / l_all;
    else
      part_o[part * D + d] = od;
  }
  if (threadIdx.x == 0 && n_splits > 1) {
    part_ml[2 * part] = m_all;
    part_ml[2 * part + 1] = l_all;
  }
}

// Block (sequence i, query head h) merges the n_splits partial results of attention_decode.
// Split 0 always holds key 0, so the overall max is finite.
__global__ void __launch_bounds__(kCombineThreads)
    attention_decode_combine(AttentionArgs a, int n_splits, const float* part_o, const float* part_ml) {
  const int64_t i = blockIdx.x, t = a.cu[i];
  if (a.cu[i + 1] == t) return;
  const int h = blockIdx.y, D = a.head_dim;
  const int64_t part0 = (i * a.num_heads + h) * n_splits;
  __shared__ float weight[kMaxSplits];
  __shared__ float l_all;
  if (threadIdx.x == 0) {
    float m_all = -INFINITY, l = 0.0f;
    for (int sp = 0; sp < n_splits; ++sp) m_all = fmaxf(m_all, part_ml[2 * (part0 + sp)]);
    for (int sp = 0; sp < n_splits; ++sp) {
      const float m_sp = part_ml[2 * (part0 + sp)];
      weight[sp] = m_sp == -INFINITY ? 0.0f : expf(m_sp - m_all);
      l += weight[sp] * part_ml[2 * (part0 + sp) + 1];
    }
    l_all = l;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += kCombineThreads) {
    float od = 0.0f;
    for (int sp = 0; sp < n_splits; ++sp) od = fmaf(weight[sp], part_o[(part0 + sp) * D + d], od);
    a.out[t * a.ldo + int64_t(h) * D + d] = od / l_all;
  }
}

void launch_decode(Context& ctx, const AttentionArgs& a, int64_t max_keys, Scratch<float>& partial) {
  // Enough splits to give the GPU kDecodeBlocksPerSm blocks per SM, each split at least one key
  // tile per warp; split_len a whole number of 32-key tiles.
  const int64_t seq_heads = a.n_seqs * a.num_heads;
  const int64_t want = kDecodeBlocksPerSm * std::max(1, ctx.prop.multiProcessorCount);
  int64_t n_splits = std::clamp((want + seq_heads - 1) / seq_heads, int64_t(1), kMaxSplits);
  n_splits = std::max(int64_t(1), std::min(n_splits, (max_keys + kMinSplitKeys - 1) / kMinSplitKeys));
  const int64_t split_len = ((max_keys + n_splits - 1) / n_splits + 31) / 32 * 32;
  n_splits = (max_keys + split_len - 1) / split_len;
  float* part_o = nullptr;
  float* part_ml = nullptr;
  if (n_splits > 1) {
    part_o = partial.get(ctx, size_t(seq_heads * n_splits) * size_t(a.head_dim + 2));
    part_ml = part_o + seq_heads * n_splits * a.head_dim;
  }
  const dim3 grid(unsigned(a.n_seqs), unsigned(a.num_heads), unsigned(n_splits));
  if (a.head_dim % 4 == 0)
    attention_decode<true><<<grid, kDecodeThreads, 0, ctx.stream>>>(a, split_len, part_o, part_ml);
  else
    attention_decode<false><<<grid, kDecodeThreads, 0, ctx.stream>>>(a, split_len, part_o, part_ml);
  M3_CUDA_LAUNCH_CHECK();
  if (n_splits > 1) {
    attention_decode_combine<<<dim3(unsigned(a.n_seqs), unsigned(a.num_heads)), kCombineThreads, 0, ctx.stream>>>(
        a, int(n_splits), part_o, part_ml);
    M3_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void flash_attention_fwd(Context& ctx, const AttentionArgs& a, int64_t max_len, int64_t max_keys,
                         Scratch<float>& partial) {
  if (a.n_seqs == 0 || max_len == 0) return;
  check(a.head_dim > 0 && a.head_dim <= kMaxAttentionHeadDim,
        "flash_attention_fwd: head_dim " + std::to_string(a.head_dim) + " is not in [1, " +
            std::to_string(kMaxAttentionHeadDim) + "]");
  check(a.num_heads <= 65535, "flash_attention_fwd: " + std::to_string(a.num_heads) + " heads exceed a grid's y");
  if (max_len == 1) {
    check(a.n_seqs <= INT_MAX, "flash_attention_fwd: " + std::to_string(a.n_seqs) + " sequences exceed a grid's x");
    launch_decode(ctx, a, max_keys, partial);
    return;
  }
  const int64_t tiles = (max_len + kPrefillQueries - 1) / kPrefillQueries;
  check(a.n_seqs * tiles <= INT_MAX, "flash_attention_fwd: " + std::to_string(a.n_seqs) + " sequences of up to " +
                                         std::to_string(max_len) + " tokens exceed a grid's x");
  if (a.head_dim <= 64)
    launch_prefill<64>(ctx, a, tiles);
  else if (a.head_dim <= 128)
    launch_prefill<128>(ctx, a, tiles);
  else
    launch_prefill<256>(ctx, a, tiles);
}

}  // namespace m3::cuda
