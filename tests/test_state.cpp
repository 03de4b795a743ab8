// Decode state persistence (include/m3/state.h): a state saved to safetensors after a prefill and
// restored into a fresh state continues exactly like the original, on the golden hybrid (its MHA
// layer has a KV cache, its Mamba-3 layers fixed-size states); malformed state files (a KV cache
// must hold exactly the n_tokens positions consumed) are refused with m3::Error and leave the
// target state untouched.
#include <gtest/gtest.h>

#include "expect_error.h"
#include "m3/model.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

struct Golden {
  Model model = Model::load(test::golden("mamba3_siso_hybrid"));
  std::vector<int32_t> ids;  // the first golden sequence
  Golden() {
    Tensor t = SafetensorsFile::open(test::golden("mamba3_siso_hybrid/golden.safetensors")).get("input_ids");
    for (double v : test::to_f64(t)) ids.push_back(int32_t(v));
    ids.resize(size_t(t.shape[1]));
  }
  int64_t V() const { return model.config().vocab_padded(); }
  void prefill(SequenceState& s, int64_t k) {
    SequenceState* sp = &s;
    std::vector<float> logits(static_cast<size_t>(V()));
    int64_t cu[2] = {0, k};
    model.forward(std::span<const int32_t>(ids.data(), size_t(k)), cu, std::span<SequenceState* const>(&sp, 1),
                  logits.data(), true);
  }
  // Logits of positions [from, to), one step each.
  std::vector<float> steps(SequenceState& s, int64_t from, int64_t to) {
    SequenceState* sp = &s;
    std::vector<float> out(static_cast<size_t>((to - from) * V()));
    for (int64_t t = from; t < to; ++t)
      model.step(std::span<const int32_t>(ids.data() + t, 1), std::span<SequenceState* const>(&sp, 1),
                 out.data() + (t - from) * V());
    return out;
  }
};

// Every buffer of every layer the same, shapes and values.
void expect_same_state(const SequenceState& got, const SequenceState& want) {
  ASSERT_EQ(got.n_layers(), want.n_layers());
  for (size_t l = 0; l < want.n_layers(); ++l) {
    const LayerState g = got.layer(l), w = want.layer(l);
    ASSERT_EQ(g.buffers.size(), w.buffers.size()) << "layer " << l;
    for (size_t b = 0; b < w.buffers.size(); ++b) {
      EXPECT_EQ(g.buffers[b].name, w.buffers[b].name);
      EXPECT_EQ(g.buffers[b].shape, w.buffers[b].shape) << "layer " << l << " " << w.buffers[b].name;
      EXPECT_EQ(g.buffers[b].data, w.buffers[b].data) << "layer " << l << " " << w.buffers[b].name;
    }
  }
}

NamedTensors read_all(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  NamedTensors r;
  for (const auto& n : f.names()) r.emplace_back(n, f.get(n));
  return r;
}

TEST(State, SavedAndRestoredContinuesIdentically) {
  Golden g;
  test::TempDir dir;
  for (int64_t k : {1, 20}) {
    SCOPED_TRACE("prefill of " + std::to_string(k));
    SequenceState original = g.model.new_state();
    g.prefill(original, k);
    const std::string path = dir.file("state.safetensors");
    save_safetensors(path, state_to_tensors(original));

    // Restored into a fresh state, and into one that already holds a longer, different history.
    SequenceState fresh = g.model.new_state(), used = g.model.new_state();
    g.prefill(used, 30);
    for (SequenceState* restored : {&fresh, &used}) {
      state_from_tensors(*restored, read_all(path), path);
      EXPECT_EQ(restored->n_tokens, k);
      EXPECT_EQ(restored->bytes(), original.bytes());
      expect_same_state(*restored, original);
    }
    EXPECT_EQ(fresh.layer(2)["kv_k"].shape[0], k) << "the MHA layer's KV cache holds the prefill";
    const std::vector<float> want = g.steps(original, k, k + 12);
    EXPECT_EQ(g.steps(fresh, k, k + 12), want);
    EXPECT_EQ(g.steps(used, k, k + 12), want);
  }
}

TEST(State, MalformedStateTensorsAreRefused) {
  Golden g;
  SequenceState s = g.model.new_state();
  g.prefill(s, 9);
  const NamedTensors good = state_to_tensors(s);
  // A copy of the good tensors (sharing their data, which no edit writes) after `edit`.
  auto edited = [&](auto&& edit) {
    NamedTensors t = good;
    edit(t);
    return t;
  };
  auto drop = [](NamedTensors& t, const std::string& name) {
    std::erase_if(t, [&](auto& p) { return p.first == name; });
  };
  auto set = [](NamedTensors& t, const std::string& name, Tensor v) {
    for (auto& [n, x] : t)
      if (n == name) x = v;
  };
  auto i64 = [](int64_t v) {
    Tensor t = Tensor::zeros(DType::I64, {1});
    t.ptr<int64_t>()[0] = v;
    return t;
  };
  const std::string ssm = "layers.0.ssm", kv_k = "layers.2.kv_k", kv_v = "layers.2.kv_v";
  struct Case {
    std::string what;
    NamedTensors tensors;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"no n_tokens", edited([&](NamedTensors& t) { drop(t, "n_tokens"); }), {"'n_tokens'"}},
      {"n_tokens not I64",
       edited([&](NamedTensors& t) { set(t, "n_tokens", Tensor::zeros(DType::F32, {1})); }),
       {"'n_tokens'", "I64"}},
      {"negative n_tokens", edited([&](NamedTensors& t) { set(t, "n_tokens", i64(-3)); }), {"'n_tokens'", "negative"}},
      {"a buffer missing", edited([&](NamedTensors& t) { drop(t, ssm); }), {"missing state tensor '" + ssm + "'"}},
      {"a buffer of the wrong shape",
       edited([&](NamedTensors& t) {
         set(t, ssm, Tensor::zeros(DType::F32, {8, 16, 31}));
       }),
       {"'" + ssm + "'", "[8, 16, 31]", "expected [8, 16, 32]"}},
      {"a buffer of the wrong rank",
       edited([&](NamedTensors& t) { set(t, ssm, Tensor::zeros(DType::F32, {8 * 16 * 32})); }),
       {"'" + ssm + "'", "expected [8, 16, 32]"}},
      {"a buffer of the wrong dtype",
       edited([&](NamedTensors& t) {
         set(t, ssm, Tensor::zeros(DType::F64, {8, 16, 32}));
       }),
       {"'" + ssm + "'", "F32"}},
      {"a KV cache of the wrong width",
       edited([&](NamedTensors& t) {
         set(t, kv_k, Tensor::zeros(DType::F32, {9, 33}));
       }),
       {"'" + kv_k + "'", "[9, 33]"}},
      {"k and v caches of different lengths",
       edited([&](NamedTensors& t) {
         set(t, kv_v, Tensor::zeros(DType::F32, {12, 32}));
       }),
       {"'" + kv_v + "'", "12"}},
      // A KV cache holds exactly the n_tokens positions the sequence consumed (9 here).
      {"KV caches shorter than n_tokens",
       edited([&](NamedTensors& t) {
         set(t, kv_k, Tensor::zeros(DType::F32, {5, 32}));
         set(t, kv_v, Tensor::zeros(DType::F32, {5, 32}));
       }),
       {"'" + kv_k + "'", "[5, 32]"}},
      {"KV caches longer than n_tokens",
       edited([&](NamedTensors& t) {
         set(t, kv_k, Tensor::zeros(DType::F32, {12, 32}));
         set(t, kv_v, Tensor::zeros(DType::F32, {12, 32}));
       }),
       {"'" + kv_k + "'", "[12, 32]"}},
      {"n_tokens beyond the KV caches", edited([&](NamedTensors& t) { set(t, "n_tokens", i64(12)); }),
       {"'" + kv_k + "'", "[9, 32]"}},
      {"an extra tensor",
       edited([&](NamedTensors& t) { t.emplace_back("layers.9.ssm", Tensor::zeros(DType::F32, {1})); }),
       {"'layers.9.ssm'", "not used"}},
      {"a tensor twice", edited([&](NamedTensors& t) { t.push_back(t.back()); }), {"twice"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    SequenceState target = g.model.new_state();
    g.prefill(target, 4);
    const SequenceState before = target;
    std::vector<std::string> parts = c.message;
    parts.push_back("state.safetensors");
    test::expect_error([&] { state_from_tensors(target, c.tensors, "state.safetensors"); }, parts);
    EXPECT_EQ(target.n_tokens, before.n_tokens) << "a refused restore leaves the state as it was";
    expect_same_state(target, before);
  }
  SequenceState ok = g.model.new_state();
  EXPECT_NO_THROW(state_from_tensors(ok, edited([](NamedTensors&) {}), "state.safetensors"));
}

}  // namespace
}  // namespace m3
