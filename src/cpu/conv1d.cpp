#include "cpu/conv1d.h"

#include <algorithm>
#include <vector>

#include "core/omp_exceptions.h"
#include "cpu/ops.h"

namespace m3::cpu {

namespace {

// One token, vectorised over the channels; KW > 0 fixes the width at compile time (the common
// d_conv = 4), KW = 0 takes it from W. Same summation order as the general path. out[c] may alias
// x[c]: each channel reads its input before writing its output.
template <int KW>
void conv_step(float* out, const float* x, int64_t C, const float* w, const float* bias, float* window,
               bool silu_out, int64_t W = KW) {
  if constexpr (KW > 0) W = KW;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    float* win = window + c * W;
    const float* wc = w + c * W;
    const float xc = x[c];
    float acc = bias ? bias[c] : 0.0f;
    for (int64_t k = 0; k + 1 < W; ++k) {
      acc += wc[k] * win[k + 1];
      win[k] = win[k + 1];
    }
    acc += wc[W - 1] * xc;
    win[W - 1] = xc;
    out[c] = silu_out ? silu(acc) : acc;
  }
}

}  // namespace

void causal_conv1d_fwd(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t L, int64_t C, const float* w,
                       const float* bias, int64_t W, float* window, bool silu_out) {
  if (L == 0) return;
  if (L == 1) {  // decode: one token, no scratch; serial (a few thousand flops, less than a fork)
    if (W == 4)
      conv_step<4>(out, x, C, w, bias, window, silu_out);
    else
      conv_step<0>(out, x, C, w, bias, window, silu_out, W);
    return;
  }
  OmpExceptions errors;  // a scratch buffer's bad_alloc
#pragma omp parallel if (C * L > kParallelWork)
  {
    std::vector<float> h;  // the window then this channel's new inputs
    errors.run([&] { h.resize(size_t(W + L)); });
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      if (h.empty()) continue;  // its allocation failed
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
  errors.rethrow();
}

}  // namespace m3::cpu
