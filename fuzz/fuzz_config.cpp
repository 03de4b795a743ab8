// libFuzzer harness: config.json in either layout (reference or Hugging Face), read as `m3 info`
// and Model::load read it; a parsed reference config is written back and parsed again.
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "io/files.h"
#include "io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::CheckpointLayout layout = m3::load_checkpoint_layout(file.path());
    nlohmann::json again;
    try {
      again = m3::model_config_to_json(layout.config);
    } catch (const m3::Error&) {
      return;  // a Hugging Face config the reference format cannot express
    }
    const m3::ModelConfig c = m3::parse_model_config(again, "round trip");
    if (m3::model_config_to_json(c) != again) std::abort();  // what was written must read back the same
  });
  return 0;
}
