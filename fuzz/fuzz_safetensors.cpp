// libFuzzer harness: a safetensors file (header and data), opened and every tensor read and
// converted as a checkpoint load does.
#include "fuzz_input.h"
#include "m3/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::SafetensorsFile f = m3::SafetensorsFile::open(file.path());
    for (const std::string& name : f.names()) {
      const m3::Tensor t = f.get(name);
      if (t.numel() <= (1 << 20)) (void)t.convert(m3::DType::F32);
    }
  });
  return 0;
}
