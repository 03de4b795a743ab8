// libFuzzer harness: a training token file (train/token_file.h) read and validated, then cut into
// rows as `m3 train` does.
#include <cstdint>

#include "fuzz_input.h"
#include "train/token_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const m3::fuzz::MemFile file(data, size);
  m3::fuzz::expect_only_m3_errors([&] {
    const m3::train::TokenData d = m3::train::read_token_file(file.path());
    constexpr int64_t L = 16;  // rows of --seq-len 16, as many as the stream holds (trainer.cpp)
    const int64_t n_rows = int64_t(d.tokens.size()) / L;
    if (n_rows >= 1) (void)m3::train::make_rows(d, m3::train::epoch_order(n_rows, 1, 0), L);
  });
  return 0;
}
