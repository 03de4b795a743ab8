// Scaled dot-product attention of a packed batch of queries over each sequence's KV cache in the
// state pool (spec/model.md §4), float32 with online softmax (never materialising the score
// matrix): GQA, causal or not. The cache already holds this call's keys and values (rotary
// applied) at rows pos[i] .. pos[i] + len_i − 1 of sequence i's slot.
#pragma once
#include <cstdint>

#include "cuda/context.h"

namespace m3::cuda {

// Head dims the kernels handle: any from 1 to 256.
constexpr int64_t kMaxAttentionHeadDim = 256;

struct AttentionArgs {
  // Query row t (the packed row of a token), head h: q[t·ldq + h·head_dim + d]; out likewise.
  const float* q = nullptr;
  int64_t ldq = 0;
  float* out = nullptr;
  int64_t ldo = 0;
  // The pool's kv_k / kv_v buffers: key p of sequence i, kv head g at
  // k_cache[slot[i]·cache_stride + p·num_heads_kv·head_dim + g·head_dim + d].
  const float* k_cache = nullptr;
  const float* v_cache = nullptr;
  int64_t cache_stride = 0;
  // Device arrays: cu [n_seqs + 1] packed offsets, slot [n_seqs], pos [n_seqs] (keys before the call).
  const int64_t* cu = nullptr;
  const int32_t* slot = nullptr;
  const int64_t* pos = nullptr;
  int64_t n_seqs = 0;
  int num_heads = 0, num_heads_kv = 0, head_dim = 0;
  float scale = 0;  // applied to q·k
  // Causal: the query at absolute position p sees keys 0..p; otherwise all pos[i] + len_i keys.
  bool causal = false;
};

// max_len: the longest sequence of the call; max_keys: the largest pos[i] + len_i over sequences
// with len_i > 0 (host values, for the launch shape). Calls where every sequence has at most one
// token (decode) split each sequence's keys over several blocks and keep their partial results in
// `partial`. Sequences of length 0 are skipped.
void flash_attention_fwd(Context& ctx, const AttentionArgs& a, int64_t max_len, int64_t max_keys,
                         Scratch<float>& partial);

}  // namespace m3::cuda
