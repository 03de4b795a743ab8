// libFuzzer harness: the input file of `m3 logits` (input_ids in a safetensors file).
#include "fuzz_input.h"
#include "io/input_ids.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::InputIds ids = m3::read_input_ids(m3::SafetensorsFile::open(file.path()), 1000);
    if (int64_t(ids.tokens.size()) != ids.batch * ids.len) std::abort();
  });
  return 0;
}
