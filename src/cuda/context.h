// The CUDA backend's per-device context: the device, one stream every kernel and copy of the
// backend runs on (so the work of a call is ordered without host synchronisation), the cuBLASLt
// handle and workspace, and the precision matrices are kept in. Device memory helpers.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda/check.h"
#include "m3/device.h"

namespace m3::cuda {

struct Context;
// cudaMalloc'd, zero-filled (on the stream) memory freed with cudaFree when the last owner goes.
std::shared_ptr<void> device_alloc(const Context& ctx, size_t bytes);

// A layer's scratch array for intermediates: grows (never shrinks) to the size a call asks for;
// the contents are not kept across growth. One per intermediate, reused across calls.
template <class T>
class Scratch {
 public:
  T* get(const Context& ctx, size_t n) {
    if (n > cap_) {
      mem_ = device_alloc(ctx, n * sizeof(T));
      cap_ = n;
    }
    return static_cast<T*>(mem_.get());
  }

 private:
  std::shared_ptr<void> mem_;
  size_t cap_ = 0;
};

struct Context {
  int device = 0;
  Precision precision = Precision::BF16;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = 0;
  cudaDeviceProp prop{};
  size_t weight_bytes = 0;  // device bytes held by weights uploaded through this context
  Scratch<uint16_t> linear_x_bf16;  // linear_fwd's activations rounded to bf16
  // Counts device_alloc calls: a recording (CUDA graph) made at another count may point at memory
  // that has moved since.
  mutable uint64_t alloc_epoch = 0;
};

// Copies n elements of a host array into a device scratch array on ctx.stream and returns the
// device pointer. From pageable memory the runtime stages the data before returning, so the
// host array may change or go right after the call.
template <class T>
T* upload_small(const Context& ctx, Scratch<T>& dst, const T* host, size_t n) {
  T* d = dst.get(ctx, n);
  if (n) M3_CUDA_CHECK(cudaMemcpyAsync(d, host, n * sizeof(T), cudaMemcpyHostToDevice, ctx.stream));
  return d;
}

// The device offsets 0, 1, …, n of a decode batch of n sequences of one token each, so that a
// layer's step runs its packed-batch pipeline (Packing::cu_dev). A layer keeps one; they are
// uploaded on ctx.stream only when n outgrows the entries already there.
class OneTokenOffsets {
 public:
  const int64_t* get(const Context& ctx, int64_t n);

 private:
  Scratch<int64_t> cu_;
  int64_t n_ = 0;  // entries uploaded: offsets 0 .. n_ − 1
};

}  // namespace m3::cuda
