// Float32 elementary functions written without branches or library calls, so that a loop calling
// them under `#pragma omp simd` compiles to SIMD code (a call to libm's scalar expf, sinf, ...
// keeps the loop scalar, and the scan and gating apply them ~50 M times per 512-token prefill of
// the 130M preset). Cephes-style range reduction and minimax polynomials; errors are stated per
// function and are far below the float32 accumulation error of the layers that use them.
#pragma once
#include <bit>
#include <cstdint>

namespace m3::cpu {

// Round to the nearest integer (ties to even) for |x| < 2^22: adding 1.5·2^23 pushes the
// fraction bits out of the mantissa.
inline float round_nearest(float x) {
  constexpr float kShift = 12582912.0f;
  return (x + kShift) - kShift;
}

// floor(x) for |x| < 2^22, exact (std::floor does not vectorise without -fno-trapping-math).
inline float floor_small(float x) {
  const float r = round_nearest(x);
  return r > x ? r - 1.0f : r;
}

// e^x, relative error < 2 ulp. x is clamped to [−87.3, 88.3], so the result stays a normal
// float: e^x underflows to ~1.2e-38 instead of 0 and saturates at ~2.1e38 instead of inf.
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  const float n = round_nearest(x * 1.44269504088896341f);
  // r = x − n·ln 2 in two parts, |r| ≤ ln 2 / 2.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // A NaN x gives a NaN p; n is then replaced so that the conversion to int stays defined.
  return p * std::bit_cast<float>((int32_t(n == n ? n : 0.0f) + 127) << 23);
}

// log(1 + y) for y ≥ 0 (finite), relative error < 3 ulp: with s = y / (2 + y) ∈ [0, 1),
// log(1 + y) = 2·atanh(s) = 2s·(1 + s²/3 + s⁴/5 + ...). For y ≤ 1 (s ≤ 1/3, the only range
// softplus_approx uses) the series to s¹⁴ leaves a truncation error below 2e-9 relative; larger y
// are first split as y = 2^e·m, which this function does not do: keep y ≤ 1.
inline float log1p_small(float y) {
  const float s = y / (2.0f + y), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  return 2.0f * s + 2.0f * s * s2 * p;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^{−|x|}), relative error < 4 ulp for
// x ≥ −87 (below, the clamp in exp_approx leaves ~1.2e-38 instead of e^x: an absolute error
// under 1.2e-38). For x > 17 the second term is below half an ulp of x, so the result is x, as
// PyTorch's threshold of 20 gives.
inline float softplus_approx(float x) {
  const float a = x < 0 ? -x : x;
  return (x > 0 ? x : 0.0f) + log1p_small(exp_approx(-a));
}

// tanh(x) = sign(x)·(1 − e^{−2|x|}) / (1 + e^{−2|x|}); absolute error < 2e-7 (the relative
// error grows near 0, where it serves only as an angle rate added to an accumulated angle).
inline float tanh_approx(float x) {
  const float a = x < 0 ? -x : x;
  const float e = exp_approx(-2.0f * a);
  const float t = (1.0f - e) / (1.0f + e);
  return x < 0 ? -t : t;
}

// sin x and cos x, absolute error < 1e-7 for |x| < 1e4 (reduction by π/2 in three parts).
inline void sincos_approx(float x, float& s, float& c) {
  const float j = round_nearest(x * 0.636619772367581343f);  // x / (π/2)
  float r = x - j * 1.5703125f;
  r = r - j * 4.837512969970703125e-4f;
  r = r - j * 7.54978995489188216e-8f;
  const float r2 = r * r;
  const float sp = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float cp = 1.0f - 0.5f * r2 + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  // Only the quadrant (q mod 4) matters; out-of-range or NaN j (x far outside the accuracy range,
  // where s and c are no longer sin and cos anyway) must not reach an undefined conversion.
  const int32_t q = int32_t(j > -1e9f && j < 1e9f ? j : 0.0f);
  const float s0 = (q & 1) ? cp : sp, c0 = (q & 1) ? sp : cp;
  s = (q & 2) ? -s0 : s0;
  c = ((q + 1) & 2) ? -c0 : c0;
}

}  // namespace m3::cpu
