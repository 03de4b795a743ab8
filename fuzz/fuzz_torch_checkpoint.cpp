// libFuzzer harness: a pytorch_model.bin (PyTorch's zip + pickle) read by the restricted reader
// (io/torch_checkpoint.h), every tensor it returns read to its end. Anything but m3::Error —
// and any executed global — is a finding.
#include <cstdint>

#include "fuzz_input.h"
#include "io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    for (const auto& [name, t] : m3::read_torch_checkpoint(file.path())) (void)t.to_f32();
  });
  return 0;
}
