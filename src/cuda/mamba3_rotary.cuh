// Device functions of Mamba-3's rotary embedding (spec/mamba3.md §3) shared by the sequential
// scan (cuda/mamba3_scan.cu) and the chunked one (cuda/mamba3_chunk_scan.cu), so that both walk
// the angles with the same arithmetic as the CPU (cpu/mamba3_scan.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace m3::cuda {

constexpr float kMamba3Pi = 3.14159265358979f;
constexpr float kMamba3TwoPi = 6.283185307179586f;

// The angle a token adds: π·tanh(angle)·dt.
__device__ inline float mamba3_angle_step(float raw, float dt) { return kMamba3Pi * tanhf(raw) * dt; }

// θ reduced to [0, 2π) as the reference keeps it.
__device__ inline float mamba3_wrap_angle(float th) { return th - kMamba3TwoPi * floorf(th / kMamba3TwoPi); }

// Element n of Rot_θ(in + bias): SISO rotates the pairs (2j, 2j+1), MIMO the pairs (j, j + N/2),
// for j < S; a' = a cos θ_j − b sin θ_j, b' = a sin θ_j + b cos θ_j.
__device__ inline float mamba3_rotated(const float* in, const float* bias, int64_t n, int64_t N, int64_t S,
                                       bool halves, const float* cs, const float* sn) {
  auto at = [&](int64_t m) { return in[m] + bias[m]; };
  if (halves) {
    const int64_t half = N / 2;
    if (n < S) return at(n) * cs[n] - at(n + half) * sn[n];
    if (n >= half && n - half < S) {
      const int64_t j = n - half;
      return at(j) * sn[j] + at(n) * cs[j];
    }
    return at(n);
  }
  if (n < 2 * S) {
    const int64_t j = n / 2;
    const float a = at(2 * j), b = at(2 * j + 1);
    return n % 2 == 0 ? a * cs[j] - b * sn[j] : a * sn[j] + b * cs[j];
  }
  return at(n);
}

}  // namespace m3::cuda
