// Whole-model logits against the reference checkpoints in ../shared/golden (spec/model.md), and
// the prefill/step and packed-batch equivalences of spec/mamba3.md §5 and §7.
#include <gtest/gtest.h>

#include <numeric>

#include "m3/model.h"
#include "testing.h"

namespace m3 {
namespace {

using test::rel_err;

struct GoldenRun {
  Model model;
  int64_t B, L, V;
  std::vector<int32_t> ids;
  std::vector<double> ref;
};

GoldenRun load(const std::string& name) {
  GoldenRun g{Model::load(test::golden(name)), 0, 0, 0, {}, {}};
  auto f = SafetensorsFile::open(test::golden(name + "/golden.safetensors"));
  Tensor ids = f.get("input_ids");
  g.B = ids.shape[0], g.L = ids.shape[1];
  for (int64_t i = 0; i < ids.numel(); ++i) g.ids.push_back(int32_t(ids.ptr<int64_t>()[i]));
  g.ref = test::to_f64(f.get(f.has("logits_f64") ? "logits_f64" : "logits"));
  g.V = g.model.config().vocab_padded();
  return g;
}

// Logits of every position, the sequences of the batch packed in one forward call.
std::vector<float> packed_logits(GoldenRun& g) {
  std::vector<int64_t> cu;
  for (int64_t b = 0; b <= g.B; ++b) cu.push_back(b * g.L);
  std::vector<SequenceState> st;
  for (int64_t b = 0; b < g.B; ++b) st.push_back(g.model.new_state());
  std::vector<SequenceState*> sp;
  for (auto& s : st) sp.push_back(&s);
  std::vector<float> out(size_t(g.B * g.L * g.V));
  g.model.forward(g.ids, cu, sp, out.data());
  return out;
}

// Sequence b: prefill of the first k tokens, then one step per remaining token.
std::vector<float> prefill_then_step(GoldenRun& g, int64_t b, int64_t k) {
  std::vector<float> out(size_t(g.L * g.V));
  SequenceState s = g.model.new_state();
  SequenceState* sp = &s;
  const int32_t* seq = g.ids.data() + b * g.L;
  if (k > 0) {
    int64_t cu[2] = {0, k};
    g.model.forward(std::span<const int32_t>(seq, size_t(k)), cu, std::span<SequenceState* const>(&sp, 1), out.data());
  }
  for (int64_t t = k; t < g.L; ++t)
    g.model.step(std::span<const int32_t>(seq + t, 1), std::span<SequenceState* const>(&sp, 1), out.data() + t * g.V);
  return out;
}

TEST(ModelGolden, Mamba3SisoHybridLogits) {
  GoldenRun g = load("mamba3_siso_hybrid");
  EXPECT_LT(rel_err(packed_logits(g), g.ref), 1e-4);
}

TEST(ModelGolden, Mamba3MimoHybridLogits) {
  GoldenRun g = load("mamba3_mimo_hybrid");
  EXPECT_LT(rel_err(packed_logits(g), g.ref), 1e-4);
}

TEST(ModelGolden, Mamba3MimoHybridPrefillThenStep) {
  GoldenRun g = load("mamba3_mimo_hybrid");
  std::vector<float> full = packed_logits(g);
  for (int64_t k : {1, 7, 8, 9, 36}) {
    for (int64_t b = 0; b < g.B; ++b) {
      std::vector<float> ps = prefill_then_step(g, b, k);
      std::vector<float> ref(full.begin() + b * g.L * g.V, full.begin() + (b + 1) * g.L * g.V);
      EXPECT_LT(rel_err(ps, ref), 1e-4) << "k = " << k << ", sequence " << b;
    }
  }
}

TEST(ModelGolden, Mamba3SisoHybridPrefillThenStep) {
  GoldenRun g = load("mamba3_siso_hybrid");
  std::vector<float> full = packed_logits(g);
  for (int64_t k : {1, 15, 16, 17, 82}) {
    for (int64_t b = 0; b < g.B; ++b) {
      std::vector<float> ps = prefill_then_step(g, b, k);
      std::vector<float> ref(full.begin() + b * g.L * g.V, full.begin() + (b + 1) * g.L * g.V);
      EXPECT_LT(rel_err(ps, ref), 1e-4) << "k = " << k << ", sequence " << b;
    }
  }
}

TEST(ModelGolden, Mamba3SisoHybridPackedVarlenEqualsSeparate) {
  GoldenRun g = load("mamba3_siso_hybrid");
  // Three sequences of different lengths cut from the golden ids, packed without padding.
  const std::vector<int64_t> lens = {5, 40, 23};
  std::vector<int32_t> toks;
  std::vector<int64_t> cu = {0};
  for (size_t i = 0; i < lens.size(); ++i) {
    toks.insert(toks.end(), g.ids.begin() + int64_t(i) * 7, g.ids.begin() + int64_t(i) * 7 + lens[i]);
    cu.push_back(cu.back() + lens[i]);
  }
  std::vector<SequenceState> st(lens.size(), g.model.new_state());
  std::vector<SequenceState*> sp;
  for (auto& s : st) sp.push_back(&s);
  std::vector<float> packed(toks.size() * size_t(g.V));
  g.model.forward(toks, cu, sp, packed.data());
  for (size_t i = 0; i < lens.size(); ++i) {
    SequenceState s = g.model.new_state();
    SequenceState* one = &s;
    int64_t c1[2] = {0, lens[i]};
    std::vector<float> alone(size_t(lens[i] * g.V));
    g.model.forward(std::span<const int32_t>(toks.data() + cu[i], size_t(lens[i])), c1,
                    std::span<SequenceState* const>(&one, 1), alone.data());
    std::vector<float> part(packed.begin() + cu[i] * g.V, packed.begin() + cu[i + 1] * g.V);
    // Not bitwise: BLAS blocks a GEMM differently for different row counts; fp32 rounding only.
    EXPECT_LT(rel_err(part, alone), 1e-5) << "sequence " << i;
    EXPECT_EQ(s.bytes(), st[i].bytes());
    for (size_t l = 0; l < s.layers.size(); ++l)
      for (size_t k = 0; k < s.layers[l].buffers.size(); ++k)
        EXPECT_LT(rel_err(st[i].layers[l].buffers[k].data, s.layers[l].buffers[k].data), 1e-5)
            << "sequence " << i << " layer " << l << " state " << s.layers[l].buffers[k].name;
  }
}

}  // namespace
}  // namespace m3
