#include "cpu/roofline.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>

namespace m3::cpu {

namespace {

template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  }
  return best;
}

}  // namespace

float sum_floats(const float* p, int64_t n) {
  constexpr int64_t kLanes = 64;  // 8 vector accumulators hide the latency of the adds
  const int64_t blocks = n / kLanes;
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    float acc[kLanes] = {};
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b)
#pragma omp simd
      for (int64_t j = 0; j < kLanes; ++j) acc[j] += p[b * kLanes + j];
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < kLanes; ++j) total += acc[j];
  }
  for (int64_t i = blocks * kLanes; i < n; ++i) total += p[i];
  return total;
}

// Tensor::zeros has written every page already, so the reads below never hit the shared zero page.
ReadProbe::ReadProbe(int64_t bytes)
    : buf_(Tensor::zeros(DType::F32, {bytes / int64_t(sizeof(float))})), n_(bytes / int64_t(sizeof(float))) {}

double ReadProbe::gbps(int reps) {
  volatile float sink = 0;
  const double t = best_seconds(reps, [&] { sink = sum_floats(buf_.f32(), n_); });
  return double(n_) * sizeof(float) / t / 1e9;
}

SgemmProbe::SgemmProbe(int64_t M, int64_t N, int64_t K)
    : M_(M), N_(N), K_(K), a_(size_t(M * K), 0.5f), b_(size_t(N * K), 0.25f), c_(size_t(M * N)) {}

double SgemmProbe::gflops(int reps) {
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M_), int(N_), int(K_), 1.0f, a_.data(), int(K_),
                b_.data(), int(K_), 0.0f, c_.data(), int(N_));
  };
  run();
  return 2.0 * double(M_) * double(N_) * double(K_) / best_seconds(reps, run) / 1e9;
}

}  // namespace m3::cpu
