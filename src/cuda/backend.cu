// The CUDA backend: memory and copies on the context's stream, the graph's own ops (embedding
// gather, residual add + norm, final norm + lm_head) and the layer factories.
#include <cuda_bf16.h>

#include <exception>
#include <functional>

#include "cuda/backend.h"
#include "cuda/check.h"
#include "cuda/layers.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/roofline.h"
#include "cuda/weights.h"
#include "model/parallel_layer.h"

namespace m3::cuda {

namespace {

__device__ inline float load_weight(const float* p, int64_t i) { return p[i]; }
__device__ inline float load_weight(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

// x[t] = table[tokens[t]] for n rows of d.
template <class W>
__global__ void gather_embedding(float* __restrict__ x, const W* __restrict__ table, const int32_t* __restrict__ tokens,
                                 int64_t d) {
  const int64_t row = int64_t(tokens[blockIdx.x]) * d;
  float* out = x + int64_t(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[i] = load_weight(table, row + i);
}

// h[i] = residual[rows[i]] + add[rows[i]] (add may be null).
__global__ void gather_rows_add(float* __restrict__ h, const float* __restrict__ residual, const float* __restrict__ add,
                                const int64_t* __restrict__ rows, int64_t d) {
  const int64_t r = rows[blockIdx.x] * d;
  float* out = h + int64_t(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[i] = residual[r + i] + (add ? add[r + i] : 0.0f);
}

class CudaBlockNorm final : public BlockNorm {
 public:
  CudaBlockNorm(Context& ctx, int64_t d, bool rms, float eps, const ParamMap& p) : ctx_(ctx), d_(d), eps_(eps) {
    w_ = upload_f32(ctx, p.at("weight"));
    if (!rms) b_ = upload_f32(ctx, p.at("bias"));
  }
  void forward(float* residual, const float* add, float* normed, int64_t T) override {
    add_norm_fwd(ctx_, residual, add, normed, w_.get(), b_.get(), T, d_, eps_);
  }

 private:
  Context& ctx_;
  int64_t d_;
  float eps_;
  std::shared_ptr<float> w_, b_;
};

class CudaEnds final : public ModelEnds {
 public:
  CudaEnds(Context& ctx, const ModelConfig& c, const Tensor& embedding, const ParamMap& norm_f, const Tensor& lm_head)
      : ctx_(ctx), d_(c.d_model), V_(c.vocab_padded()), eps_(float(c.norm_eps)) {
    emb_ = upload_matrix(ctx, embedding);
    head_ = lm_head.data == embedding.data ? emb_ : upload_matrix(ctx, lm_head);  // tied: one copy
    w_ = upload_f32(ctx, norm_f.at("weight"));
    if (!c.rms_norm) b_ = upload_f32(ctx, norm_f.at("bias"));
  }
  void embed(float* x, const int32_t* tokens, int64_t n) override {
    if (n <= 0) return;
    if (emb_.bf16)
      gather_embedding<<<unsigned(n), 256, 0, ctx_.stream>>>(x, static_cast<const __nv_bfloat16*>(emb_.data), tokens, d_);
    else
      gather_embedding<<<unsigned(n), 256, 0, ctx_.stream>>>(x, static_cast<const float*>(emb_.data), tokens, d_);
    M3_CUDA_LAUNCH_CHECK();
  }
  void logits(float* out, const float* residual, const float* add, const int64_t* rows, int64_t n) override {
    if (n <= 0) return;
    float* h = h_.get(ctx_, size_t(n * d_));
    float* hn = hn_.get(ctx_, size_t(n * d_));
    gather_rows_add<<<unsigned(n), 256, 0, ctx_.stream>>>(h, residual, add, rows, d_);
    M3_CUDA_LAUNCH_CHECK();
    add_norm_fwd(ctx_, h, nullptr, hn, w_.get(), b_.get(), n, d_, eps_);
    linear_fwd(ctx_, out, hn, head_, nullptr, n, d_, V_);
  }

 private:
  Context& ctx_;
  int64_t d_, V_;
  float eps_;
  Matrix emb_, head_;
  std::shared_ptr<float> w_, b_;
  Scratch<float> h_, hn_;
};

class CudaRecording final : public Recording {
 public:
  CudaRecording(const Context& ctx, cudaGraphExec_t exec, uint64_t epoch) : ctx_(ctx), exec_(exec), epoch_(epoch) {}
  ~CudaRecording() override { cudaGraphExecDestroy(exec_); }
  bool replay() override {
    if (ctx_.alloc_epoch != epoch_) return false;
    M3_CUDA_CHECK(cudaGraphLaunch(exec_, ctx_.stream));
    return true;
  }

 private:
  const Context& ctx_;
  cudaGraphExec_t exec_;
  uint64_t epoch_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const DeviceSpec& spec) : spec_(spec) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      throw Error("--device " + spec.str() + ": no CUDA GPU is visible (" +
                  (e != cudaSuccess ? std::string(cudaGetErrorString(e)) : std::string("0 devices")) + ")");
    }
    check(spec.index < count, "--device cuda:" + std::to_string(spec.index) + ": this machine has " +
                                  std::to_string(count) + " CUDA GPU" + (count == 1 ? "" : "s"));
    ctx_.device = spec.index;
    ctx_.precision = spec.precision;
    M3_CUDA_CHECK(cudaSetDevice(ctx_.device));
    M3_CUDA_CHECK(cudaGetDeviceProperties(&ctx_.prop, ctx_.device));
    check(ctx_.prop.major >= 9, std::string("--device ") + spec.str() + ": " + ctx_.prop.name + " is compute capability " +
                                    std::to_string(ctx_.prop.major) + "." + std::to_string(ctx_.prop.minor) +
                                    "; this build runs on Hopper (sm_90a)");
    M3_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
    M3_CUBLAS_CHECK(cublasLtCreate(&ctx_.lt));
    ctx_.lt_workspace_bytes = size_t(32) << 20;
    workspace_ = device_alloc(ctx_, ctx_.lt_workspace_bytes);
    ctx_.lt_workspace = workspace_.get();
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(ctx_.stream);
    workspace_.reset();
    ctx_.linear_x_bf16 = {};
    cublasLtDestroy(ctx_.lt);
    cudaStreamDestroy(ctx_.stream);
  }

  Context& context() { return ctx_; }
  const DeviceSpec& device() const override { return spec_; }
  std::string describe() const override {
    return "cuda:" + std::to_string(ctx_.device) + " " + ctx_.prop.name + ", " +
           (ctx_.precision == Precision::BF16 ? "bf16 matrices (fp32 accumulation, state and SSM parameters)" : "f32");
  }

  std::shared_ptr<void> alloc(size_t bytes) override { return device_alloc(ctx_, bytes); }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes) M3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) M3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    M3_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) M3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
  }
  void zero(void* dst, size_t bytes) override {
    if (bytes) M3_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx_.stream));
  }
  void synchronize() override { M3_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }
  size_t weight_bytes() const override { return ctx_.weight_bytes; }

  std::unique_ptr<RooflineProbe> make_roofline_probe(int64_t M, int64_t N, int64_t K) override {
    return cuda::make_roofline_probe(ctx_, M, N, K);
  }

  // A stream capture of `work` into a CUDA graph: one launch replays every kernel of a decode step.
  // Work that cannot be captured (a pageable copy, an allocation) ends the capture and gives null.
  std::unique_ptr<Recording> record(const std::function<void()>& work) override {
    const uint64_t epoch = ctx_.alloc_epoch;
    M3_CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal));
    bool ok = true;
    try {
      work();
    } catch (const std::exception&) {
      ok = false;
    }
    cudaGraph_t graph = nullptr;
    ok = cudaStreamEndCapture(ctx_.stream, &graph) == cudaSuccess && ok && graph && ctx_.alloc_epoch == epoch;
    cudaGraphExec_t exec = nullptr;
    ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    if (graph) cudaGraphDestroy(graph);
    if (!ok) {
      (void)cudaGetLastError();  // a failed capture's error is answered by stepping eagerly
      return nullptr;
    }
    return std::make_unique<CudaRecording>(ctx_, exec, epoch);
  }

  std::unique_ptr<Layer> make_mamba3(const Mamba3Config& c, int64_t d, ParamMap p) override {
    return cuda::make_mamba3(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_mamba2(const Mamba2Config& c, int64_t d, ParamMap p) override {
    return cuda::make_mamba2(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_mamba1(const Mamba1Config& c, int64_t d, ParamMap p) override {
    return cuda::make_mamba1(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d, ParamMap p) override {
    return cuda::make_attention(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_gated_mlp(int64_t d, int64_t hidden, ParamMap p) override {
    return cuda::make_gated_mlp(ctx_, d, hidden, std::move(p));
  }
  std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d, ParamMap p) override {
    return cuda::make_mlp(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d, ParamMap p) override {
    return cuda::make_moe(ctx_, c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_parallel(std::vector<std::unique_ptr<Layer>> parts, int64_t d) override {
    auto tmp = std::make_shared<Scratch<float>>();
    return make_parallel_layer(std::move(parts), d,
                               {.scratch = [this, tmp](int64_t n) { return tmp->get(ctx_, size_t(n)); },
                                .add = [this](float* y, const float* x, int64_t n) { add_fwd(ctx_, y, x, n); }});
  }
  std::unique_ptr<Layer> make_zamba2_hybrid(const ModelConfig& c, ParamMap p, ParamMap ssm_norm) override {
    return cuda::make_zamba2_hybrid(ctx_, c, std::move(p), std::move(ssm_norm));
  }
  void zamba2_rows(float* rows, float* residual, const float* add, const float* emb, int64_t T, int64_t d) override {
    if (T <= 0) return;
    if (add) add_fwd(ctx_, residual, add, T * d);
    // Two strided copies: the residual into each row's first d columns, the embeddings into its last d.
    const size_t row = size_t(d) * sizeof(float);
    M3_CUDA_CHECK(
        cudaMemcpy2DAsync(rows, 2 * row, residual, row, row, size_t(T), cudaMemcpyDeviceToDevice, ctx_.stream));
    M3_CUDA_CHECK(
        cudaMemcpy2DAsync(rows + d, 2 * row, emb, row, row, size_t(T), cudaMemcpyDeviceToDevice, ctx_.stream));
  }
  std::unique_ptr<BlockNorm> make_norm(int64_t d, bool rms, float eps, ParamMap p) override {
    return std::make_unique<CudaBlockNorm>(ctx_, d, rms, eps, p);
  }
  std::unique_ptr<ModelEnds> make_ends(const ModelConfig& c, const Tensor& embedding, ParamMap norm_f,
                                       const Tensor& lm_head) override {
    return std::make_unique<CudaEnds>(ctx_, c, embedding, norm_f, lm_head);
  }

 private:
  DeviceSpec spec_;
  Context ctx_;
  std::shared_ptr<void> workspace_;
};

}  // namespace

std::shared_ptr<Backend> open_cuda_backend(const DeviceSpec& spec) { return std::make_shared<CudaBackend>(spec); }

Context& context_of(Backend& backend) {
  auto* b = dynamic_cast<CudaBackend*>(&backend);
  check(b != nullptr, "context_of: not a CUDA backend");
  return b->context();
}

}  // namespace m3::cuda
