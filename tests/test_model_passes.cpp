// Model::forward over a batch larger than its token budget (include/m3/model.h): run in passes
// windowed by position, it must give what one pass gives — the logits of every token or of each
// sequence's last, every layer's final state — and decoding continued from those states must agree.
// On the tiny presets of each mixer kind (Mamba-3 SISO and MIMO, Mamba-2, Mamba-1; the first three
// with an attention layer, whose KV cache the passes extend), a packed batch of unequal lengths (a
// length 0 among them where forward allows it), budgets of 7 and 3 tokens (3 is below the number
// of sequences: some wait a pass). The one-pass run is the reference: passes change only where
// chunked scans split, a float rounding difference (≤ 1e-5 relative).
#include <gtest/gtest.h>

#include <random>

#include "expect_error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "testing.h"

namespace m3 {
namespace {

constexpr double kTol = 1e-5;

struct Run {
  std::vector<float> logits, step_logits;
  std::vector<SequenceState> states;
};

// forward over the packed batch of `lens` (tokens from `seed`) with the given budget, then
// `steps` decode steps of every sequence.
Run run(Model& m, const std::vector<int64_t>& lens, bool last_only, int64_t budget, int steps) {
  const int64_t V = m.config().vocab_padded();
  std::mt19937 rng(11);
  std::vector<int64_t> cu = {0};
  for (int64_t l : lens) cu.push_back(cu.back() + l);
  std::vector<int32_t> tokens(size_t(cu.back()));
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(m.config().vocab_size));
  Run r;
  for (size_t i = 0; i < lens.size(); ++i) r.states.push_back(m.new_state());
  std::vector<SequenceState*> sp;
  for (auto& s : r.states) sp.push_back(&s);
  r.logits.assign(size_t((last_only ? int64_t(lens.size()) : cu.back()) * V), NAN);
  m.set_max_tokens_per_pass(budget);
  m.forward(tokens, cu, sp, r.logits.data(), last_only);
  std::vector<float> lg(lens.size() * size_t(V));
  for (int k = 0; k < steps; ++k) {
    std::vector<int32_t> next(lens.size());
    for (auto& t : next) t = int32_t(rng() % uint32_t(m.config().vocab_size));
    m.step(next, sp, lg.data());
    r.step_logits.insert(r.step_logits.end(), lg.begin(), lg.end());
  }
  return r;
}

void expect_same_states(const SequenceState& got, const SequenceState& want, const std::string& what) {
  EXPECT_EQ(got.n_tokens, want.n_tokens) << what;
  for (size_t l = 0; l < want.n_layers(); ++l) {
    const LayerState g = got.layer(l), w = want.layer(l);
    ASSERT_EQ(g.buffers.size(), w.buffers.size()) << what << " layer " << l;
    for (size_t b = 0; b < w.buffers.size(); ++b) {
      EXPECT_EQ(g.buffers[b].shape, w.buffers[b].shape) << what << " layer " << l << " " << w.buffers[b].name;
      EXPECT_LE(test::rel_err(g.buffers[b].data, w.buffers[b].data), kTol)
          << what << " layer " << l << " " << w.buffers[b].name;
    }
  }
}

void expect_passes_match_one_pass(const std::string& preset) {
  Model m = Model::init(preset_config(preset), 5);
  for (bool last_only : {false, true}) {
    // last_only needs every sequence non-empty.
    const std::vector<int64_t> lens =
        last_only ? std::vector<int64_t>{15, 6, 1, 11} : std::vector<int64_t>{15, 0, 6, 1, 11};
    const Run want = run(m, lens, last_only, 1 << 20, 2);
    for (int64_t budget : {7, 3}) {
      const std::string what =
          preset + (last_only ? " last_only" : " all tokens") + " budget " + std::to_string(budget);
      const Run got = run(m, lens, last_only, budget, 2);
      EXPECT_LE(test::rel_err(got.logits, want.logits), kTol) << what;
      for (size_t i = 0; i < lens.size(); ++i)
        expect_same_states(got.states[i], want.states[i], what + " sequence " + std::to_string(i));
      EXPECT_LE(test::rel_err(got.step_logits, want.step_logits), kTol) << what << ": decoding after";
    }
  }
}

TEST(ModelPasses, Mamba3HybridMatchesOnePass) { expect_passes_match_one_pass("mamba3-tiny"); }
TEST(ModelPasses, Mamba3MimoHybridMatchesOnePass) { expect_passes_match_one_pass("mamba3-mimo-tiny-hybrid"); }
TEST(ModelPasses, Mamba2HybridMatchesOnePass) { expect_passes_match_one_pass("mamba2-tiny-hybrid"); }
TEST(ModelPasses, Mamba1MatchesOnePass) { expect_passes_match_one_pass("mamba1-tiny"); }

TEST(ModelPasses, BudgetBelowOneIsRefused) {
  Model m = Model::init(preset_config("mamba1-tiny"), 5);
  test::expect_error([&] { m.set_max_tokens_per_pass(0); }, {"token budget", "at least 1", "got 0"});
}

}  // namespace
}  // namespace m3
