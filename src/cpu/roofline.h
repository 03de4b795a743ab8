// Ceilings of this machine, measured for the benchmarks (m3 bench, bench/cpu_bench.cpp): the
// OpenBLAS sgemm rate that bounds prefill and the streaming read bandwidth that bounds decode,
// both with all OpenMP threads. The probes keep their buffers, so that a benchmark can measure
// them again between its own runs (on a shared machine the ceilings move with the load).
#pragma once
#include <cstdint>
#include <vector>

#include "m3/tensor.h"

namespace m3::cpu {

// Sum of n floats, each thread streaming a contiguous part with independent partial sums (so
// that the adds keep up with memory): the read-bandwidth kernel.
float sum_floats(const float* p, int64_t n);

class ReadProbe {
 public:
  // `bytes` much larger than the caches; allocated as weights are (Tensor::zeros: huge pages where
  // the kernel allows), so that the ceiling is not lowered by TLB misses the weights do not have.
  explicit ReadProbe(int64_t bytes);
  double gbps(int reps);  // best of `reps` sums of the buffer, in GB/s
 private:
  Tensor buf_;
  int64_t n_;
};

class SgemmProbe {
 public:
  SgemmProbe(int64_t M, int64_t N, int64_t K);
  double gflops(int reps);  // best of `reps` runs of C[M, N] = A[M, K] · B[N, K]ᵀ (linear_fwd's shape)
 private:
  int64_t M_, N_, K_;
  std::vector<float> a_, b_, c_;
};

}  // namespace m3::cpu
