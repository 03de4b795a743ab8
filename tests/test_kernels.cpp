// The float32 CPU kernels (src/cpu/ops.h, conv1d.h) and the GatedMLP layer against the float64
// references of tests/reference.h, on fresh random inputs of odd sizes, with row strides wider
// than the rows and in-place use where the kernels allow it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "cpu/conv1d.h"
#include "cpu/layers.h"
#include "cpu/ops.h"
#include "model/specs.h"
#include "reference.h"
#include "testing.h"

namespace m3 {
namespace {

using ref::Vec;
using test::rel_err;

constexpr double kTol = 1e-5;  // float32 compute against float64

// Rows of width `width` taken from a [T, ld] array at column `col`.
std::vector<float> columns(const std::vector<float>& a, int64_t T, int64_t ld, int64_t col, int64_t width) {
  std::vector<float> r;
  for (int64_t t = 0; t < T; ++t) r.insert(r.end(), a.begin() + t * ld + col, a.begin() + t * ld + col + width);
  return r;
}

TEST(Kernels, LinearWithAndWithoutBiasAndStrides) {
  std::mt19937_64 rng(1);
  const int64_t T = 37, in = 67, out = 29, ldx = 70, ldy = 31;
  std::vector<float> x = test::randn(size_t(T * ldx), rng), W = test::randn(size_t(out * in), rng),
                     b = test::randn(size_t(out), rng);
  const Vec xr = ref::widen(columns(x, T, ldx, 0, in));
  for (bool bias : {false, true}) {
    std::vector<float> y(size_t(T * ldy), NAN);
    cpu::linear_fwd(y.data(), x.data(), W.data(), bias ? b.data() : nullptr, T, in, out, ldx, ldy);
    Vec want = ref::linear(xr, ref::widen(W), bias ? ref::widen(b) : Vec{}, T, in, out);
    EXPECT_LT(rel_err(columns(y, T, ldy, 0, out), want), kTol) << "bias " << bias;
  }
  std::vector<float> y(static_cast<size_t>(T * out));  // default (dense) strides
  cpu::linear_fwd(y.data(), columns(x, T, ldx, 0, in).data(), W.data(), b.data(), T, in, out);
  EXPECT_LT(rel_err(y, ref::linear(xr, ref::widen(W), ref::widen(b), T, in, out)), kTol);
}

// The streaming path for few rows (decode): row lengths around its 16- and 128-float blocks, a
// row count below and at kSmallRows, strided x and y, enough output rows to run threaded.
TEST(Kernels, LinearFewRowsStreamingPath) {
  std::mt19937_64 rng(11);
  for (int64_t T : {int64_t(1), int64_t(3), cpu::kSmallRows})
    for (int64_t in : {1, 15, 16, 17, 127, 128, 129, 300, 777})
      for (int64_t out : {1, 5, 2049}) {
        const int64_t ldx = in + 3, ldy = out + 2;
        std::vector<float> x = test::randn(size_t(T * ldx), rng), W = test::randn(size_t(out * in), rng),
                           b = test::randn(size_t(out), rng);
        std::vector<float> y(size_t(T * ldy), NAN);
        cpu::linear_fwd(y.data(), x.data(), W.data(), b.data(), T, in, out, ldx, ldy);
        const Vec want = ref::linear(ref::widen(columns(x, T, ldx, 0, in)), ref::widen(W), ref::widen(b), T, in, out);
        EXPECT_LT(rel_err(columns(y, T, ldy, 0, out), want), kTol) << "T " << T << " in " << in << " out " << out;
      }
}

TEST(Kernels, RmsNormAndLayerNorm) {
  std::mt19937_64 rng(2);
  const int64_t T = 37, D = 67;
  std::vector<float> x = test::randn(size_t(T * D), rng, 3.0f), w = test::randn(size_t(D), rng),
                     b = test::randn(size_t(D), rng);
  for (float& v : x) v += 2.0f;  // a mean far from zero, for LayerNorm's centring
  std::vector<float> y(x.size());
  cpu::rmsnorm_fwd(y.data(), x.data(), w.data(), T, D, 1e-5f);
  EXPECT_LT(rel_err(y, ref::rmsnorm(ref::widen(x), ref::widen(w), T, D, 1e-5)), kTol);
  cpu::layernorm_fwd(y.data(), x.data(), w.data(), b.data(), T, D, 1e-5f);
  EXPECT_LT(rel_err(y, ref::layernorm(ref::widen(x), ref::widen(w), ref::widen(b), T, D, 1e-5)), kTol);
  // In place (y aliases x).
  std::vector<float> inplace = x;
  cpu::rmsnorm_fwd(inplace.data(), inplace.data(), w.data(), T, D, 1e-5f);
  EXPECT_LT(rel_err(inplace, ref::rmsnorm(ref::widen(x), ref::widen(w), T, D, 1e-5)), kTol);
  inplace = x;
  cpu::layernorm_fwd(inplace.data(), inplace.data(), w.data(), b.data(), T, D, 1e-5f);
  EXPECT_LT(rel_err(inplace, ref::layernorm(ref::widen(x), ref::widen(w), ref::widen(b), T, D, 1e-5)), kTol);
  // A large eps matters: the kernel must add it inside the square root.
  cpu::rmsnorm_fwd(y.data(), x.data(), w.data(), T, D, 0.5f);
  EXPECT_LT(rel_err(y, ref::rmsnorm(ref::widen(x), ref::widen(w), T, D, 0.5)), kTol);
}

TEST(Kernels, GatedRmsNormBothOrdersSeveralGroups) {
  std::mt19937_64 rng(3);
  const int64_t T = 37, D = 60, ldy = 61, ldz = 67, ldo = 63;
  std::vector<float> y = test::randn(size_t(T * ldy), rng), z = test::randn(size_t(T * ldz), rng, 2.0f),
                     w = test::randn(size_t(D), rng);
  const Vec yr = ref::widen(columns(y, T, ldy, 0, D)), zr = ref::widen(columns(z, T, ldz, 0, D));
  for (int64_t group : {1, 5, 12, 60})
    for (bool before : {false, true}) {
      std::vector<float> out(size_t(T * ldo), NAN);
      cpu::gated_rmsnorm_fwd(out.data(), y.data(), z.data(), w.data(), T, D, group, 1e-5f, before, ldy, ldz, ldo);
      Vec want = ref::gated_rmsnorm(yr, zr, ref::widen(w), T, D, group, 1e-5, before);
      EXPECT_LT(rel_err(columns(out, T, ldo, 0, D), want), kTol) << "group " << group << " norm_before_gate " << before;
      // In place (out aliases y).
      std::vector<float> inplace = y;
      cpu::gated_rmsnorm_fwd(inplace.data(), inplace.data(), z.data(), w.data(), T, D, group, 1e-5f, before, ldy, ldz,
                             ldy);
      EXPECT_LT(rel_err(columns(inplace, T, ldy, 0, D), want), kTol) << "in place, group " << group;
    }
}

TEST(Kernels, SiluGate) {
  std::mt19937_64 rng(4);
  const int64_t T = 37, D = 67, lda = 69, ldb = 71, ldo = 68;
  std::vector<float> a = test::randn(size_t(T * lda), rng), b = test::randn(size_t(T * ldb), rng, 4.0f);
  std::vector<float> out(size_t(T * ldo), NAN);
  cpu::silu_gate_fwd(out.data(), a.data(), b.data(), T, D, lda, ldb, ldo);
  Vec want = ref::silu_gate(ref::widen(columns(a, T, lda, 0, D)), ref::widen(columns(b, T, ldb, 0, D)));
  EXPECT_LT(rel_err(columns(out, T, ldo, 0, D), want), kTol);
}

TEST(Kernels, CausalConv1dWithWindow) {
  std::mt19937_64 rng(5);
  const int64_t C = 67, ldx = 70;
  for (int64_t W : {4, 3}) {  // the decode path has its own code for 4 and for other widths
    std::vector<float> w = test::randn(size_t(C * W), rng), bias = test::randn(size_t(C), rng);
    for (int64_t L : {1, 2, 37})  // shorter and longer than the window
      for (bool with_bias : {false, true})
        for (bool silu_out : {false, true}) {
          SCOPED_TRACE("W " + std::to_string(W) + " L " + std::to_string(L) + " bias " + std::to_string(with_bias) +
                       " silu " + std::to_string(silu_out));
          std::vector<float> x = test::randn(size_t(L * ldx), rng), window = test::randn(size_t(C * W), rng);
          Vec ref_window = ref::widen(window);
          Vec want = ref::causal_conv1d(ref::widen(columns(x, L, ldx, 0, C)), L, C, ref::widen(w),
                                        with_bias ? ref::widen(bias) : Vec{}, W, ref_window, silu_out);
          std::vector<float> out(size_t(L * ldx), NAN);
          std::vector<float> win = window;
          cpu::causal_conv1d_fwd(out.data(), ldx, x.data(), ldx, L, C, w.data(), with_bias ? bias.data() : nullptr, W,
                                 win.data(), silu_out);
          EXPECT_LT(rel_err(columns(out, L, ldx, 0, C), want), kTol);
          EXPECT_EQ(win, std::vector<float>(ref_window.begin(), ref_window.end()));  // copies, exact
          // In place (out aliases x), as MHA uses it.
          win = window;
          cpu::causal_conv1d_fwd(x.data(), ldx, x.data(), ldx, L, C, w.data(), with_bias ? bias.data() : nullptr, W,
                                 win.data(), silu_out);
          EXPECT_LT(rel_err(columns(x, L, ldx, 0, C), want), kTol);
        }
  }
}

// softplus_approx (vec_math.h) against float64 log1p(exp(x)) on random inputs over the range the
// layers see and beyond; relative error within a few ulp, the PyTorch threshold's x above 20.
TEST(Kernels, SoftplusApprox) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> wide(-87.0f, 87.0f), narrow(-6.0f, 6.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = i % 2 ? wide(rng) : narrow(rng);
    const double want = x > 20 ? double(x) : std::log1p(std::exp(double(x)));
    worst = std::max(worst, std::abs(double(cpu::softplus_approx(x)) - want) / want);
  }
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 17.0f, 20.0f, 20.5f, 1e6f, -30.0f, -87.0f}) {
    const double want = x > 20 ? double(x) : std::log1p(std::exp(double(x)));
    worst = std::max(worst, std::abs(double(cpu::softplus_approx(x)) - want) / want);
  }
  EXPECT_LT(worst, 1e-6);
  EXPECT_EQ(cpu::softplus_approx(25.0f), 25.0f);
  EXPECT_GE(cpu::softplus_approx(-200.0f), 0.0f);
  EXPECT_LT(cpu::softplus_approx(-200.0f), 1e-37f);
}

TEST(Kernels, GatedMlpForwardAndStep) {
  std::mt19937_64 rng(6);
  const int64_t d = 37, hidden = 67, T = 23;
  ParamMap p;
  for (const auto& s : gated_mlp_param_specs(d, hidden, 3)) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    std::vector<float> v = test::randn(size_t(t.numel()), rng, 0.2f);
    std::copy(v.begin(), v.end(), t.f32());
    p[s.name] = t;
  }
  auto layer = cpu::make_gated_mlp(d, hidden, p);
  std::vector<float> x = test::randn(size_t(T * d), rng);
  Vec want = ref::gated_mlp(ref::widen(x), ref::widen(p), T, d, hidden);
  std::vector<float> y(static_cast<size_t>(T * d));
  layer->forward(x.data(), y.data(), Packing{{0, 5, T}}, StateBatch{});
  EXPECT_LT(rel_err(y, want), kTol);
  std::fill(y.begin(), y.end(), NAN);
  layer->step(x.data(), y.data(), T, StateBatch{});
  EXPECT_LT(rel_err(y, want), kTol);
}

}  // namespace
}  // namespace m3
