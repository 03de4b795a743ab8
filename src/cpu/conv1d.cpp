#include "cpu/conv1d.h"

#include <algorithm>
#include <vector>

#include "cpu/ops.h"

namespace m3::cpu {

void causal_conv1d_fwd(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t L, int64_t C, const float* w,
                       const float* bias, int64_t W, float* window, bool silu_out) {
  if (L == 0) return;
#pragma omp parallel if (C * L > 65536)
  {
    std::vector<float> h(static_cast<size_t>(W + L));  // the window then this channel's new inputs
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      std::copy_n(window + c * W, W, h.data());
      for (int64_t t = 0; t < L; ++t) h[size_t(W + t)] = x[t * ldx + c];
      const float* wc = w + c * W;
      for (int64_t t = 0; t < L; ++t) {
        float acc = bias ? bias[c] : 0.0f;
        for (int64_t k = 0; k < W; ++k) acc += wc[k] * h[size_t(t + 1 + k)];
        out[t * ldo + c] = silu_out ? silu(acc) : acc;
      }
      std::copy_n(h.data() + L, W, window + c * W);
    }
  }
}

}  // namespace m3::cpu
