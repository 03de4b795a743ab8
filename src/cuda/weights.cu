#include <cuda_bf16.h>

#include <vector>

#include "cuda/check.h"
#include "cuda/weights.h"

namespace m3::cuda {

Matrix upload_matrix(Context& ctx, const Tensor& w) {
  check(w.shape.size() == 2, "upload_matrix: expected a 2-D tensor, got " + shape_str(w.shape));
  const float* src = w.f32();
  Matrix m;
  m.rows = w.shape[0];
  m.cols = w.shape[1];
  m.bf16 = ctx.precision == Precision::BF16;
  const size_t n = size_t(m.rows) * size_t(m.cols);
  if (m.bf16) {
    std::vector<__nv_bfloat16> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16_rn(src[i]);
    m.mem = device_alloc(ctx, n * sizeof(__nv_bfloat16));
    M3_CUDA_CHECK(cudaMemcpyAsync(m.mem.get(), h.data(), n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice, ctx.stream));
    M3_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // h goes out of scope
    ctx.weight_bytes += n * sizeof(__nv_bfloat16);
  } else {
    m.mem = device_alloc(ctx, n * sizeof(float));
    M3_CUDA_CHECK(cudaMemcpyAsync(m.mem.get(), src, n * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
    ctx.weight_bytes += n * sizeof(float);
  }
  m.data = m.mem.get();
  return m;
}

std::shared_ptr<float> upload_f32(Context& ctx, const Tensor& t) {
  const size_t n = size_t(t.numel());
  std::shared_ptr<void> mem = device_alloc(ctx, n * sizeof(float));
  if (n) M3_CUDA_CHECK(cudaMemcpyAsync(mem.get(), t.f32(), n * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
  ctx.weight_bytes += n * sizeof(float);
  return std::shared_ptr<float>(mem, static_cast<float*>(mem.get()));
}

}  // namespace m3::cuda
