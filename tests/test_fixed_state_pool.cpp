// Model::fix_state_pool, the server's pool: a fixed number of slots and KV rows per slot, where a
// growable pool would grow, gives an m3::Error and leaves the live sequences usable.
#include <gtest/gtest.h>

#include "expect_error.h"
#include "m3/model.h"
#include "m3/presets.h"

namespace m3 {
namespace {

TEST(FixedStatePool, RefusesPastItsSlotsAndKvRows) {
  Model m = Model::init(preset_config("mamba3-tiny"), 3);  // has attention layers: KV rows count
  SequenceState live = m.new_state();
  test::expect_error([&] { m.fix_state_pool(2, 8); }, {"while no state is alive"});
  live = SequenceState();
  m.fix_state_pool(2, 8);
  EXPECT_GT(m.state_bytes(8), m.state_bytes(4));  // KV rows are part of a sequence's bytes
  SequenceState a = m.new_state(), b = m.new_state();
  test::expect_error([&] { m.new_state(); }, {"2 slots are all in use"});
  test::expect_error([&] { SequenceState fork(a); }, {"2 slots are all in use"});
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<float> logits(size_t(m.config().vocab_padded()));
  SequenceState* sa = &a;
  const int64_t nine[2] = {0, 9};
  test::expect_error([&] { m.forward(tokens, nine, std::span<SequenceState* const>(&sa, 1), logits.data(), true); },
                     {"needs 9 KV positions", "holds 8"});
  // Within the limits the pool works, and a freed slot is taken again.
  const int64_t eight[2] = {0, 8};
  m.forward(std::span<const int32_t>(tokens).first(8), eight, std::span<SequenceState* const>(&sa, 1), logits.data(), true);
  EXPECT_EQ(a.n_tokens, 8);
  b = SequenceState();
  SequenceState c(a);  // fork into the freed slot
  EXPECT_EQ(c.n_tokens, 8);
}

}  // namespace
}  // namespace m3
