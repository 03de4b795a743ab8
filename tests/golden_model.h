// A golden checkpoint of ../shared/golden loaded with its input ids and reference logits, and the
// ways the tests run it: the whole batch packed in one forward call, one sequence prefilled for k
// tokens and then stepped token by token, greedy generation.
#pragma once
#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "m3/model.h"
#include "testing.h"

namespace m3::test {

struct GoldenRun {
  Model model;
  int64_t B = 0, L = 0, V = 0;  // batch, length, padded vocabulary
  std::vector<int32_t> ids;     // [B, L]
  std::vector<double> ref;      // logits_f64 (or logits when the folder has no float64 ones) [B, L, V]
};

inline GoldenRun load_golden(const std::string& name) {
  GoldenRun g{Model::load(golden(name)), 0, 0, 0, {}, {}};
  auto f = SafetensorsFile::open(golden(name + "/golden.safetensors"));
  Tensor ids = f.get("input_ids");
  g.B = ids.shape[0], g.L = ids.shape[1];
  for (int64_t i = 0; i < ids.numel(); ++i) g.ids.push_back(int32_t(ids.ptr<int64_t>()[i]));
  g.ref = to_f64(f.get(f.has("logits_f64") ? "logits_f64" : "logits"));
  g.V = g.model.config().vocab_padded();
  return g;
}

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

}  // namespace m3::test
