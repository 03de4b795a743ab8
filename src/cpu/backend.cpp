// The CPU backend (model/backend.h): host memory, synchronous float32 kernels.
#include "cpu/backend.h"

#include <omp.h>

#include <cstring>

#include "cpu/layers.h"
#include "cpu/ops.h"
#include "cpu/roofline.h"
#include "model/parallel_layer.h"

namespace m3::cpu {

namespace {

void norm_rows(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t D, float eps) {
  if (b)
    layernorm_fwd(y, x, w, b, T, D, eps);
  else
    rmsnorm_fwd(y, x, w, T, D, eps);
}

class CpuBlockNorm final : public BlockNorm {
 public:
  CpuBlockNorm(int64_t d, bool rms, float eps, ParamMap p) : d_(d), eps_(eps), p_(std::move(p)) {
    w_ = p_.at("weight").f32();
    b_ = rms ? nullptr : p_.at("bias").f32();
  }
  void forward(float* residual, const float* add, float* normed, int64_t T) override {
    if (add) {
      const int64_t n = T * d_;
#pragma omp parallel for if (n > kParallelWork)
      for (int64_t i = 0; i < n; ++i) residual[i] += add[i];
    }
    norm_rows(normed, residual, w_, b_, T, d_, eps_);
  }

 private:
  int64_t d_;
  float eps_;
  ParamMap p_;
  const float *w_, *b_;
};

class CpuEnds final : public ModelEnds {
 public:
  CpuEnds(const ModelConfig& c, const Tensor& embedding, ParamMap norm_f, const Tensor& lm_head)
      : d_(c.d_model), V_(c.vocab_padded()), eps_(float(c.norm_eps)), emb_(embedding), head_(lm_head),
        norm_(std::move(norm_f)) {
    w_ = norm_.at("weight").f32();
    b_ = c.rms_norm ? nullptr : norm_.at("bias").f32();
  }
  void embed(float* x, const int32_t* tokens, int64_t n) override {
    for (int64_t t = 0; t < n; ++t)
      std::memcpy(x + t * d_, emb_.f32() + int64_t(tokens[t]) * d_, size_t(d_) * sizeof(float));
  }
  void logits(float* out, const float* residual, const float* add, const int64_t* rows, int64_t n) override {
    h_.resize(size_t(n * d_));
    for (int64_t i = 0; i < n; ++i) {
      const float* r = residual + rows[i] * d_;
      float* h = h_.data() + i * d_;
      if (add) {
        const float* a = add + rows[i] * d_;
        for (int64_t k = 0; k < d_; ++k) h[k] = r[k] + a[k];
      } else {
        std::memcpy(h, r, size_t(d_) * sizeof(float));
      }
    }
    norm_rows(h_.data(), h_.data(), w_, b_, n, d_, eps_);
    linear_fwd(out, h_.data(), head_.f32(), nullptr, n, d_, V_);
  }

 private:
  int64_t d_, V_;
  float eps_;
  Tensor emb_, head_;
  ParamMap norm_;
  const float *w_, *b_;
  std::vector<float> h_;
};

class CpuRoofline final : public RooflineProbe {
 public:
  CpuRoofline(int64_t M, int64_t N, int64_t K) : M_(M), N_(N), K_(K), sgemm_(M, N, K), read_(int64_t(512) << 20) {}
  double matmul_gflops(int reps) override { return sgemm_.gflops(reps); }
  double memory_gbps(int reps) override { return read_.gbps(reps); }
  std::string describe() const override {
    return "OpenBLAS sgemm [" + std::to_string(M_) + " x " + std::to_string(K_) + " x " + std::to_string(N_) +
           "]; streaming read of 512 MiB";
  }

 private:
  int64_t M_, N_, K_;
  SgemmProbe sgemm_;
  ReadProbe read_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend() { desc_ = "cpu (" + std::to_string(omp_get_max_threads()) + " threads, f32)"; }
  const DeviceSpec& device() const override { return spec_; }
  std::string describe() const override { return desc_; }

  std::shared_ptr<void> alloc(size_t bytes) override {
    // Tensor::zeros: aligned, zeroed, on huge pages when large.
    Tensor t = Tensor::zeros(DType::U8, {int64_t(bytes)});
    return std::shared_ptr<void>(t.owner, t.data);
  }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void synchronize() override {}
  // Host parameters are used in place: the CPU backend holds no copies.
  size_t weight_bytes() const override { return 0; }

  std::unique_ptr<RooflineProbe> make_roofline_probe(int64_t M, int64_t N, int64_t K) override {
    return std::make_unique<CpuRoofline>(M, N, K);
  }

  std::unique_ptr<Layer> make_mamba3(const Mamba3Config& c, int64_t d, ParamMap p) override {
    return cpu::make_mamba3(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_mamba2(const Mamba2Config& c, int64_t d, ParamMap p) override {
    return cpu::make_mamba2(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_mamba1(const Mamba1Config& c, int64_t d, ParamMap p) override {
    return cpu::make_mamba1(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d, ParamMap p) override {
    return cpu::make_attention(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_gated_mlp(int64_t d, int64_t hidden, ParamMap p) override {
    return cpu::make_gated_mlp(d, hidden, std::move(p));
  }
  std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d, ParamMap p) override {
    return cpu::make_mlp(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d, ParamMap p) override {
    return cpu::make_moe(c, d, std::move(p));
  }
  std::unique_ptr<Layer> make_parallel(std::vector<std::unique_ptr<Layer>> parts, int64_t d) override {
    auto tmp = std::make_shared<std::vector<float>>();
    return make_parallel_layer(std::move(parts), d,
                               {.scratch = [tmp](int64_t n) { return (tmp->resize(size_t(n)), tmp->data()); },
                                .add = [](float* y, const float* x, int64_t n) {
#pragma omp parallel for if (n > kParallelWork)
                                  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
                                }});
  }
  std::unique_ptr<Layer> make_zamba2_hybrid(const ModelConfig& c, ParamMap p, ParamMap ssm_norm) override {
    return cpu::make_zamba2_hybrid(c, std::move(p), std::move(ssm_norm));
  }
  void zamba2_rows(float* rows, float* residual, const float* add, const float* emb, int64_t T, int64_t d) override {
#pragma omp parallel for if (T * d > kParallelWork)
    for (int64_t t = 0; t < T; ++t) {
      float* h = residual + t * d;
      if (add)
        for (int64_t i = 0; i < d; ++i) h[i] += add[t * d + i];
      std::memcpy(rows + 2 * t * d, h, size_t(d) * sizeof(float));
      std::memcpy(rows + (2 * t + 1) * d, emb + t * d, size_t(d) * sizeof(float));
    }
  }
  std::unique_ptr<BlockNorm> make_norm(int64_t d, bool rms, float eps, ParamMap p) override {
    return std::make_unique<CpuBlockNorm>(d, rms, eps, std::move(p));
  }
  std::unique_ptr<ModelEnds> make_ends(const ModelConfig& c, const Tensor& embedding, ParamMap norm_f,
                                       const Tensor& lm_head) override {
    return std::make_unique<CpuEnds>(c, embedding, std::move(norm_f), lm_head);
  }

 private:
  DeviceSpec spec_;
  std::string desc_;
};

}  // namespace

std::shared_ptr<Backend> open_cpu_backend() { return std::make_shared<CpuBackend>(); }

}  // namespace m3::cpu
