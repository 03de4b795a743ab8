#include "cuda/check.h"

namespace m3::cuda {

void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what +
              " at " + file + ":" + std::to_string(line));
}

void throw_cublas_error(cublasStatus_t s, const char* what, const char* file, int line) {
  throw Error(std::string("cuBLASLt error ") + std::to_string(int(s)) + " in " + what + " at " + file + ":" +
              std::to_string(line));
}

}  // namespace m3::cuda
