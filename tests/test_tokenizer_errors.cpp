// Malformed tokenizer.json files must give a clear m3::Error, never a crash or another exception.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

#include "m3/error.h"
#include "m3/tokenizer.h"

namespace {

using Json = nlohmann::json;

// A small valid byte-level BPE tokenizer: "a"+"b" -> "ab".
Json valid_tokenizer() {
  return Json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 4, "content": "<eos>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
        "pair": [], "special_tokens": {"<eos>": {"id": "<eos>", "ids": [4], "tokens": ["<eos>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": [["a", "b"]]}
  })");
}

// Expects loading `j` to throw an m3::Error whose message contains `needle`.
void expect_error(const std::string& text, const std::string& needle) {
  try {
    m3::Tokenizer::from_json(text, "test.json");
    FAIL() << "no error; expected one mentioning '" << needle << "'";
  } catch (const m3::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << "message: " << e.what();
  }
}

void expect_error(const Json& j, const std::string& needle) { expect_error(j.dump(), needle); }

TEST(TokenizerErrors, ValidBaseLoads) {
  const m3::Tokenizer t = m3::Tokenizer::from_json(valid_tokenizer().dump());
  EXPECT_EQ(t.encode("ab a"), (std::vector<int32_t>{2, 3, 0, 4}));
  EXPECT_EQ(t.decode(std::vector<int32_t>{2, 3, 0, 4}), "ab a");
  EXPECT_EQ(t.eos_id(), 4);
  EXPECT_EQ(t.vocab_size(), 5);
}

TEST(TokenizerErrors, BadJson) {
  expect_error(std::string("{\"model\": "), "invalid JSON");
  expect_error(std::string(""), "invalid JSON");
  expect_error(std::string("[1, 2]"), "expected a JSON object");
}

TEST(TokenizerErrors, MissingOrWrongModel) {
  Json j = valid_tokenizer();
  j.erase("model");
  expect_error(j, "model: missing");
  j = valid_tokenizer();
  j["model"]["type"] = "Unigram";
  expect_error(j, "unsupported model type 'Unigram'");
  j = valid_tokenizer();
  j["model"].erase("vocab");
  expect_error(j, "model.vocab: missing");
  j = valid_tokenizer();
  j["model"]["vocab"] = Json::array();
  expect_error(j, "model.vocab: expected an object");
  j = valid_tokenizer();
  j["model"]["vocab"]["c"] = "seven";
  expect_error(j, "model.vocab[\"c\"]: expected a token id");
  j = valid_tokenizer();
  j["model"]["vocab"]["c"] = -3;
  expect_error(j, "token id -3 is outside [0, 4194304)");
  j = valid_tokenizer();
  j["model"]["dropout"] = 0.1;
  expect_error(j, "dropout");
}

TEST(TokenizerErrors, BadMerges) {
  Json j = valid_tokenizer();
  j["model"]["merges"] = Json::array({Json::array({"a", "zz"})});
  expect_error(j, "model.merges[0]: token 'zz' is not in the vocabulary");
  j["model"]["merges"] = Json::array({"a Ġ"});
  expect_error(j, "merged token 'aĠ' is not in the vocabulary");
  j["model"]["merges"] = Json::array({"a b c"});
  expect_error(j, "model.merges[0]: expected \"left right\"");
  j["model"]["merges"] = Json::array({42});
  expect_error(j, "model.merges[0]");
  j["model"]["merges"] = "a b";
  expect_error(j, "model.merges: expected an array");
  j["model"]["merges"] = Json::array({"a b"});  // the legacy string form is fine
  EXPECT_NO_THROW(m3::Tokenizer::from_json(j.dump()));
}

TEST(TokenizerErrors, UnknownComponentTypes) {
  for (const char* key : {"normalizer", "pre_tokenizer", "decoder", "post_processor"}) {
    Json j = valid_tokenizer();
    j[key] = {{"type", "NoSuchThing"}};
    expect_error(j, std::string(key) + ": unsupported");
    j[key] = {{"kind", "x"}};
    expect_error(j, std::string(key) + ".type: missing");
  }
  Json j = valid_tokenizer();
  j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Bogus"}};
  expect_error(j, "pre_tokenizer.pretokenizers[1]: unsupported pre_tokenizer type 'Bogus'");
}

TEST(TokenizerErrors, BadRegex) {
  Json j = valid_tokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  expect_error(j, "invalid regex '(unclosed'");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\p{NoSuchProperty}"}};
  expect_error(j, "invalid regex");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}};
  expect_error(j, "expected {\"String\": ...} or {\"Regex\": ...}");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", " "}};
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_error(j, "unknown split behavior 'Sideways'");
  j = valid_tokenizer();
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "[a-"}}}, {"content", "x"}};
  expect_error(j, "invalid regex");
}

TEST(TokenizerErrors, BadAddedTokensAndTemplate) {
  Json j = valid_tokenizer();
  j["added_tokens"] = {{"content", "x"}};
  expect_error(j, "added_tokens");
  j = valid_tokenizer();
  j["added_tokens"][0].erase("content");
  expect_error(j, "added_tokens[0].content: missing");
  j = valid_tokenizer();
  j["post_processor"]["single"][1]["SpecialToken"]["id"] = "<nope>";
  expect_error(j, "special token '<nope>' is not listed");
  j = valid_tokenizer();
  j["post_processor"]["single"] = Json::array({{{"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}}});
  expect_error(j, "no $A sequence");
  j = valid_tokenizer();
  j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}};
  expect_error(j, "decoder.content: expected a single character");
  j = valid_tokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "__"}, {"prepend_scheme", "always"}};
  expect_error(j, "pre_tokenizer.replacement: expected a single character");
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}};
  expect_error(j, "prepend_scheme");
}

TEST(TokenizerErrors, MissingFiles) {
  EXPECT_THROW(m3::Tokenizer::load("/nonexistent/dir"), m3::Error);
  EXPECT_THROW(m3::Tokenizer::load(std::string(M3_TESTDATA_DIR) + "/tokenizer/no_such.json"), m3::Error);
}

TEST(TokenizerErrors, UnknownIdsAreSkippedOnDecode) {
  const m3::Tokenizer t = m3::Tokenizer::from_json(valid_tokenizer().dump());
  EXPECT_EQ(t.decode(std::vector<int32_t>{-1, 0, 99999, 1, 7}), "ab");
}

// Random byte edits of a valid file: each either loads (and then encodes/decodes without
// trouble) or throws m3::Error; nothing else may escape.
TEST(TokenizerErrors, MutatedFilesNeverCrash) {
  const std::string base = valid_tokenizer().dump();
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\",:0123456789abnt\\ -ĠÿAB";
  int loaded = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0: s[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: s.erase(pos, 1 + rng() % 4); break;
        default: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    try {
      const m3::Tokenizer t = m3::Tokenizer::from_json(s);
      const auto ids = t.encode("ab  ba\xff <eos>");
      (void)t.decode(ids, false);
      ++loaded;
    } catch (const m3::Error&) {
    }
  }
  EXPECT_GT(loaded, 0);
}

}  // namespace
