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

// ||a − b|| / ||b|| over the whole array; infinite when the sizes differ.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// max_row_err bound for float32 logits against the float64 reference: each position's worst
// logit within 1e-4 of its row's largest magnitude (as rel_err's 1e-4, but per position).
inline constexpr double kRowTolerance = 1e-4;

// The worst row of a [n, row] array: max over rows of max |a − b| / max |b| within the row
// (infinite when the sizes differ or do not split into rows). One L2 norm over a whole tensor
// can hide a few wrong positions; this cannot.
template <class A, class B>
double max_row_err(const A& a, const B& b, size_t row) {
  if (a.size() != b.size() || row == 0 || b.size() % row != 0) return INFINITY;
  double worst = 0;
  for (size_t r = 0; r < b.size(); r += row) {
    double diff = 0, scale = 0;
    for (size_t i = r; i < r + row; ++i) {
      diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
      scale = std::max(scale, std::abs(double(b[i])));
    }
    worst = std::max(worst, diff / std::max(scale, 1e-300));
  }
  return worst;
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
