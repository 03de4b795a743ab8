// Shared helpers for the tests: golden data paths, tensor conversion, relative error, largest value.
#pragma once
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "m3/safetensors.h"

namespace m3::test {

inline std::string golden(const std::string& rel) { return std::string(M3_GOLDEN_DIR) + "/" + rel; }

inline std::vector<double> to_f64(const Tensor& t) {
  Tensor d = t.convert(DType::F64);
  return std::vector<double>(d.ptr<double>(), d.ptr<double>() + d.numel());
}
inline std::vector<float> to_f32v(const Tensor& t) {
  Tensor d = t.convert(DType::F32);
  return std::vector<float>(d.ptr<float>(), d.ptr<float>() + d.numel());
}

// ||a − b|| / ||b|| over the whole array.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(num / std::max(den, 1e-300));
}

// The largest |value| of a float32 tensor (initialisation bounds).
inline float max_abs(const Tensor& t) {
  float m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.f32()[i]));
  return m;
}

inline std::vector<float> randn(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace m3::test
