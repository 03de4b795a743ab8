// MHA mixer on the device (spec/model.md §4), the same pipeline as cpu/attention_layer.cpp:
// in_proj → [q | k | v | mlp]; the optional causal conv over q, k, v with each sequence's conv
// window (into a separate array: the conv's output may not alias its input); rotary on q and k at
// absolute positions, new k, v appended to the sequence's KV cache in the state pool; attention of
// the queries over the cache (cuda/flash_attention.h); the mlp branch up ⊙ silu(gate) after the
// attention output; out_proj. Decode is the same pipeline over one token per sequence.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <string>

#include "cuda/conv1d.h"
#include "cuda/flash_attention.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/weights.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

constexpr int kRotaryThreads = 128;

// The sequence holding packed row t: the last i with cu[i] ≤ t (sequences of length 0 just
// before it share its start, and cu[i + 1] > t for the last one).
__device__ inline int64_t sequence_of(const int64_t* cu, int64_t n_seqs, int64_t t) {
  int64_t lo = 0, hi = n_seqs - 1;  // cu[lo] ≤ t; the answer is in [lo, hi]
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// One block per packed row t of sequence i, at absolute position p = pos[i] + t − cu[i]. Rotary
// (spec/model.md §4) turns each pair of the first `rot` dims of a head, (2j, 2j+1) interleaved or
// (j, j + rot/2) rotate-half, by the angle p·inv_freq[j] (float32, as the CPU computes it): q heads
// in place, k heads into row p of the sequence's kv_k cache; v goes to row p of kv_v unchanged.
// The thread of a pair's first element writes both, so no thread reads what another writes.
__global__ void rotary_kv_append(float* qkv, int64_t ld, const int64_t* cu, int64_t n_seqs, const int32_t* slot,
                                 const int64_t* pos, float* k_cache, float* v_cache, int64_t cache_stride,
                                 const float* inv_freq, int num_heads, int num_heads_kv, int D, int rot,
                                 bool interleaved) {
  const int64_t t = blockIdx.x, i = sequence_of(cu, n_seqs, t), p = pos[i] + t - cu[i];
  const int Dq = num_heads * D, Dkv = num_heads_kv * D, half = rot / 2;
  float* row = qkv + t * ld;
  const int64_t cache_row = int64_t(slot[i]) * cache_stride + p * Dkv;
  float* kc = k_cache + cache_row;
  float* vc = v_cache + cache_row;
  for (int e = threadIdx.x; e < Dq + 2 * Dkv; e += kRotaryThreads) {
    if (e >= Dq + Dkv) {
      vc[e - Dq - Dkv] = row[e];
      continue;
    }
    const bool is_q = e < Dq;
    const int f = is_q ? e : e - Dq, d = f % D;  // index within q (or k), dim within its head
    if (d >= rot) {
      if (!is_q) kc[f] = row[e];
      continue;
    }
    if (interleaved ? d % 2 == 1 : d >= half) continue;  // the pair's second element
    const int j = interleaved ? d / 2 : d, step = interleaved ? 1 : half;
    float sn, cs;
    sincosf(float(p) * inv_freq[j], &sn, &cs);
    const float x0 = row[e], x1 = row[e + step];
    float* dst = is_q ? row : kc;
    dst[f] = x0 * cs - x1 * sn;
    dst[f + step] = x0 * sn + x1 * cs;
  }
}

class AttentionLayer final : public Layer {
 public:
  AttentionLayer(Context& ctx, const AttnConfig& c, int64_t d_in, int64_t d_out, const ParamMap& p)
      : ctx_(ctx), c_(c), d_in_(d_in), d_out_(d_out) {
    check(c.head_dim > 0 && c.head_dim <= kMaxAttentionHeadDim,
          "MHA on CUDA: head_dim " + std::to_string(c.head_dim) + " is not in [1, " +
              std::to_string(kMaxAttentionHeadDim) + "]");
    const auto f32_or_null = [&](const char* name) { return p.count(name) ? upload_f32(ctx, p.at(name)) : nullptr; };
    in_proj_ = upload_matrix(ctx, p.at("in_proj.weight"));
    in_bias_ = f32_or_null("in_proj.bias");
    conv_w_ = f32_or_null("conv1d.weight");
    conv_b_ = f32_or_null("conv1d.bias");
    out_proj_ = upload_matrix(ctx, p.at("out_proj.weight"));
    out_bias_ = f32_or_null("out_proj.bias");
    // inv_freq_j = base^(−2j/rotary_emb_dim), in double and rounded to float like the CPU.
    const int64_t half = c_.rotary_emb_dim / 2;
    if (half > 0) {
      Tensor f = Tensor::zeros(DType::F32, {half});
      for (int64_t j = 0; j < half; ++j)
        f.f32()[j] = float(1.0 / std::pow(c_.rotary_emb_base, double(2 * j) / double(c_.rotary_emb_dim)));
      inv_freq_ = upload_f32(ctx, f);
    }
  }

  // The CPU layer's line, character for character.
  std::string describe() const override { return attention_describe(c_); }
  LayerStateSpec state_spec() const override { return attention_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override {
    int64_t max_len = 0, max_keys = 0;
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      max_len = std::max(max_len, pk.len(i));
      if (pk.len(i) > 0) max_keys = std::max(max_keys, s.pos[i] + pk.len(i));
    }
    run(x, y, pk.n_tokens(), pk.cu_dev, pk.n_seqs(), max_len, max_keys, s);
  }

  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    int64_t max_keys = 0;
    for (int64_t i = 0; i < n; ++i) max_keys = std::max(max_keys, s.pos[i] + 1);
    run(x, y, n, step_cu_.get(ctx_, n), n, 1, max_keys, s);
  }

 private:
  // T tokens of n_seqs sequences (rows cu[i]..cu[i+1], device offsets), the longest max_len,
  // max_keys the longest KV length after the call; state buffers s.buf[0] = kv_k, s.buf[1] = kv_v,
  // s.buf[2] = conv [qkv_dim, d_conv] (model/specs.h).
  void run(const float* x, float* y, int64_t T, const int64_t* cu, int64_t n_seqs, int64_t max_len, int64_t max_keys,
           const StateBatch& s) {
    if (T == 0) return;
    check(T <= INT_MAX, "MHA on CUDA: " + std::to_string(T) + " tokens exceed one launch's grid");
    const int64_t qkv_dim = c_.qkv_dim(), in_dim = qkv_dim + c_.mlp_dim, Dq = c_.num_heads * c_.head_dim;
    const int64_t attn_dim = Dq + c_.mlp_dim / 2;  // out_proj's input: [attention | mlp branch]
    float* qkv = qkv_.get(ctx_, size_t(T * in_dim));
    linear_fwd(ctx_, qkv, x, in_proj_, in_bias_.get(), T, d_in_, in_dim);
    // q, k, v rows: the in_proj output itself, or the conv's output.
    float* rows = qkv;
    int64_t ld = in_dim;
    if (c_.d_conv > 0) {
      rows = conv_out_.get(ctx_, size_t(T * qkv_dim));
      ld = qkv_dim;
      causal_conv1d_fwd(ctx_, rows, ld, qkv, in_dim, cu, n_seqs, max_len, qkv_dim, conv_w_.get(), conv_b_.get(),
                        c_.d_conv, s.buf[2], s.slot_dev, s.stride[2], false);
    }
    rotary_kv_append<<<unsigned(T), kRotaryThreads, 0, ctx_.stream>>>(
        rows, ld, cu, n_seqs, s.slot_dev, s.pos_dev, s.buf[0], s.buf[1], s.stride[0], inv_freq_.get(),
        int(c_.num_heads), int(c_.num_heads_kv), int(c_.head_dim), int(c_.rotary_emb_dim), c_.rotary_emb_interleaved);
    M3_CUDA_LAUNCH_CHECK();

    float* attn = attn_.get(ctx_, size_t(T * attn_dim));
    AttentionArgs a;
    a.q = rows;
    a.ldq = ld;
    a.out = attn;
    a.ldo = attn_dim;
    a.k_cache = s.buf[0];
    a.v_cache = s.buf[1];
    a.cache_stride = s.stride[0];  // kv_k and kv_v have the same shape
    a.cu = cu;
    a.slot = s.slot_dev;
    a.pos = s.pos_dev;
    a.n_seqs = n_seqs;
    a.num_heads = int(c_.num_heads);
    a.num_heads_kv = int(c_.num_heads_kv);
    a.head_dim = int(c_.head_dim);
    a.scale = c_.softmax_scale > 0 ? float(c_.softmax_scale) : 1.0f / std::sqrt(float(c_.head_dim));
    a.causal = c_.causal;
    flash_attention_fwd(ctx_, a, max_len, max_keys, partial_);

    if (c_.mlp_dim > 0)
      silu_gate_fwd(ctx_, attn + Dq, qkv + qkv_dim, qkv + qkv_dim + c_.mlp_dim / 2, T, c_.mlp_dim / 2, in_dim, in_dim,
                    attn_dim);
    linear_fwd(ctx_, y, attn, out_proj_, out_bias_.get(), T, attn_dim, d_out_);
  }

  Context& ctx_;
  AttnConfig c_;
  int64_t d_in_, d_out_;  // input and output row widths (d_model but in Zamba2's shared block: 2·d → d)
  Matrix in_proj_, out_proj_;
  std::shared_ptr<float> in_bias_, conv_w_, conv_b_, out_bias_, inv_freq_;  // null: absent
  // [T, qkv_dim + mlp_dim], [T, qkv_dim], [T, num_heads·head_dim + mlp_dim/2], decode split partials
  Scratch<float> qkv_, conv_out_, attn_, partial_;
  OneTokenOffsets step_cu_;
};

}  // namespace

std::unique_ptr<Layer> make_attention(Context& ctx, const AttnConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<AttentionLayer>(ctx, c, d_model, d_model, p);
}

std::unique_ptr<Layer> make_attention(Context& ctx, const AttnConfig& c, int64_t d_in, int64_t d_out, ParamMap p) {
  return std::make_unique<AttentionLayer>(ctx, c, d_in, d_out, p);
}

}  // namespace m3::cuda
