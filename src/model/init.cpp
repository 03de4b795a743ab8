#include "model/init.h"

#include <algorithm>
#include <cmath>

namespace m3::init {

InitFn zeros() {
  return [](float* p, int64_t n, std::mt19937_64&) { std::fill(p, p + n, 0.0f); };
}
InitFn ones() { return constant(1.0f); }
InitFn constant(float v) {
  return [v](float* p, int64_t n, std::mt19937_64&) { std::fill(p, p + n, v); };
}
InitFn normal(float std) {
  return [std](float* p, int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> d(0.0f, std);
    for (int64_t i = 0; i < n; ++i) p[i] = d(rng);
  };
}
InitFn linear_uniform(int64_t fan_in, float rescale) {
  return [fan_in, rescale](float* p, int64_t n, std::mt19937_64& rng) {
    const float b = 1.0f / std::sqrt(float(fan_in));
    std::uniform_real_distribution<float> d(-b, b);
    for (int64_t i = 0; i < n; ++i) p[i] = d(rng) / rescale;
  };
}
InitFn dt_bias(double dt_min, double dt_max, double floor) {
  return [=](float* p, int64_t n, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(std::log(dt_min), std::log(dt_max));
    for (int64_t i = 0; i < n; ++i) {
      double dt = std::max(std::exp(u(rng)), floor);
      p[i] = float(dt + std::log(-std::expm1(-dt)));
    }
  };
}

}  // namespace m3::init
