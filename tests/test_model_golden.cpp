// Whole-model logits against the reference checkpoints in ../shared/golden (spec/model.md), and
// the prefill/step and packed-batch equivalences of spec/mamba3.md §5 and §7.
#include <gtest/gtest.h>

#include "golden_model.h"
#include "m3/model.h"
#include "testing.h"

namespace m3 {
namespace {

using test::GoldenRun;
using test::load_golden;
using test::packed_logits;
using test::prefill_then_step;
using test::rel_err;

TEST(ModelGolden, Mamba3SisoHybridLogits) {
  GoldenRun g = load_golden("mamba3_siso_hybrid");
  const std::vector<float> got = packed_logits(g);
  EXPECT_LT(rel_err(got, g.ref), 1e-4);
  EXPECT_LT(test::max_row_err(got, g.ref, size_t(g.V)), test::kRowTolerance);
}

TEST(ModelGolden, Mamba3MimoHybridLogits) {
  GoldenRun g = load_golden("mamba3_mimo_hybrid");
  const std::vector<float> got = packed_logits(g);
  EXPECT_LT(rel_err(got, g.ref), 1e-4);
  EXPECT_LT(test::max_row_err(got, g.ref, size_t(g.V)), test::kRowTolerance);
}

TEST(ModelGolden, Mamba3MimoHybridPrefillThenStep) {
  GoldenRun g = load_golden("mamba3_mimo_hybrid");
  for (int64_t k : {1, 7, 8, 9, 36}) {
    for (int64_t b = 0; b < g.B; ++b) {
      std::vector<float> ps = prefill_then_step(g, b, k);
      std::vector<double> ref(g.ref.begin() + b * g.L * g.V, g.ref.begin() + (b + 1) * g.L * g.V);
      EXPECT_LT(rel_err(ps, ref), 1e-4) << "k = " << k << ", sequence " << b;
      EXPECT_LT(test::max_row_err(ps, ref, size_t(g.V)), test::kRowTolerance) << "k = " << k << ", sequence " << b;
    }
  }
}

TEST(ModelGolden, Mamba3SisoHybridPrefillThenStep) {
  GoldenRun g = load_golden("mamba3_siso_hybrid");
  for (int64_t k : {1, 15, 16, 17, 82}) {
    for (int64_t b = 0; b < g.B; ++b) {
      std::vector<float> ps = prefill_then_step(g, b, k);
      std::vector<double> ref(g.ref.begin() + b * g.L * g.V, g.ref.begin() + (b + 1) * g.L * g.V);
      EXPECT_LT(rel_err(ps, ref), 1e-4) << "k = " << k << ", sequence " << b;
      EXPECT_LT(test::max_row_err(ps, ref, size_t(g.V)), test::kRowTolerance) << "k = " << k << ", sequence " << b;
    }
  }
}

TEST(ModelGolden, Mamba3SisoHybridPackedVarlenEqualsSeparate) {
  GoldenRun g = load_golden("mamba3_siso_hybrid");
  // Three runs of different lengths (around the chunk size of 16) cut from the golden ids.
  test::expect_packed_equals_separate(g, {5, 40, 23}, 7);
}

}  // namespace
}  // namespace m3
