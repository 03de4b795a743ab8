// A golden checkpoint of ../shared/golden loaded with its input ids and reference logits, and the
// ways the tests run it: the whole batch packed in one forward call, one sequence prefilled for k
// tokens and then stepped token by token, runs of different lengths packed without padding, greedy
// generation.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "m3/error.h"
#include "m3/model.h"
#include "testing.h"

namespace m3::test {

struct GoldenRun {
  Model model;
  int64_t B = 0, L = 0, V = 0;  // batch, length, padded vocabulary
  std::vector<int32_t> ids;     // [B, L]
  std::vector<double> ref;      // logits_f64 (or logits when the folder has no float64 ones) [B, L, V]
};

// The values of an int64 tensor of token ids, copied out byte-wise (a safetensors data section is
// only byte-aligned).
inline std::vector<int32_t> token_ids(const Tensor& t) {
  check(t.dtype == DType::I64, std::string("token ids must be I64, found ") + dtype_name(t.dtype));
  std::vector<int32_t> r(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < r.size(); ++i) {
    int64_t v;
    std::memcpy(&v, static_cast<const char*>(t.data) + i * sizeof v, sizeof v);
    r[i] = int32_t(v);
  }
  return r;
}

// The golden folder at path `dir` (load_golden: ../shared/golden/`name`).
inline GoldenRun load_golden_at(const std::string& dir) {
  GoldenRun g{Model::load(dir), 0, 0, 0, {}, {}};
  auto f = SafetensorsFile::open(dir + "/golden.safetensors");
  Tensor ids = f.get("input_ids");
  g.B = ids.shape[0], g.L = ids.shape[1];
  g.ids = token_ids(ids);
  g.ref = to_f64(f.get(f.has("logits_f64") ? "logits_f64" : "logits"));
  g.V = g.model.config().vocab_padded();
  return g;
}

inline GoldenRun load_golden(const std::string& name) { return load_golden_at(golden(name)); }

// Logits of every position, the sequences of the batch packed in one forward call.
inline std::vector<float> packed_logits(GoldenRun& g) {
  std::vector<int64_t> cu;
  for (int64_t b = 0; b <= g.B; ++b) cu.push_back(b * g.L);
  std::vector<SequenceState> st;
  for (int64_t b = 0; b < g.B; ++b) st.push_back(g.model.new_state());
  std::vector<SequenceState*> sp;
  for (auto& s : st) sp.push_back(&s);
  std::vector<float> out(static_cast<size_t>(g.B * g.L * g.V));
  g.model.forward(g.ids, cu, sp, out.data());
  return out;
}

// Sequence b: prefill of the first k tokens, then one step per remaining token.
inline std::vector<float> prefill_then_step(GoldenRun& g, int64_t b, int64_t k) {
  std::vector<float> out(static_cast<size_t>(g.L * g.V));
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

// Runs of the given lengths cut from the golden ids (run i starts at flat index i·stride), packed
// in one forward call from fresh states, against each run alone: the same logits and final states.
inline void expect_packed_equals_separate(GoldenRun& g, const std::vector<int64_t>& lens, int64_t stride) {
  std::vector<int32_t> toks;
  std::vector<int64_t> cu = {0};
  for (size_t i = 0; i < lens.size(); ++i) {
    toks.insert(toks.end(), g.ids.begin() + int64_t(i) * stride, g.ids.begin() + int64_t(i) * stride + lens[i]);
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
    const int64_t c1[2] = {0, lens[i]};
    std::vector<float> alone(static_cast<size_t>(lens[i] * g.V));
    g.model.forward(std::span<const int32_t>(toks.data() + cu[i], size_t(lens[i])), c1,
                    std::span<SequenceState* const>(&one, 1), alone.data());
    const std::vector<float> part(packed.begin() + cu[i] * g.V, packed.begin() + cu[i + 1] * g.V);
    // Not bitwise: BLAS blocks a GEMM differently for different row counts; fp32 rounding only.
    EXPECT_LT(rel_err(part, alone), 1e-5) << "sequence " << i;
    ASSERT_EQ(s.bytes(), st[i].bytes()) << "sequence " << i;
    ASSERT_EQ(s.n_layers(), st[i].n_layers());
    for (size_t l = 0; l < s.n_layers(); ++l) {
      const LayerState want = s.layer(l), got = st[i].layer(l);
      ASSERT_EQ(got.buffers.size(), want.buffers.size());
      for (size_t k = 0; k < want.buffers.size(); ++k)
        EXPECT_LT(rel_err(got.buffers[k].data, want.buffers[k].data), 1e-5)
            << "sequence " << i << " layer " << l << " state " << want.buffers[k].name;
    }
  }
}

// The prompt followed by n greedy tokens (argmax over the vocabulary, padding columns excluded):
// the prompt through the parallel form, every new token through the recurrent one.
inline std::vector<int32_t> greedy_tokens(Model& m, std::vector<int32_t> ids, int64_t n) {
  const int64_t V = m.config().vocab_padded(), vocab = m.config().vocab_size;
  SequenceState s = m.new_state();
  SequenceState* sp = &s;
  std::vector<float> logits(static_cast<size_t>(V));
  const int64_t cu[2] = {0, int64_t(ids.size())};
  m.forward(ids, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
  for (int64_t i = 0; i < n; ++i) {
    ids.push_back(int32_t(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin()));
    if (i + 1 < n) m.step(std::span<const int32_t>(&ids.back(), 1), std::span<SequenceState* const>(&sp, 1), logits.data());
  }
  return ids;
}

// The greedy_prompt of the golden folder at path `dir` continued greedily (greedy_tokens) to the
// length of its greedy_out; and greedy_out, the reference's tokens.
inline std::pair<std::vector<int32_t>, std::vector<int32_t>> golden_greedy_at(Model& m, const std::string& dir) {
  auto f = SafetensorsFile::open(dir + "/golden.safetensors");
  const std::vector<int32_t> prompt = token_ids(f.get("greedy_prompt")), want = token_ids(f.get("greedy_out"));
  return {greedy_tokens(m, prompt, int64_t(want.size() - prompt.size())), want};
}

inline std::pair<std::vector<int32_t>, std::vector<int32_t>> golden_greedy(Model& m, const std::string& name) {
  return golden_greedy_at(m, golden(name));
}

}  // namespace m3::test
