// m3::Tokenizer against the Hugging Face tokenizers library: for each tokenizer.json under
// tests/data/tokenizer (built by scripts/gen_tokenizer_testdata.py), the ids and decoded text
// the library produced for a corpus of hard strings must be reproduced exactly.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "m3/tokenizer.h"

namespace {

using Json = nlohmann::json;

const char* const kTokenizers[] = {"neox",     "llama3",       "sp_bpe",        "metaspace",
                                   "mixed",    "gpt2",         "v_removed",     "v_invert",
                                   "v_contiguous", "v_merged_next", "v_merged_prev", "v_qwen2", "v_bytelevel_norm", "edge"};

std::string data_path(const std::string& name) { return std::string(M3_TESTDATA_DIR) + "/tokenizer/" + name; }

Json load_cases(const std::string& name) {
  std::ifstream in(data_path(name + ".cases.json"));
  EXPECT_TRUE(in.good()) << "missing " << data_path(name + ".cases.json");
  return Json::parse(in);
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::ostringstream ss;
  for (size_t i = 0; i < ids.size(); ++i) ss << (i ? " " : "") << ids[i];
  return ss.str();
}

// The text as a JSON string literal, so that control characters show in failure messages.
std::string shown(const std::string& s) { return Json(s).dump(-1, ' ', true, Json::error_handler_t::replace); }

class TokenizerOracle : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerOracle, EncodeMatchesLibrary) {
  const std::string name = GetParam();
  const m3::Tokenizer tok = m3::Tokenizer::load(data_path(name + ".json"));
  const Json cases = load_cases(name);
  int failures = 0;
  for (const Json& c : cases["cases"]) {
    const std::string text = c["text"];
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text);
    EXPECT_EQ(ids_str(got), ids_str(expected)) << name << " text " << shown(text);
    const auto expected_plain = c["ids_no_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids_str(tok.encode(text, false)), ids_str(expected_plain)) << name << " text " << shown(text);
    if (got != expected && ++failures > 10) FAIL() << "too many mismatches";
  }
}

TEST_P(TokenizerOracle, DecodeMatchesLibrary) {
  const std::string name = GetParam();
  const m3::Tokenizer tok = m3::Tokenizer::load(data_path(name + ".json"));
  const Json cases = load_cases(name);
  for (const Json& c : cases["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(shown(tok.decode(ids, true)), shown(c["decoded"])) << name << " text " << shown(c["text"]);
    EXPECT_EQ(shown(tok.decode(ids, false)), shown(c["decoded_keep_special"])) << name << " text " << shown(c["text"]);
  }
}

// Invalid UTF-8 is repaired (each maximal ill-formed subsequence -> U+FFFD) and then encoded
// like the library encodes the repaired string.
TEST_P(TokenizerOracle, InvalidUtf8EncodesAsReplacementChar) {
  const std::string name = GetParam();
  const m3::Tokenizer tok = m3::Tokenizer::load(data_path(name + ".json"));
  const Json cases = load_cases(name);
  for (const Json& c : cases["invalid_utf8"]) {
    const std::string hex = c["hex"];
    std::string bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    EXPECT_EQ(ids_str(tok.encode(bytes)), ids_str(c["ids"].get<std::vector<int32_t>>())) << name << " bytes " << hex;
  }
}

// The StreamDecoder's pieces concatenate to the full decode.
TEST_P(TokenizerOracle, StreamDecodeEqualsDecode) {
  const std::string name = GetParam();
  const m3::Tokenizer tok = m3::Tokenizer::load(data_path(name + ".json"));
  const Json cases = load_cases(name);
  for (const Json& c : cases["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    m3::StreamDecoder stream(tok);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    out += stream.flush();
    EXPECT_EQ(shown(out), shown(c["decoded"])) << name << " text " << shown(c["text"]);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerOracle, ::testing::ValuesIn(kTokenizers),
                         [](const auto& param_info) { return std::string(param_info.param); });

// Byte-level tokenizers without a normalizer are lossless: decode(encode(x)) == x.
TEST(TokenizerRoundTrip, ByteLevelIsLossless) {
  for (const char* name : {"llama3", "gpt2", "v_qwen2"}) {
    const m3::Tokenizer tok = m3::Tokenizer::load(data_path(std::string(name) + ".json"));
    const Json cases = load_cases(name);
    for (const Json& c : cases["cases"]) {
      const std::string text = c["text"];
      // gpt2 adds a prefix space; v_qwen2 normalizes to NFC: compare where the library also round-trips.
      if (c["decoded"] != c["text"]) continue;
      EXPECT_EQ(shown(tok.decode(tok.encode(text, false))), shown(text)) << name;
    }
  }
  const m3::Tokenizer llama = m3::Tokenizer::load(data_path("llama3.json"));
  const Json llama_cases = load_cases("llama3");
  for (const Json& c : llama_cases["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(shown(llama.decode(llama.encode(text, false), false)), shown(text));
  }
}

}  // namespace
