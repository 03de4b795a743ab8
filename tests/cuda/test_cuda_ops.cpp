// The CUDA kernels the layers share (cuda/linear.h, cuda/ops.h, cuda/conv1d.h) against the CPU
// functions they mirror (cpu/ops.h, cpu/conv1d.h) on the same fresh random inputs: odd sizes, rows
// at strides wider than the rows (the padding of inputs holds NaN, which must not leak into any
// result; the padding of outputs must stay as it was), F32 and BF16 matrices, a packed batch of
// conv sequences in scattered pool slots. F32 within 1e-4 of each row's largest value; a BF16
// matrix within 2e-2 of the CPU product with the same bf16-rounded matrix.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "cpu/conv1d.h"
#include "cpu/ops.h"
#include "cuda/backend.h"
#include "cuda/conv1d.h"
#include "cuda/linear.h"
#include "cuda/linear_gemv.h"
#include "cuda/ops.h"
#include "cuda/weights.h"
#include "cuda_testing.h"

namespace m3 {
namespace {

using test::rows_near;

// What output padding holds before a kernel runs, and must hold after.
constexpr float kSentinel = 12345.0f;

// rows × cols values at row stride ld, the padding NaN (inputs) or kSentinel (outputs).
std::vector<float> strided(const std::vector<float>& dense, int64_t rows, int64_t cols, int64_t ld, float pad) {
  std::vector<float> s(size_t(rows * ld), pad);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(dense.begin() + r * cols, cols, s.begin() + r * ld);
  return s;
}
std::vector<float> dense_of(const std::vector<float>& s, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> d(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) std::copy_n(s.begin() + r * ld, cols, d.begin() + r * cols);
  return d;
}
// The padding of a strided output is all kSentinel.
::testing::AssertionResult padding_untouched(const std::vector<float>& s, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < ld; ++c)
      if (s[size_t(r * ld + c)] != kSentinel)
        return ::testing::AssertionFailure() << "row " << r << " padding column " << c << " was overwritten with "
                                             << s[size_t(r * ld + c)];
  return ::testing::AssertionSuccess();
}

float* dev(const std::shared_ptr<void>& m) { return static_cast<float*>(m.get()); }

class CudaOps : public test::CudaTest {
 protected:
  void SetUp() override {
    test::CudaTest::SetUp();
    if (IsSkipped()) return;
    seed_ = test::fresh_seed();
    rng_.seed(seed_);
  }
  Backend& f32() { return *test::cuda_backend(Precision::F32); }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

// ---- linear_fwd --------------------------------------------------------------------------------

struct LinearCase {
  int64_t T, in, out, ldx, ldy;
  bool bias;
  std::string str() const {
    return "T " + std::to_string(T) + " in " + std::to_string(in) + " out " + std::to_string(out) + " ldx " +
           std::to_string(ldx) + " ldy " + std::to_string(ldy) + (bias ? " bias" : "");
  }
};

void check_linear(Precision p, const LinearCase& k, std::mt19937_64& rng) {
  SCOPED_TRACE(std::string(test::precision_name(p)) + " " + k.str());
  Backend& be = *test::cuda_backend(p);
  cuda::Context& ctx = cuda::context_of(be);
  Tensor W = Tensor::zeros(DType::F32, {k.out, k.in});
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < W.numel(); ++i) W.f32()[i] = u(rng) / std::sqrt(float(k.in));
  const std::vector<float> bias = k.bias ? test::randn(size_t(k.out), rng) : std::vector<float>{};
  const std::vector<float> x = strided(test::randn(size_t(k.T * k.in), rng), k.T, k.in, k.ldx, NAN);

  // The CPU product with the matrix the device holds (rounded to bf16 under BF16).
  const Tensor W_ref = p == Precision::BF16 ? test::rounded_to_bf16(W) : W;
  std::vector<float> want(size_t(k.T * k.ldy), kSentinel);
  cpu::linear_fwd(want.data(), x.data(), W_ref.f32(), k.bias ? bias.data() : nullptr, k.T, k.in, k.out, k.ldx, k.ldy);

  const cuda::Matrix m = cuda::upload_matrix(ctx, W);
  EXPECT_EQ(m.bf16, p == Precision::BF16);
  EXPECT_EQ(m.rows, k.out);
  EXPECT_EQ(m.cols, k.in);
  auto xd = test::to_backend(be, x), bd = test::to_backend(be, bias),
       yd = test::to_backend(be, std::vector<float>(size_t(k.T * k.ldy), kSentinel));
  cuda::linear_fwd(ctx, dev(yd), dev(xd), m, k.bias ? dev(bd) : nullptr, k.T, k.in, k.out, k.ldx, k.ldy);
  const std::vector<float> got = test::to_host<float>(be, yd.get(), size_t(k.T * k.ldy));
  EXPECT_TRUE(rows_near(dense_of(got, k.T, k.out, k.ldy), dense_of(want, k.T, k.out, k.ldy), k.out,
                        test::tolerance(p)));
  EXPECT_TRUE(padding_untouched(got, k.T, k.out, k.ldy));
}

std::vector<LinearCase> linear_cases(std::mt19937_64& rng) {
  // One row (decode), a few, odd sizes on both sides, the 130M presets' shapes, dense and strided.
  std::vector<LinearCase> r = {{1, 1, 1, 1, 1, false},        {1, 37, 13, 37, 13, true},
                               {2, 77, 101, 80, 101, false},  {3, 64, 64, 67, 70, true},
                               {5, 129, 31, 129, 33, true},   {17, 255, 257, 256, 260, false},
                               {64, 768, 1536, 768, 1536, true}, {130, 768, 3352, 771, 3352, false},
                               {257, 1536, 768, 1537, 769, true}};
  for (int i = 0; i < 4; ++i) {  // and sizes drawn afresh each run
    const int64_t T = test::random_int(rng, 1, 300), in = test::random_int(rng, 1, 600),
                  out = test::random_int(rng, 1, 600);
    r.push_back({T, in, out, in + test::random_int(rng, 0, 9), out + test::random_int(rng, 0, 9), bool(i & 1)});
  }
  return r;
}

TEST_F(CudaOps, LinearF32MatchesCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  for (const LinearCase& k : linear_cases(rng_)) check_linear(Precision::F32, k, rng_);
}

TEST_F(CudaOps, LinearBF16MatchesCpuWithRoundedMatrix) {
  SCOPED_TRACE(test::seed_note(seed_));
  for (const LinearCase& k : linear_cases(rng_)) check_linear(Precision::BF16, k, rng_);
}

// One-row bf16 products (batch-1 decode, in a multiple of 8) go to the weight-streaming kernel of
// cuda/linear_gemv.h; the same check as above, on the shapes it takes (the 1.4B preset's in_proj,
// out_proj and lm_head, the largest x it stages, with and without bias, sizes drawn afresh).
TEST_F(CudaOps, LinearBF16OneRowMatchesCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  std::vector<LinearCase> cases = {{1, 2048, 8640, 2048, 8640, false}, {1, 4096, 2048, 4096, 2048, true},
                                   {1, 2048, 50288, 2048, 50288, false}, {1, 8, 5, 9, 5, true},
                                   {1, 264, 1001, 270, 1003, true},    {1, 49152, 30, 49155, 31, false}};
  for (int i = 0; i < 4; ++i) {
    const int64_t in = 8 * test::random_int(rng_, 1, 700), out = test::random_int(rng_, 1, 5000);
    cases.push_back({1, in, out, in, out, bool(i & 1)});
  }
  cuda::Context& ctx = cuda::context_of(*test::cuda_backend(Precision::BF16));
  for (const LinearCase& k : cases) {
    // The kernel really takes these (and linear_fwd's dispatch sends them there).
    const cuda::Matrix probe = cuda::upload_matrix(ctx, Tensor::zeros(DType::F32, {k.out, k.in}));
    ASSERT_TRUE(cuda::linear_bf16_gemv_fits(probe, k.T, k.in)) << k.str();
    check_linear(Precision::BF16, k, rng_);
  }
  // And not these: two rows, in not a multiple of 8, x past its shared memory, an f32 matrix.
  const cuda::Matrix m = cuda::upload_matrix(ctx, Tensor::zeros(DType::F32, {16, 64}));
  EXPECT_FALSE(cuda::linear_bf16_gemv_fits(m, 2, 64));
  EXPECT_FALSE(cuda::linear_bf16_gemv_fits(m, 1, 60));
  EXPECT_FALSE(cuda::linear_bf16_gemv_fits(m, 1, 49152 + 8));
  EXPECT_FALSE(cuda::linear_bf16_gemv_fits(
      cuda::upload_matrix(cuda::context_of(f32()), Tensor::zeros(DType::F32, {16, 64})), 1, 64));
}

// ---- rmsnorm_fwd, gated_rmsnorm_fwd, silu_gate_fwd, gelu_gate_fwd -------------------------------

TEST_F(CudaOps, RmsNormMatchesCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  Backend& be = f32();
  cuda::Context& ctx = cuda::context_of(be);
  const int64_t D_random = test::random_int(rng_, 1, 3000);
  for (auto [T, D] : {std::pair<int64_t, int64_t>{1, 1}, {1, 768}, {3, 37}, {130, 768}, {65, 1000}, {7, 2560},
                      {test::random_int(rng_, 1, 200), D_random}}) {
    for (bool in_place : {false, true}) {
      const int64_t ldx = D + (in_place ? 3 : test::random_int(rng_, 0, 5)), ldy = in_place ? ldx : D + 2;
      SCOPED_TRACE("T " + std::to_string(T) + " D " + std::to_string(D) + " ldx " + std::to_string(ldx) + " ldy " +
                   std::to_string(ldy) + (in_place ? " in place" : ""));
      const std::vector<float> xd = test::randn(size_t(T * D), rng_, 3.0f),
                               w = test::randn(size_t(D), rng_);
      std::vector<float> want(size_t(T * D));
      cpu::rmsnorm_fwd(want.data(), xd.data(), w.data(), T, D, 1e-5f);
      auto x_dev = test::to_backend(be, strided(xd, T, D, ldx, in_place ? kSentinel : NAN)),
           w_dev = test::to_backend(be, w);
      auto y_dev = in_place ? x_dev : test::to_backend(be, std::vector<float>(size_t(T * ldy), kSentinel));
      cuda::rmsnorm_fwd(ctx, dev(y_dev), dev(x_dev), dev(w_dev), T, D, 1e-5f, ldx, ldy);
      const std::vector<float> got = test::to_host<float>(be, y_dev.get(), size_t(T * ldy));
      EXPECT_TRUE(rows_near(dense_of(got, T, D, ldy), want, D, test::kTolF32));
      EXPECT_TRUE(padding_untouched(got, T, D, ldy));
    }
  }
}

TEST_F(CudaOps, GatedRmsNormBothGateOrdersAndGroupsMatchCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  Backend& be = f32();
  cuda::Context& ctx = cuda::context_of(be);
  // (D, group): one group, several, odd groups, the 130M Mamba-2 shape, a group of one channel.
  const int64_t g_random = test::random_int(rng_, 1, 64);
  for (auto [D, group] : {std::pair<int64_t, int64_t>{96, 96}, {96, 32}, {45, 15}, {45, 9}, {1536, 1536}, {1536, 192},
                          {7, 1}, {g_random * test::random_int(rng_, 1, 9), g_random}}) {
    for (bool before : {false, true}) {
      const int64_t T = test::random_int(rng_, 1, 150), ldy = D + test::random_int(rng_, 0, 7),
                    ldz = 2 * D + test::random_int(rng_, 0, 7), ldo = D + test::random_int(rng_, 1, 7);
      SCOPED_TRACE("T " + std::to_string(T) + " D " + std::to_string(D) + " group " + std::to_string(group) +
                   (before ? " norm before gate" : " norm after gate"));
      const std::vector<float> y = strided(test::randn(size_t(T * D), rng_, 2.0f), T, D, ldy, NAN),
                               z = strided(test::randn(size_t(T * D), rng_, 2.0f), T, D, ldz, NAN),
                               w = test::randn(size_t(D), rng_);
      std::vector<float> want(size_t(T * ldo), kSentinel);
      cpu::gated_rmsnorm_fwd(want.data(), y.data(), z.data(), w.data(), T, D, group, 1e-5f, before, ldy, ldz, ldo);
      auto yd = test::to_backend(be, y), zd = test::to_backend(be, z), wd = test::to_backend(be, w),
           od = test::to_backend(be, std::vector<float>(size_t(T * ldo), kSentinel));
      cuda::gated_rmsnorm_fwd(ctx, dev(od), dev(yd), dev(zd), dev(wd), T, D, group, 1e-5f, before, ldy, ldz, ldo);
      const std::vector<float> got = test::to_host<float>(be, od.get(), size_t(T * ldo));
      EXPECT_TRUE(rows_near(dense_of(got, T, D, ldo), dense_of(want, T, D, ldo), D, test::kTolF32));
      EXPECT_TRUE(padding_untouched(got, T, D, ldo));
    }
  }
}

// A gate out = act(a) ⊙ b or a ⊙ act(b) (silu_gate_fwd, gelu_gate_fwd) on both backends, rows at
// strides with NaN padding.
template <class CpuGate, class CudaGate>
void expect_gate_matches_cpu(Backend& be, std::mt19937_64& rng, CpuGate&& cpu_gate, CudaGate&& cuda_gate) {
  cuda::Context& ctx = cuda::context_of(be);
  for (auto [T, D] : {std::pair<int64_t, int64_t>{1, 1}, {1, 1536}, {5, 37}, {130, 1000},
                      {test::random_int(rng, 1, 200), test::random_int(rng, 1, 2000)}}) {
    const int64_t lda = D + test::random_int(rng, 0, 5), ldb = 3 * D + 1, ldo = D + test::random_int(rng, 1, 5);
    SCOPED_TRACE("T " + std::to_string(T) + " D " + std::to_string(D));
    const std::vector<float> a = strided(test::randn(size_t(T * D), rng, 2.0f), T, D, lda, NAN),
                             b = strided(test::randn(size_t(T * D), rng, 4.0f), T, D, ldb, NAN);
    std::vector<float> want(size_t(T * ldo), kSentinel);
    cpu_gate(want.data(), a.data(), b.data(), T, D, lda, ldb, ldo);
    auto ad = test::to_backend(be, a), bd = test::to_backend(be, b),
         od = test::to_backend(be, std::vector<float>(size_t(T * ldo), kSentinel));
    cuda_gate(ctx, dev(od), dev(ad), dev(bd), T, D, lda, ldb, ldo);
    const std::vector<float> got = test::to_host<float>(be, od.get(), size_t(T * ldo));
    EXPECT_TRUE(rows_near(dense_of(got, T, D, ldo), dense_of(want, T, D, ldo), D, test::kTolF32));
    EXPECT_TRUE(padding_untouched(got, T, D, ldo));
  }
}

TEST_F(CudaOps, SiluGateMatchesCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  expect_gate_matches_cpu(f32(), rng_, cpu::silu_gate_fwd, cuda::silu_gate_fwd);
}

// The exact (erf) GELU of Zamba2's MLP.
TEST_F(CudaOps, GeluGateMatchesCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  expect_gate_matches_cpu(f32(), rng_, cpu::gelu_gate_fwd, cuda::gelu_gate_fwd);
}

// ---- causal_conv1d_fwd -------------------------------------------------------------------------

// A packed batch of sequences (lengths 0, 1, below, at and above the window, several chunks) whose
// windows sit in scattered slots of a pool with padded slots; the CPU runs each sequence on its
// own window. Slots the batch does not name, and every slot's padding, must be left as they were.
void check_conv(Backend& be, int64_t C, int64_t W, bool bias, bool silu, std::mt19937_64& rng) {
  SCOPED_TRACE("C " + std::to_string(C) + " W " + std::to_string(W) + (bias ? " bias" : "") + (silu ? " silu" : ""));
  cuda::Context& ctx = cuda::context_of(be);
  std::vector<int64_t> lens = {0, 1, W - 1, W, W + 1, 37, 130, test::random_int(rng, 0, 300)};
  std::shuffle(lens.begin(), lens.end(), rng);
  const int64_t n = int64_t(lens.size()), n_slots = n + 3, stride = C * W + 5;
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) cu.push_back(cu.back() + L);
  const int64_t T = cu.back(), max_len = *std::max_element(lens.begin(), lens.end());
  std::vector<int32_t> slot(static_cast<size_t>(n_slots));
  std::iota(slot.begin(), slot.end(), 0);
  std::shuffle(slot.begin(), slot.end(), rng);
  slot.resize(size_t(n));

  const int64_t ldx = C + 4, ldo = C + 2;
  const std::vector<float> x = strided(test::randn(size_t(T * C), rng), T, C, ldx, NAN);
  const std::vector<float> w = test::randn(size_t(C * W), rng, 0.5f), b = test::randn(size_t(C), rng);
  const std::vector<float> windows = test::randn(size_t(n_slots * stride), rng);

  std::vector<float> want_out(size_t(T * ldo), kSentinel), want_windows = windows;
  for (int64_t i = 0; i < n; ++i)
    cpu::causal_conv1d_fwd(want_out.data() + cu[size_t(i)] * ldo, ldo, x.data() + cu[size_t(i)] * ldx, ldx,
                           lens[size_t(i)], C, w.data(), bias ? b.data() : nullptr, W,
                           want_windows.data() + int64_t(slot[size_t(i)]) * stride, silu);

  auto xd = test::to_backend(be, x), wd = test::to_backend(be, w), bd = test::to_backend(be, b),
       od = test::to_backend(be, std::vector<float>(size_t(T * ldo), kSentinel)), win = test::to_backend(be, windows),
       cud = test::to_backend(be, cu), sd = test::to_backend(be, slot);
  cuda::causal_conv1d_fwd(ctx, dev(od), ldo, dev(xd), ldx, static_cast<const int64_t*>(cud.get()), n, max_len, C,
                          dev(wd), bias ? dev(bd) : nullptr, W, dev(win), static_cast<const int32_t*>(sd.get()), stride,
                          silu);
  const std::vector<float> got = test::to_host<float>(be, od.get(), size_t(T * ldo)),
                           got_windows = test::to_host<float>(be, win.get(), windows.size());
  // Each output against the size of the terms it sums: the same convolution over |x|, |w|, |b|
  // and the windows' magnitudes (silu changes a value by at most its own size). A sum that cancels
  // to near zero is then held to the rounding of its terms, not to its own small value.
  auto abs_of = [](std::vector<float> v) {
    for (float& e : v) e = std::fabs(e);
    return v;
  };
  const std::vector<float> ax = abs_of(x), aw = abs_of(w), ab = abs_of(b);
  std::vector<float> mag(size_t(T * ldo), 0.0f), mag_windows = abs_of(windows);
  for (int64_t i = 0; i < n; ++i)
    cpu::causal_conv1d_fwd(mag.data() + cu[size_t(i)] * ldo, ldo, ax.data() + cu[size_t(i)] * ldx, ldx,
                           lens[size_t(i)], C, aw.data(), bias ? ab.data() : nullptr, W,
                           mag_windows.data() + int64_t(slot[size_t(i)]) * stride, false);
  for (int64_t t = 0, bad = 0; t < T && bad == 0; ++t)
    for (int64_t c = 0; c < C; ++c) {
      const size_t e = size_t(t * ldo + c);
      if (!(std::fabs(got[e] - want_out[e]) <= test::kTolF32 * mag[e])) {
        ADD_FAILURE() << "output row " << t << " channel " << c << ": got " << got[e] << ", expected " << want_out[e]
                      << ", terms of size " << mag[e] << " (tolerance " << test::kTolF32 << " of that)";
        bad = 1;
        break;
      }
    }
  EXPECT_TRUE(padding_untouched(got, T, C, ldo));
  // Windows hold inputs (copied, not computed): exact, and every other value untouched.
  for (size_t i = 0; i < windows.size(); ++i)
    if (got_windows[i] != want_windows[i]) {
      ADD_FAILURE() << "window memory at slot " << int64_t(i) / stride << ", offset " << int64_t(i) % stride << ": got "
                    << got_windows[i] << ", expected " << want_windows[i];
      break;
    }
}

TEST_F(CudaOps, CausalConv1dPackedSlotsMatchCpu) {
  SCOPED_TRACE(test::seed_note(seed_));
  // Mamba-2 130M's conv channels (1792, W 4), odd channel counts, widths 2 to 5, with and without
  // bias and silu.
  for (auto [C, W] : {std::pair<int64_t, int64_t>{1, 4}, {37, 4}, {1792, 4}, {101, 3}, {64, 2}, {33, 5},
                      {test::random_int(rng_, 1, 700), test::random_int(rng_, 2, 5)}})
    for (int opt = 0; opt < 4; ++opt) check_conv(f32(), C, W, opt & 1, opt & 2, rng_);
}

}  // namespace
}  // namespace m3
