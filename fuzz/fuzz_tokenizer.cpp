// libFuzzer harness: tokenizer.json + tokenizer_config.json loaded as `m3 tokenize` loads them,
// then text encoded and decoded (whole and streamed; the two must agree), and the input's bytes
// decoded as arbitrary ids. Input: tokenizer.json, kSep, tokenizer_config.json, kSep, text (a
// missing part is empty; an empty tokenizer_config.json part means there is none).
#include <cstring>

#include "fuzz_input.h"
#include "m3/tokenizer.h"

namespace {
constexpr std::string_view kSep = "\n#m3#\n";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace m3::fuzz;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = split(input, kSep);
  const auto more = split(parts.second, kSep);
  const std::string_view tokenizer_json = parts.first, config_json = more.first, text = more.second;
  const std::string dir = scratch_dir();
  write_file(dir + "/tokenizer.json", tokenizer_json);
  std::remove((dir + "/tokenizer_config.json").c_str());
  if (!config_json.empty()) write_file(dir + "/tokenizer_config.json", config_json);
  expect_only_m3_errors([&] {
    const m3::Tokenizer tok = m3::Tokenizer::load(dir);
    const std::vector<int32_t> ids = tok.encode(text, true);
    for (const bool skip : {true, false}) {
      const std::string whole = tok.decode(ids, skip);
      m3::StreamDecoder stream(tok, skip);
      std::string streamed;
      for (const int32_t id : ids) streamed += stream.push(id);
      streamed += stream.flush();
      if (streamed != whole) std::abort();  // StreamDecoder's promise: the same text as decode()
    }
    // Any ids at all, in range or not: decode skips unknown ones.
    std::vector<int32_t> raw(text.size() / 4);
    if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
    (void)tok.decode(raw, false);
    for (const int32_t id : raw) (void)tok.id_to_token(id);
  });
  return 0;
}
