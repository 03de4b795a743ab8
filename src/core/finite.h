// The finiteness check of loaded data (checkpoint weights, decode states): one pass without a
// branch per element, so that it vectorises and costs a fraction of reading the data; the
// position is searched for only when there is a value to report.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace m3 {

// The index of the first NaN or infinity in p[0, n), or n when all are finite.
inline int64_t first_non_finite(const float* p, int64_t n) {
  bool finite = true;
  for (int64_t k = 0; k < n; ++k) finite &= std::isfinite(p[k]);
  if (finite) return n;
  return std::find_if(p, p + n, [](float v) { return !std::isfinite(v); }) - p;
}

}  // namespace m3
