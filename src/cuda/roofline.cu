#include <algorithm>
#include <random>

#include "cuda/check.h"
#include "cuda/linear.h"
#include "cuda/roofline.h"
#include "cuda/weights.h"

namespace m3::cuda {

namespace {

class CudaRoofline final : public RooflineProbe {
 public:
  CudaRoofline(Context& ctx, int64_t M, int64_t N, int64_t K) : ctx_(ctx), M_(M), N_(N), K_(K) {
    // Random operands: a product of zeros runs faster than real data does.
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    Tensor w = Tensor::zeros(DType::F32, {N, K}), x = Tensor::zeros(DType::F32, {M, K});
    for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = d(rng);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = d(rng);
    const size_t before = ctx.weight_bytes;
    W_ = upload_matrix(ctx, w);
    x_ = upload_f32(ctx, x);
    ctx.weight_bytes = before;  // probe buffers are not the model's
    y_ = device_alloc(ctx, size_t(M * N) * sizeof(float));
    copy_a_ = device_alloc(ctx, kCopyBytes);
    copy_b_ = device_alloc(ctx, kCopyBytes);
    M3_CUDA_CHECK(cudaEventCreate(&start_));
    M3_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~CudaRoofline() override {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  double matmul_gflops(int reps) override {
    auto run = [&] {
      linear_fwd(ctx_, static_cast<float*>(y_.get()), x_.get(), W_, nullptr, M_, K_, N_);
    };
    return 2.0 * double(M_) * double(N_) * double(K_) / best_seconds(reps, run) / 1e9;
  }
  double memory_gbps(int reps) override {
    auto run = [&] {
      M3_CUDA_CHECK(cudaMemcpyAsync(copy_b_.get(), copy_a_.get(), kCopyBytes, cudaMemcpyDeviceToDevice, ctx_.stream));
    };
    return 2.0 * double(kCopyBytes) / best_seconds(reps, run) / 1e9;
  }
  std::string describe() const override {
    return std::string("cuBLASLt ") + (W_.bf16 ? "bf16" : "f32") + " [" + std::to_string(M_) + " x " +
           std::to_string(K_) + " x " + std::to_string(N_) + "]; device copy of 2 GiB (read + written)";
  }

 private:
  static constexpr size_t kCopyBytes = size_t(2) << 30;
  template <class F>
  double best_seconds(int reps, F&& f) {
    f();  // warm-up: plan creation, clocks
    float best = 1e30f;
    for (int i = 0; i < std::max(reps, 1); ++i) {
      M3_CUDA_CHECK(cudaEventRecord(start_, ctx_.stream));
      f();
      M3_CUDA_CHECK(cudaEventRecord(stop_, ctx_.stream));
      M3_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      M3_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      best = std::min(best, ms);
    }
    return double(best) / 1e3;
  }
  Context& ctx_;
  int64_t M_, N_, K_;
  Matrix W_;
  std::shared_ptr<float> x_;
  std::shared_ptr<void> y_, copy_a_, copy_b_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace

std::unique_ptr<RooflineProbe> make_roofline_probe(Context& ctx, int64_t M, int64_t N, int64_t K) {
  return std::make_unique<CudaRoofline>(ctx, M, N, K);
}

}  // namespace m3::cuda
