// MHA mixer on the CPU (spec/model.md §4): in_proj, optional causal depthwise conv over qkv,
// rotary on the first rotary_emb_dim dims of q and k at absolute positions, GQA scaled dot-product
// attention over the KV cache plus the new tokens, optional fused MLP branch, out_proj.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "core/omp_exceptions.h"
#include "cpu/conv1d.h"
#include "cpu/layers.h"
#include "cpu/ops.h"
#include "cpu/vec_math.h"
#include "m3/error.h"
#include "model/specs.h"

namespace m3::cpu {

namespace {

// Query rows per block of the score matrix: bounds scratch memory for long prompts.
constexpr int64_t kQueryBlock = 256;
// Below this many flops one attention call runs on the calling thread. Measured on 2 cores (8
// heads of 32): two threads take 0.55-0.75x the serial time from 2e4 flops up on a quiet machine,
// but on a loaded one a parallel region over 1e4 flops took ~40x the serial time (threads waiting
// for a core). At 1e5 flops (one new token over 100 of context) serial costs ~12 us, so a few us
// lost when quiet against tens to thousands of us saved when loaded.
constexpr double kParallelFlops = 1e5;

// Buffers of the state, in attention_state_spec's order ("conv" only when d_conv > 0).
enum : size_t { kKvK, kKvV, kConv };

class AttentionLayer final : public Layer {
 public:
  AttentionLayer(const AttnConfig& c, int64_t d_in, int64_t d_out, ParamMap p)
      : c_(c), d_in_(d_in), d_out_(d_out), p_(std::move(p)) {
    auto get = [&](const char* name, bool present) { return present ? p_.at(name).f32() : nullptr; };
    w_ = {get("in_proj.weight", true), get("in_proj.bias", c_.qkv_proj_bias), get("out_proj.weight", true),
          get("out_proj.bias", c_.out_proj_bias), get("conv1d.weight", c_.d_conv > 0), get("conv1d.bias", c_.d_conv > 0)};
    const int64_t half = c_.rotary_emb_dim / 2;
    inv_freq_.resize(size_t(half));
    for (int64_t j = 0; j < half; ++j)
      inv_freq_[size_t(j)] = float(1.0 / std::pow(c_.rotary_emb_base, double(2 * j) / double(c_.rotary_emb_dim)));
  }

  std::string describe() const override { return attention_describe(c_); }
  LayerStateSpec state_spec() const override { return attention_state_spec(c_); }

  void forward(const float* x, float* y, const Packing& pk, const StateBatch& s) override { run(x, y, pk, s); }
  void step(const float* x, float* y, int64_t n, const StateBatch& s) override {
    step_pk_.cu_seqlens.resize(size_t(n + 1));
    for (int64_t i = 0; i <= n; ++i) step_pk_.cu_seqlens[size_t(i)] = i;
    run(x, y, step_pk_, s);
  }

 private:
  int64_t in_dim() const { return c_.qkv_dim() + c_.mlp_dim; }
  int64_t ctx_dim() const { return c_.num_heads * c_.head_dim + c_.mlp_dim / 2; }

  // Sequence i's keys and values: rows 0..past−1 of its KV buffers are the cached ones, the new
  // tokens' go to rows past..past+L−1 (the caller reserved the capacity).
  void run(const float* x, float* y, const Packing& pk, const StateBatch& s) {
    const int64_t T = pk.n_tokens(), Dq = c_.num_heads * c_.head_dim, Dkv = c_.num_heads_kv * c_.head_dim;
    for (int64_t i = 0; i < pk.n_seqs(); ++i)
      if (s.pos[i] + pk.len(i) > s.kv_capacity)
        throw Error("attention: sequence " + std::to_string(i) + " needs " + std::to_string(s.pos[i] + pk.len(i)) +
                    " KV positions, the state pool holds " + std::to_string(s.kv_capacity));
    qkv_.resize(size_t(T * in_dim()));
    linear_fwd(qkv_.data(), x, w_.in_proj, w_.in_bias, T, d_in_, in_dim());
    ctx_.resize(size_t(T * ctx_dim()));
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      const int64_t t0 = pk.start(i), L = pk.len(i), past = s.pos[i];
      if (L == 0) continue;
      if (c_.d_conv > 0) {
        float* q = qkv_.data() + t0 * in_dim();
        causal_conv1d_fwd(q, in_dim(), q, in_dim(), L, c_.qkv_dim(), w_.conv, w_.conv_bias, c_.d_conv,
                          s.at(kConv, i), false);
      }
      float *K = s.at(kKvK, i), *V = s.at(kKvV, i);
      for (int64_t t = 0; t < L; ++t) {
        float* row = qkv_.data() + (t0 + t) * in_dim();
        rotary(row, c_.num_heads, past + t);
        rotary(row + Dq, c_.num_heads_kv, past + t);
        std::copy_n(row + Dq, Dkv, K + (past + t) * Dkv);
        std::copy_n(row + Dq + Dkv, Dkv, V + (past + t) * Dkv);
      }
      attend(t0, L, past, K, V);
    }
    if (c_.mlp_dim > 0 && T > 0)  // (no tokens: ctx_ may be empty, its data() null)
      silu_gate_fwd(ctx_.data() + Dq, qkv_.data() + c_.qkv_dim(), qkv_.data() + c_.qkv_dim() + c_.mlp_dim / 2, T,
                    c_.mlp_dim / 2, in_dim(), in_dim(), ctx_dim());
    linear_fwd(y, ctx_.data(), w_.out_proj, w_.out_bias, T, ctx_dim(), d_out_);
  }

  // Rotary embedding at position pos on the first rotary_emb_dim dims of each of n heads.
  void rotary(float* v, int64_t n, int64_t pos) const {
    const int64_t half = c_.rotary_emb_dim / 2;
    for (int64_t j = 0; j < half; ++j) {
      const float ang = float(pos) * inv_freq_[size_t(j)];
      const float cs = std::cos(ang), sn = std::sin(ang);
      for (int64_t h = 0; h < n; ++h) {
        float* hv = v + h * c_.head_dim;
        const int64_t i0 = c_.rotary_emb_interleaved ? 2 * j : j;
        const int64_t i1 = c_.rotary_emb_interleaved ? 2 * j + 1 : j + half;
        const float a = hv[i0], b = hv[i1];
        hv[i0] = a * cs - b * sn;
        hv[i1] = a * sn + b * cs;
      }
    }
  }

  // ctx rows [t0, t0+L) from queries at absolute positions past..past+L−1 over keys 0..past+L−1.
  void attend(int64_t t0, int64_t L, int64_t past, const float* K, const float* V) {
    const int64_t Dh = c_.head_dim, Dkv = c_.num_heads_kv * Dh, Lk = past + L;
    const float scale = c_.softmax_scale > 0 ? float(c_.softmax_scale) : 1.0f / std::sqrt(float(Dh));
    const int64_t nblk = (L + kQueryBlock - 1) / kQueryBlock;
    const double flops = 4.0 * double(c_.num_heads) * double(L) * double(Lk) * double(Dh);  // QKᵀ and PV
    OmpExceptions errors;  // a scratch buffer's bad_alloc
#pragma omp parallel if (flops > kParallelFlops)
    {
      std::vector<float> s;
      errors.run([&] { s.resize(size_t(std::min(L, kQueryBlock) * Lk)); });
#pragma omp for schedule(dynamic, 1)
      for (int64_t w = 0; w < c_.num_heads * nblk; ++w) {
        if (s.empty()) continue;  // its allocation failed
        const int64_t h = w / nblk, q0 = (w % nblk) * kQueryBlock, nq = std::min(kQueryBlock, L - q0);
        const int64_t kvh = h / (c_.num_heads / c_.num_heads_kv);
        const float* Q = qkv_.data() + (t0 + q0) * in_dim() + h * Dh;
        const int64_t nk = c_.causal ? past + q0 + nq : Lk;  // keys any query of this block may see
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nq), int(nk), int(Dh), scale, Q, int(in_dim()),
                    K + kvh * Dh, int(Dkv), 0.0f, s.data(), int(nk));
        for (int64_t i = 0; i < nq; ++i) {
          float* row = s.data() + i * nk;
          const int64_t visible = c_.causal ? past + q0 + i + 1 : Lk;
          float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
          for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, row[j]);
          float sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < visible; ++j) sum += (row[j] = exp_approx(row[j] - mx));
          const float inv = 1.0f / sum;
#pragma omp simd
          for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
          std::fill(row + visible, row + nk, 0.0f);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nq), int(Dh), int(nk), 1.0f, s.data(), int(nk),
                    V + kvh * Dh, int(Dkv), 0.0f, ctx_.data() + (t0 + q0) * ctx_dim() + h * Dh, int(ctx_dim()));
      }
    }
    errors.rethrow();
  }

  AttnConfig c_;
  int64_t d_in_, d_out_;
  ParamMap p_;
  struct {
    const float *in_proj, *in_bias, *out_proj, *out_bias, *conv, *conv_bias;
  } w_;  // p_'s data (null where the config has no such tensor), looked up once
  Packing step_pk_;  // one token per sequence
  std::vector<float> inv_freq_, qkv_, ctx_;
};

}  // namespace

std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<AttentionLayer>(c, d_model, d_model, std::move(p));
}

std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d_in, int64_t d_out, ParamMap p) {
  return std::make_unique<AttentionLayer>(c, d_in, d_out, std::move(p));
}

}  // namespace m3::cpu
