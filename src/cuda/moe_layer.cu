// The MoE layer on the device (transformers' GraniteMoeHybridMoE, NemotronHMoE and
// JambaSparseMoeBlock), as
// cpu/moe_layer.cpp: router GEMM in float32 on the device; the routing itself (top-k, the
// families' softmax / sigmoid-with-groups weights) on the host with the CPU's cpu::moe_route over
// the downloaded logits, so that both backends choose the same experts from the same logits; then
// on the device each expert once over the block of rows routed to it (gathered, one product per
// projection), and every token's k results added with their weights in slot order, plus the
// shared experts. The download is a synchronisation inside the layer, so a decode step of a model
// with MoE layers is not captured into a CUDA graph (Model steps it eagerly).
#include <algorithm>
#include <string>
#include <vector>

#include "cpu/moe.h"
#include "cuda/check.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/weights.h"
#include "model/specs.h"

namespace m3::cuda {

namespace {

// xe[r] = x[token[r]] for rows of d.
__global__ void moe_gather_rows(float* __restrict__ xe, const float* __restrict__ x, const int32_t* __restrict__ token,
                                int64_t d) {
  const float* src = x + int64_t(token[blockIdx.x]) * d;
  float* dst = xe + int64_t(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dst[i] = src[i];
}

// y[t] += Σ_j w[t·K + j] · ye[pos[t·K + j]], j = 0 .. K − 1 in order.
__global__ void moe_combine_rows(float* __restrict__ y, const float* __restrict__ ye, const int32_t* __restrict__ pos,
                                 const float* __restrict__ w, int64_t K, int64_t d) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = y[t * d + i];
    for (int64_t j = 0; j < K; ++j) acc += w[t * K + j] * ye[int64_t(pos[t * K + j]) * d + i];
    y[t * d + i] = acc;
  }
}

// Rows [r0, r0 + rows) of a float32 host tensor read as [n, cols] (cols its last dimension: an
// expert's block of a stacked [E, rows, cols] tensor) as a 2-D tensor.
Tensor row_block(const Tensor& t, int64_t r0, int64_t rows) {
  const int64_t cols = t.shape.back();
  Tensor b = Tensor::zeros(DType::F32, {rows, cols});
  std::copy_n(t.f32() + r0 * cols, rows * cols, b.f32());
  return b;
}

// One feed-forward block on the device: in [rows, d] (gated: [gate | up], 2·hidden rows), out
// [d, hidden]; gated → up ⊙ silu(gate), else relu² (cpu::ffn_rows).
struct DeviceFfn {
  Matrix in, out;
  int64_t hidden = 0;
  bool gated = false;
};

class MoeLayer final : public Layer {
 public:
  MoeLayer(Context& ctx, const MoeConfig& c, int64_t d_model, const ParamMap& p) : ctx_(ctx), c_(c), d_(d_model) {
    const bool granite = c_.family == MoeConfig::Family::Granite, jamba = c_.family == MoeConfig::Family::Jamba;
    const int64_t I = c_.expert_hidden;
    // The router stays float32 under bf16 too: routing is a discrete choice (cuda/weights.h keeps
    // every parameter but the big matrices in float32).
    const Tensor& router = p.at(granite ? "router.layer.weight" : jamba ? "router.weight" : "gate.weight");
    router_.mem = upload_f32(ctx, router);
    router_.data = router_.mem.get();
    router_.rows = router.shape[0];
    router_.cols = router.shape[1];
    if (!granite && !jamba) score_bias_ = p.at("gate.e_score_correction_bias");
    for (int64_t e = 0; e < c_.n_experts; ++e) {
      const std::string x = "experts." + std::to_string(e) + ".";
      if (jamba) {
        experts_.push_back({upload_matrix(ctx, p.at(x + "gate_up_proj.weight")),
                            upload_matrix(ctx, p.at(x + "down_proj.weight")), I, true});
      } else if (granite) {
        experts_.push_back({upload_matrix(ctx, row_block(p.at("input_linear.weight"), e * 2 * I, 2 * I)),
                            upload_matrix(ctx, row_block(p.at("output_linear.weight"), e * d_, d_)), I, true});
      } else {
        experts_.push_back({upload_matrix(ctx, p.at(x + "up_proj.weight")), upload_matrix(ctx, p.at(x + "down_proj.weight")),
                            I, false});
      }
    }
    if (c_.shared_hidden > 0) {
      const char* pre = granite ? "shared_mlp." : "shared_experts.";
      shared_ = {upload_matrix(ctx, p.at(std::string(pre) + (granite ? "input_linear.weight" : "up_proj.weight"))),
                 upload_matrix(ctx, p.at(std::string(pre) + (granite ? "output_linear.weight" : "down_proj.weight"))),
                 c_.shared_hidden, granite};
    }
  }
  std::string describe() const override { return moe_describe(c_); }
  void forward(const float* x, float* y, const Packing& pk, const StateBatch&) override { run(x, y, pk.n_tokens()); }
  void step(const float* x, float* y, int64_t n, const StateBatch&) override { run(x, y, n); }

 private:
  static int64_t in_rows(const DeviceFfn& f) { return f.gated ? 2 * f.hidden : f.hidden; }

  // out[T, d] = ffn(in[T, d]); h: scratch of T·in_rows(f) floats.
  void ffn(const DeviceFfn& f, const float* in, float* out, int64_t T, float* h) {
    const int64_t H = f.hidden, in_rows = MoeLayer::in_rows(f);
    linear_fwd(ctx_, h, in, f.in, nullptr, T, d_, in_rows);
    if (f.gated)
      silu_gate_fwd(ctx_, h, h + H, h, T, H, in_rows, in_rows, in_rows);  // up ⊙ silu(gate), over the gate half
    else
      relu2_fwd(ctx_, h, T * H);
    linear_fwd(ctx_, out, h, f.out, nullptr, T, H, d_, in_rows, d_);
  }

  void run(const float* x, float* y, int64_t T) {
    if (T == 0) return;
    const int64_t E = c_.n_experts, K = c_.top_k;
    float* logits = logits_dev_.get(ctx_, size_t(T * E));
    linear_fwd(ctx_, logits, x, router_, nullptr, T, d_, E);
    logits_.resize(size_t(T * E));
    M3_CUDA_CHECK(cudaMemcpyAsync(logits_.data(), logits, logits_.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                  ctx_.stream));
    M3_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    idx_.resize(size_t(T * K));
    w_.resize(size_t(T * K));
    cpu::moe_route(c_, logits_.data(), score_bias_.data ? score_bias_.f32() : nullptr, T, idx_.data(), w_.data());
    // Counting sort of the (token, slot) pairs by expert: row r of the gathered block is pair
    // order[r]; pos[pair] = its row.
    start_.assign(size_t(E + 1), 0);
    for (int64_t i = 0; i < T * K; ++i) ++start_[size_t(idx_[size_t(i)] + 1)];
    for (int64_t e = 0; e < E; ++e) start_[size_t(e + 1)] += start_[size_t(e)];
    std::vector<int64_t> fill = start_;
    token_.resize(size_t(T * K));
    pos_.resize(size_t(T * K));
    for (int64_t i = 0; i < T * K; ++i) {
      const int64_t r = fill[size_t(idx_[size_t(i)])]++;
      token_[size_t(r)] = int32_t(i / K);
      pos_[size_t(i)] = int32_t(r);
    }
    const int32_t* token = upload_small(ctx_, token_dev_, token_.data(), token_.size());
    const int32_t* pos = upload_small(ctx_, pos_dev_, pos_.data(), pos_.size());
    const float* w = upload_small(ctx_, w_dev_, w_.data(), w_.size());

    float* xe = xe_.get(ctx_, size_t(T * K * d_));
    float* ye = ye_.get(ctx_, size_t(T * K * d_));
    // One scratch for every product of this call, sized once (growing it between experts would
    // free memory kernels already queued still use).
    int64_t h_floats = shared_.hidden > 0 ? T * in_rows(shared_) : 0;
    for (int64_t e = 0; e < E; ++e)
      h_floats = std::max(h_floats, (start_[size_t(e + 1)] - start_[size_t(e)]) * in_rows(experts_[size_t(e)]));
    float* h = h_.get(ctx_, size_t(h_floats));
    moe_gather_rows<<<unsigned(T * K), 256, 0, ctx_.stream>>>(xe, x, token, d_);
    M3_CUDA_LAUNCH_CHECK();
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = start_[size_t(e + 1)] - start_[size_t(e)];
      if (n > 0) ffn(experts_[size_t(e)], xe + start_[size_t(e)] * d_, ye + start_[size_t(e)] * d_, n, h);
    }
    if (shared_.hidden > 0)
      ffn(shared_, x, y, T, h);
    else
      M3_CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(T * d_) * sizeof(float), ctx_.stream));
    moe_combine_rows<<<unsigned(T), 256, 0, ctx_.stream>>>(y, ye, pos, w, K, d_);
    M3_CUDA_LAUNCH_CHECK();
  }

  Context& ctx_;
  MoeConfig c_;
  int64_t d_;
  Matrix router_;      // float32 [E, d]
  Tensor score_bias_;  // NemotronH's e_score_correction_bias [E] (host); empty for Granite
  std::vector<DeviceFfn> experts_;
  DeviceFfn shared_;  // hidden 0: none
  // Host routing: logits [T, E], chosen experts and weights [T, K], expert block starts [E + 1],
  // each gathered row's token [T·K], each pair's gathered row [T·K].
  std::vector<float> logits_, w_;
  std::vector<int32_t> idx_, token_, pos_;
  std::vector<int64_t> start_;
  Scratch<float> logits_dev_, w_dev_, xe_, ye_, h_;
  Scratch<int32_t> token_dev_, pos_dev_;
};

}  // namespace

std::unique_ptr<Layer> make_moe(Context& ctx, const MoeConfig& c, int64_t d_model, ParamMap p) {
  return std::make_unique<MoeLayer>(ctx, c, d_model, p);
}

}  // namespace m3::cuda
