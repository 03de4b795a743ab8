// The bf16 tensor-core Mamba-3 prefill scan (cuda/mamba3_chunk_scan_bf16.h) split into parts and
// pieces (its first launch's state changes folded in front of each part) against the CPU scan
// (cpu/mamba3_scan.h, float32) on fresh random inputs: SISO and MIMO ranks 2 and 4, d_state 128,
// 64 and 32, both rotary pairings, groups; a packed batch with sequences of length 0, shorter
// than a chunk, a chunk, and long ones (slow-decaying heads, so that state crossing a part's
// boundary matters), in scattered pool slots among decoy slots no call may touch; the splits
// none, 2 × 1, 3 × 2, 5 × 3, 64 × 1 (most parts empty) and the one the device's SM count picks.
// Outputs and final states within 2e-2 of each row's largest value (the bf16 tolerance). Two
// shapes run with x and the carried states scaled by 10⁶ and 10⁻⁶ (the scan is linear in them):
// the kernel keeps the state's copy in fp16 at a power-of-two scale, and without that scale 10⁶
// overflows fp16 and 10⁻⁶ falls into its subnormals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu/mamba3_scan.h"
#include "cuda/backend.h"
#include "cuda/mamba3_chunk_scan_bf16.h"
#include "cuda_testing.h"

namespace m3 {
namespace {

using test::rows_near;

struct SplitCase {
  int64_t H, G, N, S, R;
  bool halves;
  float magnitude = 1.0f;  // of x and the carried ssm and v states
  std::string str() const {
    return "H " + std::to_string(H) + " G " + std::to_string(G) + " N " + std::to_string(N) + " S " +
           std::to_string(S) + " R " + std::to_string(R) + (halves ? " halves" : " adjacent") + " magnitude " +
           std::to_string(magnitude);
  }
};

class CudaMamba3Split : public test::CudaTestWithParam<SplitCase> {};

float* dev(const std::shared_ptr<void>& m) { return static_cast<float*>(m.get()); }

std::vector<float> uniform(size_t n, std::mt19937_64& rng, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

TEST_P(CudaMamba3Split, SplitPrefillMatchesCpuScan) {
  const SplitCase k = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(test::seed_note(seed) + ", " + k.str());
  std::mt19937_64 rng(seed);
  const int64_t H = k.H, G = k.G, N = k.N, S = k.S, R = k.R, P = 64;
  const cpu::Mamba3ScanDims cd{H, G, P, N, S, R, k.halves};
  const cuda::Mamba3ScanDims gd{H, G, P, N, S, R, k.halves};
  ASSERT_TRUE(cuda::mamba3_chunk_scan_bf16_supported(gd));

  const std::vector<int64_t> lens = {0, 5, 64 / R, 130, 777, 1500 + test::random_int(rng, 0, 600)};
  std::vector<int64_t> cu = {0};
  for (int64_t n : lens) cu.push_back(cu.back() + n);
  const int64_t T = cu.back(), n_seqs = int64_t(lens.size());
  const int64_t qk_ld = R * G * N, x_ld = H * P, y_ld = R * H * P;

  // Inputs as the layer makes them: q, k after their RMSNorm (unit scale), dt after softplus,
  // A·dt from a per-head A spanning slow (A = −1e-3: memory of ~10⁴ tokens) to fast heads.
  const std::vector<float> q = test::randn(size_t(T * qk_ld), rng), kk = test::randn(size_t(T * qk_ld), rng);
  const std::vector<float> x = test::randn(size_t(T * x_ld), rng, k.magnitude);
  const std::vector<float> q_bias = test::randn(size_t(H * R * N), rng, 0.3f), k_bias = test::randn(size_t(H * R * N), rng, 0.3f);
  std::vector<float> mimo_x = test::randn(size_t(H * R * P), rng, 0.3f);
  for (float& v : mimo_x) v += 1.0f;
  const std::vector<float> dt = uniform(size_t(T * H), rng, 0.05f, 0.5f);
  const std::vector<float> log_a = uniform(size_t(H), rng, std::log(1e-3f), std::log(1.0f));
  std::vector<float> adt(size_t(T * H));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) adt[size_t(t * H + h)] = -std::exp(log_a[size_t(h)]) * dt[size_t(t * H + h)];
  const std::vector<float> trap = test::randn(size_t(T * H), rng), angle = test::randn(size_t(T * S), rng);
  const std::vector<float> D = test::randn(size_t(H), rng);

  // Each sequence's state in slot 2i + 1 of a pool of 2n + 1 (the even slots are decoys).
  const int64_t slots = 2 * n_seqs + 1, A_ST = H * S, SSM = H * P * N, K_ST = R * H * N, V_ST = H * P;
  const std::vector<float> pool_angle = uniform(size_t(slots * A_ST), rng, 0.0f, 6.2f);
  const std::vector<float> pool_ssm = test::randn(size_t(slots * SSM), rng, 0.5f * k.magnitude);
  const std::vector<float> pool_k = test::randn(size_t(slots * K_ST), rng);
  const std::vector<float> pool_v = test::randn(size_t(slots * V_ST), rng, k.magnitude);
  std::vector<int32_t> slot(static_cast<size_t>(n_seqs));
  for (int64_t i = 0; i < n_seqs; ++i) slot[size_t(i)] = int32_t(2 * i + 1);

  // The CPU scan, float32: the reference.
  std::vector<float> want_angle = pool_angle, want_ssm = pool_ssm, want_k = pool_k, want_v = pool_v;
  std::vector<cpu::Mamba3ScanState> cst;
  for (int64_t i = 0; i < n_seqs; ++i) {
    const int64_t s = slot[size_t(i)];
    cst.push_back({want_angle.data() + s * A_ST, want_ssm.data() + s * SSM, want_k.data() + s * K_ST,
                   want_v.data() + s * V_ST});
  }
  const cpu::Mamba3ScanInputs cin{q.data(), kk.data(), qk_ld, q_bias.data(), k_bias.data(), x.data(), x_ld,
                                  R > 1 ? mimo_x.data() : nullptr, {adt.data(), H, 1}, {dt.data(), H, 1},
                                  {trap.data(), H, 1}, angle.data(), S, 0, D.data()};
  std::vector<float> want_y(size_t(T * y_ld));
  cpu::mamba3_scan_chunked(cd, cin, cu.data(), n_seqs, cst.data(), want_y.data(), y_ld, 64);

  Backend& be = *test::cuda_backend(Precision::BF16);
  cuda::Context& ctx = cuda::context_of(be);
  auto qd = test::to_backend(be, q), kd = test::to_backend(be, kk), xd = test::to_backend(be, x);
  auto qbd = test::to_backend(be, q_bias), kbd = test::to_backend(be, k_bias), mxd = test::to_backend(be, mimo_x);
  auto dtd = test::to_backend(be, dt), adtd = test::to_backend(be, adt), trd = test::to_backend(be, trap);
  auto and_ = test::to_backend(be, angle), Dd = test::to_backend(be, D);
  auto cud = test::to_backend(be, cu), slotd = test::to_backend(be, slot);
  const cuda::Mamba3ScanInputs gin{.q = dev(qd), .k = dev(kd), .qk_ld = qk_ld, .q_bias = dev(qbd),
                                   .k_bias = dev(kbd), .x = dev(xd), .x_ld = x_ld,
                                   .mimo_x = R > 1 ? dev(mxd) : nullptr, .adt = dev(adtd), .dt = dev(dtd),
                                   .trap = dev(trd), .trap_ld = H, .angle = dev(and_), .angle_ld = S, .D = dev(Dd)};

  const int64_t max_len = *std::max_element(lens.begin(), lens.end());
  const cuda::Mamba3Bf16Split chosen = cuda::mamba3_chunk_scan_bf16_split(ctx, gd, n_seqs, max_len);
  cuda::Scratch<float> scratch;
  for (const cuda::Mamba3Bf16Split split : {cuda::Mamba3Bf16Split{1, 1}, cuda::Mamba3Bf16Split{2, 1},
                                            cuda::Mamba3Bf16Split{3, 2}, cuda::Mamba3Bf16Split{5, 3},
                                            cuda::Mamba3Bf16Split{64, 1}, chosen}) {
    SCOPED_TRACE("split " + std::to_string(split.segments) + " parts × " + std::to_string(split.subsegments) +
                 " pieces");
    auto ang = test::to_backend(be, pool_angle), ssm = test::to_backend(be, pool_ssm);
    auto kst = test::to_backend(be, pool_k), vst = test::to_backend(be, pool_v);
    auto yd = test::to_backend(be, std::vector<float>(size_t(T * y_ld), NAN));
    const cuda::Mamba3ScanStates st{dev(ang), dev(ssm), dev(kst), dev(vst), A_ST, SSM, K_ST, V_ST,
                                    static_cast<const int32_t*>(slotd.get())};
    cuda::mamba3_chunk_scan_bf16_prefill(ctx, gd, gin, static_cast<const int64_t*>(cud.get()), n_seqs, st, dev(yd),
                                         y_ld, split, scratch);
    const std::vector<float> got_y = test::to_host<float>(be, yd.get(), size_t(T * y_ld));
    EXPECT_TRUE(rows_near(got_y, want_y, y_ld, test::kTolBF16)) << "outputs";
    const auto got_angle = test::to_host<float>(be, ang.get(), pool_angle.size());
    const auto got_ssm = test::to_host<float>(be, ssm.get(), pool_ssm.size());
    const auto got_k = test::to_host<float>(be, kst.get(), pool_k.size());
    const auto got_v = test::to_host<float>(be, vst.get(), pool_v.size());
    for (int64_t s = 0; s < slots; ++s) {
      SCOPED_TRACE("slot " + std::to_string(s) + (s % 2 ? " (sequence " + std::to_string(s / 2) + ")" : " (decoy)"));
      auto part = [&](const std::vector<float>& v, int64_t n) {
        return std::vector<float>(v.begin() + s * n, v.begin() + (s + 1) * n);
      };
      if (s % 2 == 0) {  // decoys: exactly as they were
        EXPECT_EQ(part(got_ssm, SSM), part(pool_ssm, SSM));
        EXPECT_EQ(part(got_angle, A_ST), part(pool_angle, A_ST));
        EXPECT_EQ(part(got_k, K_ST), part(pool_k, K_ST));
        EXPECT_EQ(part(got_v, V_ST), part(pool_v, V_ST));
        continue;
      }
      const auto [ga, gc] = test::state_rows("angle", {H, S}, part(got_angle, A_ST));
      const auto [wa, wc] = test::state_rows("angle", {H, S}, part(want_angle, A_ST));
      EXPECT_TRUE(rows_near(ga, wa, wc, test::kTolBF16)) << "angle";
      EXPECT_TRUE(rows_near(part(got_ssm, SSM), part(want_ssm, SSM), SSM, test::kTolBF16)) << "ssm";
      EXPECT_TRUE(rows_near(part(got_k, K_ST), part(want_k, K_ST), K_ST, test::kTolBF16)) << "k";
      EXPECT_TRUE(rows_near(part(got_v, V_ST), part(want_v, V_ST), V_ST, test::kTolBF16)) << "v";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMamba3Split,
                         ::testing::Values(SplitCase{6, 2, 128, 32, 1, false}, SplitCase{4, 1, 128, 64, 1, false},
                                           SplitCase{4, 1, 64, 16, 2, true}, SplitCase{3, 1, 32, 8, 4, true},
                                           SplitCase{4, 2, 128, 64, 4, true}, SplitCase{4, 1, 128, 32, 1, false, 1e6f},
                                           SplitCase{3, 1, 32, 8, 4, true, 1e-6f}),
                         [](const ::testing::TestParamInfo<SplitCase>& i) {
                           return "H" + std::to_string(i.param.H) + "G" + std::to_string(i.param.G) + "N" +
                                  std::to_string(i.param.N) + "S" + std::to_string(i.param.S) + "R" +
                                  std::to_string(i.param.R) +
                                  (i.param.magnitude > 1 ? "Big" : i.param.magnitude < 1 ? "Small" : "");
                         });

}  // namespace
}  // namespace m3
