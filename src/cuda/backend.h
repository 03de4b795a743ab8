// The CUDA backend (model/backend.h) on one GPU: device memory, one stream, cuBLASLt, and the
// layers of cuda/layers.h.
#pragma once
#include <memory>

#include "cuda/context.h"
#include "model/backend.h"

namespace m3::cuda {

// m3::Error when no GPU is visible or the index is past the device count.
std::shared_ptr<Backend> open_cuda_backend(const DeviceSpec& spec);
// The context of a backend that open_cuda_backend returned (for the CUDA tests and benchmarks).
Context& context_of(Backend& backend);

}  // namespace m3::cuda
