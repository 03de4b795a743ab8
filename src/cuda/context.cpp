#include "cuda/context.h"

#include <numeric>
#include <vector>

namespace m3::cuda {

std::shared_ptr<void> device_alloc(const Context& ctx, size_t bytes) {
  void* p = nullptr;
  const size_t n = bytes ? bytes : 16;
  const cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky allocation error so later calls can proceed
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("CUDA out of memory: asked for " + std::to_string(n >> 20) + " MiB on cuda:" +
                std::to_string(ctx.device) + ", " + std::to_string(free_b >> 20) + " MiB free of " +
                std::to_string(total_b >> 20) + " MiB");
  }
  ++ctx.alloc_epoch;
  M3_CUDA_CHECK(cudaMemsetAsync(p, 0, n, ctx.stream));
  // cudaFree waits for the device: memory in use by queued work is not released under it.
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

const int64_t* OneTokenOffsets::get(const Context& ctx, int64_t n) {
  if (n + 1 > n_) {
    std::vector<int64_t> cu(size_t(n + 1));
    std::iota(cu.begin(), cu.end(), int64_t(0));
    upload_small(ctx, cu_, cu.data(), cu.size());
    n_ = n + 1;
  }
  return cu_.get(ctx, size_t(n + 1));
}

}  // namespace m3::cuda
