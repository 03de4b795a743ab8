// The parity task keeps the parameters of its best held-out check (src/train/parity.h).
#include <gtest/gtest.h>

#include <vector>

#include "train/parity.h"

namespace m3 {
namespace {

// Checks every 2 steps of a 7-step run (and at the end): the kept step is the check with the
// highest accuracy, ties going to the lower loss, and steps and checks are reported in order.
TEST(TrainParity, KeepsBestCheck) {
  train::ParityOptions o;
  o.mixer = "mamba3";
  o.steps = 7, o.batch = 2, o.train_len = 8, o.eval_seqs = 4, o.check_every = 2, o.lr = 1e-2;
  o.eval_lens = {8, 16};
  struct Check {
    int64_t step;
    double acc, loss;
  };
  std::vector<Check> checks;
  std::vector<int64_t> steps;
  const train::ParityResult r = train::run_parity(
      o, [&](const train::ParityStep& s) { steps.push_back(s.step); },
      [&](int64_t step, double acc, double loss) { checks.push_back({step, acc, loss}); });
  ASSERT_EQ(steps.size(), 7u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], int64_t(i + 1));
  ASSERT_EQ(checks.size(), 4u);
  const int64_t want_steps[] = {2, 4, 6, 7};
  Check best = checks[0];
  for (size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(checks[i].step, want_steps[i]);
    if (checks[i].acc > best.acc || (checks[i].acc == best.acc && checks[i].loss < best.loss)) best = checks[i];
  }
  EXPECT_EQ(r.best_step, best.step);
  EXPECT_EQ(r.best_check, best.acc);
  ASSERT_EQ(r.accuracy.size(), 2u);
  for (double a : r.accuracy) EXPECT_TRUE(a >= 0 && a <= 1) << a;
}

}  // namespace
}  // namespace m3
