// The decode state pool (src/model/state_pool.h) on the CPU backend: slots come zeroed; every kind
// of buffer (fixed-size, KV rows) goes to the device and back unchanged and sits where a layer's
// StateBatch says; copy_slot forks; a growable pool grows in slots and KV capacity keeping what the
// slots hold, a fixed one refuses with m3::Error and keeps it too; released slots are reused and
// zeroed again. Then SequenceState on a model: a fork continues exactly like the original.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "expect_error.h"
#include "layer_states.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "model/state_pool.h"
#include "testing.h"

namespace m3 {
namespace {

// Two layers with state and a stateless one: fixed-size buffers of rank 1–3 and a KV pair.
const std::vector<LayerStateSpec> kSpecs = {
    {{"ssm", {2, 3, 2}}, {"kv_k", {0, 4}, true}, {"kv_v", {0, 4}, true}},
    {},
    {{"conv", {5, 2}}, {"angle", {3}}},
};

// Layer l's state with random values, its KV buffers holding `rows` positions.
LayerState random_layer_state(size_t l, int64_t rows, std::mt19937_64& rng) {
  LayerState s = zero_layer_state(kSpecs[l]);
  for (StateBuffer& b : s.buffers) {
    for (const StateBufferSpec& spec : kSpecs[l])
      if (spec.name == b.name && spec.kv) b.shape[0] = rows;
    b.data = test::randn(size_t(shape_numel(b.shape)), rng);
  }
  return s;
}

void expect_equal(const LayerState& got, const LayerState& want, const std::string& what) {
  ASSERT_EQ(got.buffers.size(), want.buffers.size()) << what;
  for (size_t b = 0; b < want.buffers.size(); ++b) {
    EXPECT_EQ(got.buffers[b].name, want.buffers[b].name) << what;
    EXPECT_EQ(got.buffers[b].shape, want.buffers[b].shape) << what << " " << want.buffers[b].name;
    EXPECT_EQ(got.buffers[b].data, want.buffers[b].data) << what << " " << want.buffers[b].name;
  }
}

void expect_zero(const LayerState& s, const std::string& what) {
  for (const StateBuffer& b : s.buffers)
    EXPECT_EQ(b.data, std::vector<float>(b.data.size(), 0.0f)) << what << " " << b.name;
}

// Every layer of `slot` set to random states with `rows` KV positions; returns them.
std::vector<LayerState> fill(StatePool& pool, int32_t slot, int64_t rows, std::mt19937_64& rng) {
  std::vector<LayerState> r;
  for (size_t l = 0; l < kSpecs.size(); ++l) {
    r.push_back(random_layer_state(l, rows, rng));
    pool.write(slot, l, r.back());
  }
  return r;
}

void expect_holds(const StatePool& pool, int32_t slot, const std::vector<LayerState>& want, int64_t rows,
                  const std::string& what) {
  for (size_t l = 0; l < kSpecs.size(); ++l)
    expect_equal(pool.read(slot, l, rows), want[l], what + ", layer " + std::to_string(l));
}

TEST(StatePool, AcquireGivesZeroedSlots) {
  StatePool pool(test::cpu_backend(), kSpecs, 3, 4, true);
  EXPECT_EQ(pool.n_layers(), kSpecs.size());
  EXPECT_EQ(pool.slots_in_use(), 0);
  for (int i = 0; i < 3; ++i) {
    const int32_t s = pool.acquire();
    for (size_t l = 0; l < kSpecs.size(); ++l) {
      const LayerState st = pool.read(s, l, 4);
      ASSERT_EQ(st.buffers.size(), kSpecs[l].size());
      expect_zero(st, "slot " + std::to_string(s));
    }
  }
  EXPECT_EQ(pool.slots_in_use(), 3);
}

// Each buffer goes to the pool and back unchanged, and a layer finds it where the StateBatch says:
// sequence i's buffer b at at(b, i), a KV buffer's position r at row r of it.
TEST(StatePool, WriteReadRoundTripOfEveryBufferKind) {
  std::mt19937_64 rng(1);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 5, true);
  const int32_t slots[2] = {pool.acquire(), pool.acquire()};
  const std::vector<LayerState> a = fill(pool, slots[0], 3, rng), b = fill(pool, slots[1], 5, rng);
  expect_holds(pool, slots[0], a, 3, "slot 0");
  expect_holds(pool, slots[1], b, 5, "slot 1");
  EXPECT_EQ(pool.bytes_per_sequence(3), size_t(4 * (12 + 2 * 3 * 4 + 10 + 3)));

  const int64_t pos[2] = {3, 5};
  for (size_t l = 0; l < kSpecs.size(); ++l) {
    const StateBatch s = pool.batch(l, 2, slots, slots, pos, pos);
    ASSERT_EQ(s.buf.size(), kSpecs[l].size());
    EXPECT_EQ(s.kv_capacity, 5);
    for (int64_t i = 0; i < 2; ++i) {
      const LayerState& want = (i == 0 ? a : b)[l];
      for (size_t k = 0; k < kSpecs[l].size(); ++k) {
        const std::vector<float>& w = want.buffers[k].data;
        EXPECT_EQ(std::vector<float>(s.at(k, i), s.at(k, i) + w.size()), w)
            << "layer " << l << " sequence " << i << " " << kSpecs[l][k].name;
      }
    }
  }
  // Fewer KV rows read back are the first ones.
  const LayerState first2 = pool.read(slots[1], 0, 2);
  EXPECT_EQ(first2["kv_v"].shape, (Shape{2, 4}));
  EXPECT_EQ(first2["kv_v"].data, std::vector<float>(b[0]["kv_v"].data.begin(), b[0]["kv_v"].data.begin() + 8));
}

TEST(StatePool, WriteOfAMismatchedStateIsRefused) {
  std::mt19937_64 rng(2);
  StatePool pool(test::cpu_backend(), kSpecs, 1, 3, false);
  const int32_t s = pool.acquire();
  test::expect_error([&] { pool.write(s, 0, random_layer_state(0, 4, rng)); }, {"kv_k", "4 positions", "3"});
  LayerState wrong = random_layer_state(2, 0, rng);
  wrong.buffers[0].data.pop_back();
  test::expect_error([&] { pool.write(s, 2, wrong); }, {"conv", "9 values", "expected 10"});
  test::expect_error([&] { pool.write(s, 2, random_layer_state(0, 1, rng)); }, {"3 buffers", "expected 2"});
  // A later buffer wrong: the earlier ones, valid, must not have been copied either.
  LayerState late = random_layer_state(2, 0, rng);
  late.buffers[1].data.push_back(1.0f);
  test::expect_error([&] { pool.write(s, 2, late); }, {"angle", "4 values", "expected 3"});
  LayerState late_kv = random_layer_state(0, 3, rng);
  late_kv.buffers[2].shape[0] = 4;
  late_kv.buffers[2].data.resize(16, 1.0f);
  test::expect_error([&] { pool.write(s, 0, late_kv); }, {"kv_v", "4 positions", "3"});
  expect_zero(pool.read(s, 2, 3), "after refused writes");
  expect_zero(pool.read(s, 0, 3), "after refused writes");
}

TEST(StatePool, CopySlotForks) {
  std::mt19937_64 rng(3);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 4, true);
  const int32_t a = pool.acquire(), b = pool.acquire();
  const std::vector<LayerState> original = fill(pool, a, 4, rng);
  pool.copy_slot(b, a);
  expect_holds(pool, b, original, 4, "the copy");
  fill(pool, b, 2, rng);  // changing the copy leaves the original
  expect_holds(pool, a, original, 4, "the original after the copy changed");
}

TEST(StatePool, GrowablePoolGrowsKeepingSlots) {
  std::mt19937_64 rng(4);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 3, true);
  std::vector<int32_t> slots;
  std::vector<std::vector<LayerState>> held;
  for (int i = 0; i < 5; ++i) {
    slots.push_back(pool.acquire());
    held.push_back(fill(pool, slots.back(), 3, rng));
  }
  EXPECT_GE(pool.n_slots(), 5);
  EXPECT_EQ(pool.slots_in_use(), 5);
  for (size_t i = 0; i < slots.size(); ++i) {
    for (size_t j = 0; j < i; ++j) EXPECT_NE(slots[i], slots[j]);
    expect_holds(pool, slots[i], held[i], 3, "slot " + std::to_string(slots[i]) + " after growing");
  }
}

TEST(StatePool, ReserveKvGrowsCapacityKeepingRows) {
  std::mt19937_64 rng(5);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 3, true);
  const int32_t a = pool.acquire(), b = pool.acquire();
  const std::vector<LayerState> sa = fill(pool, a, 3, rng), sb = fill(pool, b, 2, rng);
  const size_t before = pool.bytes_allocated();
  pool.reserve_kv(3);  // already there: nothing changes
  EXPECT_EQ(pool.kv_capacity(), 3);
  pool.reserve_kv(10);
  EXPECT_GE(pool.kv_capacity(), 10);
  EXPECT_GT(pool.bytes_allocated(), before);
  expect_holds(pool, a, sa, 3, "slot a after reserve_kv");
  expect_holds(pool, b, sb, 2, "slot b after reserve_kv");
  // The new rows can be written and read.
  const LayerState longer = random_layer_state(0, 10, rng);
  pool.write(b, 0, longer);
  expect_equal(pool.read(b, 0, 10), longer, "10 rows");
  expect_holds(pool, a, sa, 3, "slot a after writing slot b");
}

// A fixed pool (a server's, sized from a memory budget) refuses more slots or KV positions than it
// was made with, and what its slots hold stays.
TEST(StatePool, FixedPoolRefusesToGrow) {
  std::mt19937_64 rng(6);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 4, false);
  const int32_t a = pool.acquire(), b = pool.acquire();
  const std::vector<LayerState> sa = fill(pool, a, 4, rng), sb = fill(pool, b, 1, rng);
  test::expect_error([&] { pool.acquire(); }, {"2 slots", "in use"});
  test::expect_error([&] { pool.reserve_kv(5); }, {"5 KV positions", "holds 4"});
  EXPECT_NO_THROW(pool.reserve_kv(4));
  EXPECT_EQ(pool.n_slots(), 2);
  EXPECT_EQ(pool.kv_capacity(), 4);
  expect_holds(pool, a, sa, 4, "slot a after the refusals");
  expect_holds(pool, b, sb, 1, "slot b after the refusals");
  // A released slot can be taken again.
  pool.release(b);
  EXPECT_EQ(pool.acquire(), b);
}

TEST(StatePool, ReleasedSlotIsReusedAndZeroed) {
  std::mt19937_64 rng(7);
  StatePool pool(test::cpu_backend(), kSpecs, 2, 3, true);
  const int32_t a = pool.acquire(), b = pool.acquire();
  const std::vector<LayerState> sb = fill(pool, b, 3, rng);
  fill(pool, a, 3, rng);
  pool.release(a);
  EXPECT_EQ(pool.slots_in_use(), 1);
  EXPECT_EQ(pool.acquire(), a);
  for (size_t l = 0; l < kSpecs.size(); ++l) expect_zero(pool.read(a, l, 3), "the reused slot");
  expect_holds(pool, b, sb, 3, "the other slot");
  EXPECT_EQ(pool.n_slots(), 2) << "a free slot is reused before the pool grows";
}

// On a model (mamba3-tiny: Mamba-3 layers with fixed-size states and an MHA layer with a KV cache):
// a forked SequenceState continues exactly like the original, and changing one leaves the other.
TEST(SequenceStateFork, ContinuesLikeTheOriginal) {
  Model m = Model::init(preset_config("mamba3-tiny"), 11);
  const int64_t V = m.config().vocab_padded();
  const std::vector<int32_t> prompt = {5, 17, 200, 3, 99, 42, 7};
  auto prefill = [&](SequenceState& s) {
    SequenceState* sp = &s;
    std::vector<float> logits(static_cast<size_t>(V));
    const int64_t cu[2] = {0, int64_t(prompt.size())};
    m.forward(prompt, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
  };
  auto steps = [&](SequenceState& s, const std::vector<int32_t>& toks) {
    SequenceState* sp = &s;
    std::vector<float> out(toks.size() * size_t(V));
    for (size_t t = 0; t < toks.size(); ++t)
      m.step(std::span<const int32_t>(&toks[t], 1), std::span<SequenceState* const>(&sp, 1), out.data() + t * V);
    return out;
  };
  SequenceState a = m.new_state();
  prefill(a);
  SequenceState b = a;  // fork by copy
  SequenceState c = m.new_state();
  c = a;  // fork by assignment, replacing a fresh state
  SequenceState d = a, moved = std::move(d);  // a moved fork is the same fork
  for (const SequenceState* s : {&b, &c, &moved}) {
    EXPECT_EQ(s->n_tokens, int64_t(prompt.size()));
    EXPECT_NE(s->slot(), a.slot());
    EXPECT_EQ(s->pool(), a.pool());
  }
  EXPECT_FALSE(d.valid());
  const int64_t in_use = a.pool()->slots_in_use();
  {
    SequenceState e = a;
    EXPECT_EQ(a.pool()->slots_in_use(), in_use + 1);
    steps(e, {1, 2, 3, 4});  // advancing one fork changes no other
  }
  EXPECT_EQ(a.pool()->slots_in_use(), in_use) << "a destroyed state frees its slot";

  const std::vector<int32_t> more = {8, 120, 64, 9, 250};
  const std::vector<float> want = steps(a, more);
  EXPECT_EQ(steps(b, more), want);
  EXPECT_EQ(steps(c, more), want);
  EXPECT_EQ(steps(moved, more), want);
  // And so does a fresh state given the same prompt.
  SequenceState fresh = m.new_state();
  prefill(fresh);
  EXPECT_EQ(steps(fresh, more), want);
}

}  // namespace
}  // namespace m3
