// libFuzzer harness: a decode state file (safetensors, state_to_tensors' layout) restored into a
// state of a small hybrid model (Mamba-3 + MHA layers, so SSM, conv and KV buffers), which must
// then step as any state does.
#include <nlohmann/json.hpp>

#include <cstdlib>

#include "fuzz_input.h"
#include "m3/config.h"
#include "m3/model.h"
#include "m3/safetensors.h"
#include "m3/state.h"

namespace {

m3::Model& model() {
  static m3::Model m = m3::Model::init(
      m3::parse_model_config(nlohmann::json::parse(R"({"d_model": 16, "n_layer": 2, "vocab_size": 32,
        "ssm_cfg": {"layer": "Mamba3", "d_state": 8, "headdim": 8, "chunk_size": 4},
        "attn_layer_idx": [1], "attn_cfg": {"num_heads": 2, "head_dim": 8, "d_conv": 2}})"),
                             "fuzz model"),
      1);
  return m;
}

}  // namespace

// With M3_FUZZ_WRITE_STATE=PATH: writes the state after prefilling M3_FUZZ_PREFILL tokens to PATH
// and exits (scripts/fuzz_seeds.py's seeds).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("M3_FUZZ_WRITE_STATE");
  if (!path) return 0;
  const char* prefill = std::getenv("M3_FUZZ_PREFILL");
  const int64_t n = prefill ? std::atoll(prefill) : 0;
  m3::SequenceState s = model().new_state();
  if (n > 0) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) tokens[size_t(i)] = int32_t(i % 32);
    m3::SequenceState* sp = &s;
    const int64_t cu[2] = {0, n};
    std::vector<float> logits(size_t(model().config().vocab_padded()));
    model().forward(tokens, cu, std::span<m3::SequenceState* const>(&sp, 1), logits.data(), true);
  }
  m3::save_safetensors(path, m3::state_to_tensors(s));
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::SafetensorsFile f = m3::SafetensorsFile::open(file.path());
    std::vector<std::pair<std::string, m3::Tensor>> tensors;
    for (const std::string& name : f.names()) tensors.emplace_back(name, f.get(name));
    m3::SequenceState s = model().new_state();
    m3::state_from_tensors(s, tensors, file.path());
    m3::SequenceState* sp = &s;
    std::vector<float> logits(size_t(model().config().vocab_padded()));
    const int32_t token = 3;
    model().step(std::span<const int32_t>(&token, 1), std::span<m3::SequenceState* const>(&sp, 1), logits.data());
  });
  return 0;
}
