// Error checks for CUDA runtime and cuBLASLt calls: a failure becomes an m3::Error naming the
// call, the file and line, and the runtime's message (never an abort).
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "m3/error.h"

namespace m3::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* what, const char* file, int line);

}  // namespace m3::cuda

#define M3_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    cudaError_t m3_cuda_err_ = (expr);                                                   \
    if (m3_cuda_err_ != cudaSuccess) ::m3::cuda::throw_cuda_error(m3_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define M3_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                   \
    cublasStatus_t m3_cublas_st_ = (expr);                                               \
    if (m3_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::m3::cuda::throw_cublas_error(m3_cublas_st_, #expr, __FILE__, __LINE__);          \
  } while (0)

// After every kernel launch: a bad configuration (too many threads, too much shared memory)
// is reported here, at the launch that caused it.
#define M3_CUDA_LAUNCH_CHECK() M3_CUDA_CHECK(cudaGetLastError())
