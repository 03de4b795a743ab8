// Tokenizer behaviour beyond the oracle corpus: tokenizer_config.json, streaming, huge inputs,
// the BPE trainer, and the m3 tokenize / detokenize / tokenizer train commands.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "m3/error.h"
#include "m3/tokenizer.h"
#include "temp_dir.h"

namespace {

namespace fs = std::filesystem;

std::string data_path(const std::string& name) { return std::string(M3_TESTDATA_DIR) + "/tokenizer/" + name; }

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << cmd;
  return out;
}

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s + "\n";
}

TEST(TokenizerConfig, BosEosAndChatTemplateFromConfig) {
  const m3::test::TempDir tmp;  // unique, removed when the test ends
  const fs::path dir = tmp.path();
  fs::copy_file(data_path("llama3.json"), dir / "tokenizer.json");
  write(dir / "tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "special": true},
    "eos_token": "<|eot_id|>",
    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ messages }}"}]
  })");
  const m3::Tokenizer t = m3::Tokenizer::load(dir.string());
  EXPECT_EQ(t.bos_id(), t.token_to_id("<|begin_of_text|>"));
  EXPECT_EQ(t.eos_id(), t.token_to_id("<|eot_id|>"));
  EXPECT_EQ(t.chat_template(), "{{ messages }}");
  EXPECT_TRUE(t.is_special(*t.eos_id()));
  EXPECT_FALSE(t.is_special(*t.token_to_id("a")));

  write(dir / "tokenizer_config.json", R"({"eos_token": "<|no_such|>"})");
  EXPECT_THROW(m3::Tokenizer::load(dir.string()), m3::Error);
}

TEST(TokenizerConfig, BosGuessedFromTemplateWithoutConfig) {
  const m3::Tokenizer t = m3::Tokenizer::load(data_path("sp_bpe.json"));
  EXPECT_EQ(t.bos_id(), t.token_to_id("<s>"));
  EXPECT_EQ(t.chat_template(), "");
}

TEST(TokenizerStream, HoldsIncompleteCharacters) {
  const m3::Tokenizer t = m3::Tokenizer::load(data_path("sp_bpe.json"));
  // sp_bpe spells rare characters with <0xXX> byte tokens.
  const auto ids = t.encode("🤖!", false);
  ASSERT_GE(ids.size(), 4u);
  m3::StreamDecoder s(t);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(s.push(id));
  for (const std::string& p : pieces) EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "partial character released";
  std::string all;
  for (const std::string& p : pieces) all += p;
  all += s.flush();
  EXPECT_EQ(all, t.decode(ids));
}

TEST(TokenizerStream, FlushReleasesInvalidBytes) {
  const m3::Tokenizer t = m3::Tokenizer::load(data_path("sp_bpe.json"));
  m3::StreamDecoder s(t);
  const auto lead = t.token_to_id("<0xE2>");
  ASSERT_TRUE(lead.has_value());
  std::string out = s.push(*lead) + s.push(*lead);
  out += s.flush();
  EXPECT_EQ(out, t.decode(std::vector<int32_t>{*lead, *lead}));
}

// Generated ids are arbitrary: incomplete characters, special tokens anywhere, byte tokens
// that never form a character. Streaming them must still give decode()'s text.
TEST(TokenizerStream, RandomIdsStreamToTheFullDecode) {
  std::mt19937 rng(5);
  for (const char* name : {"sp_bpe", "metaspace", "llama3", "gpt2", "mixed", "edge"}) {
    const m3::Tokenizer t = m3::Tokenizer::load(data_path(std::string(name) + ".json"));
    std::uniform_int_distribution<int32_t> id(0, t.vocab_size() - 1);
    std::vector<int32_t> specials;
    for (int32_t x = 0; x < t.vocab_size(); ++x)
      if (t.is_special(x)) specials.push_back(x);
    ASSERT_FALSE(specials.empty()) << name;
    for (int sequence = 0; sequence < 300; ++sequence) {
      std::vector<int32_t> ids(1 + rng() % 40);
      for (int32_t& x : ids) x = rng() % 8 == 0 ? specials[rng() % specials.size()] : id(rng);
      for (bool skip_special : {true, false}) {
        m3::StreamDecoder s(t, skip_special);
        std::string out;
        for (int32_t x : ids) out += s.push(x);
        out += s.flush();
        ASSERT_EQ(out, t.decode(ids, skip_special)) << name << " ids " << ids_line(ids);
      }
    }
  }
}

TEST(TokenizerHugeInput, LongRunsDoNotOverflowTheRegexStack) {
  const m3::Tokenizer t = m3::Tokenizer::load(data_path("llama3.json"));
  for (const std::string& text : {std::string(1 << 20, ' '), std::string(1 << 20, 'x'),
                                  std::string(200000, '\n') + "end", std::string(300000, '7')}) {
    const auto ids = t.encode(text, false);
    EXPECT_EQ(t.decode(ids), text);
  }
}

// A BPE tokenizer without a pre-tokenizer (the whole text is one word) over a, b, c, x.
m3::Tokenizer whole_text_bpe(const std::string& merges) {
  return m3::Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "x": 3, "ab": 4,
      "bc": 5, "abc": 6, "aa": 7}, "merges": )" + merges + "}}");
}

std::vector<int32_t> repeated(const std::vector<int32_t>& ids, size_t times) {
  std::vector<int32_t> r;
  for (size_t i = 0; i < times; ++i) r.insert(r.end(), ids.begin(), ids.end());
  return r;
}

// A long word is merged in runs split where no merge can ever join two symbols; the runs must
// see merges that join them only through intermediate tokens (here b|c and a|b, which no merge
// joins directly), and the same result must come back from the caches.
TEST(TokenizerHugeInput, LongWordsMergeAcrossIndirectJoins) {
  for (const std::string merges : {R"(["a b", "ab c"])", R"(["b c", "a bc"])"}) {
    SCOPED_TRACE(merges);
    const m3::Tokenizer t = whole_text_bpe(merges);
    std::string text;
    for (size_t times : {size_t{1}, size_t{3}, size_t{500}}) {
      text.clear();
      for (size_t i = 0; i < times; ++i) text += "abcx";
      for (int pass = 0; pass < 2; ++pass) EXPECT_EQ(t.encode(text), repeated({6, 3}, times)) << times;
    }
  }
}

// Runs past the rescanning merge loop's limit go through the heap: lowest rank, then leftmost.
TEST(TokenizerHugeInput, LongRunsMergeLeftmostFirst) {
  const m3::Tokenizer t = whole_text_bpe(R"(["a a", "a b", "b c"])");
  EXPECT_EQ(t.encode(std::string(1000, 'a')), repeated({7}, 500));
  std::vector<int32_t> odd = repeated({7}, 500);
  odd.push_back(0);
  EXPECT_EQ(t.encode(std::string(1001, 'a')), odd);
  std::string abc;
  for (int i = 0; i < 300; ++i) abc += "abc";
  EXPECT_EQ(t.encode(abc), repeated({4, 2}, 300));  // "a b" outranks "b c"
}

TEST(TokenizerTrain, TrainedTokenizerLoadsAndRoundTrips) {
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("int value_" + std::to_string(i) + " = compute(value_" + std::to_string(i + 1) +
                    ");\n    return value;\n// Größe 数据 😀 done\n<|endoftext|>");
  }
  m3::BpeTrainerOptions opt;
  opt.vocab_size = 400;
  opt.special_tokens = {"<|endoftext|>"};
  opt.bos_token = "<|begin_of_text|>";
  const std::string json = m3::train_bpe_tokenizer_from_texts(texts, opt);
  const m3::Tokenizer t = m3::Tokenizer::from_json(json, "trained");
  EXPECT_EQ(t.vocab_size(), 400);
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), 0);
  EXPECT_EQ(t.bos_id(), 1);
  const std::string sample = "int value_7 = compute(value_8);\n// Größe 数据 😀 new ✨ text<|endoftext|>";
  const auto ids = t.encode(sample);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 0);  // special tokens are single ids, never merged into
  EXPECT_LT(ids.size(), sample.size() / 2);  // merges learned from the repeated text apply
  EXPECT_EQ(t.decode(ids, false), "<|begin_of_text|>" + sample);
  EXPECT_EQ(t.decode(ids), sample.substr(0, sample.size() - std::string("<|endoftext|>").size()));

  opt.vocab_size = 100;
  EXPECT_THROW(m3::train_bpe_tokenizer_from_texts(texts, opt), m3::Error);
}

TEST(TokenizerCli, TokenizeDetokenizeAndTrain) {
  const std::string m3 = std::string(M3_BINARY_DIR) + "/m3";
  const std::string tok = data_path("llama3.json");
  const m3::Tokenizer t = m3::Tokenizer::load(tok);
  const std::string text = "Hello, world! 123 ünïcode";
  EXPECT_EQ(run(m3 + " tokenize " + tok + " --text '" + text + "'"), ids_line(t.encode(text)));
  EXPECT_EQ(run(m3 + " tokenize " + tok + " --text '" + text + "' --no-special"), ids_line(t.encode(text, false)));

  const m3::test::TempDir tmp;
  const fs::path dir = tmp.path();
  write(dir / "in.txt", "line one\n\tline two  \n");
  EXPECT_EQ(run(m3 + " tokenize " + tok + " --file " + (dir / "in.txt").string()),
            ids_line(t.encode("line one\n\tline two  \n")));
  const std::string ids = ids_line(t.encode(text));
  EXPECT_EQ(run(m3 + " detokenize " + tok + " " + ids.substr(0, ids.size() - 1)), text + "\n");
  EXPECT_EQ(run(m3 + " detokenize " + tok + " --keep-special " + ids.substr(0, ids.size() - 1)),
            "<|begin_of_text|>" + text + "\n");

  std::string corpus;
  for (int i = 0; i < 300; ++i) corpus += "def f" + std::to_string(i) + "(x):\n    return x * " + std::to_string(i) + "\n";
  write(dir / "corpus.txt", corpus);
  run(m3 + " tokenizer train --vocab-size 300 --files " + (dir / "corpus.txt").string() + " --output " +
      (dir / "trained").string() + " --special-tokens '<|endoftext|>' --bos '<s>' --eos '<|endoftext|>'");
  const m3::Tokenizer trained = m3::Tokenizer::load((dir / "trained").string());
  EXPECT_EQ(trained.vocab_size(), 300);
  EXPECT_EQ(trained.eos_id(), trained.token_to_id("<|endoftext|>"));
  EXPECT_EQ(trained.decode(trained.encode(corpus)), corpus);

  EXPECT_NE(std::system((m3 + " tokenize /nonexistent --text x 2>/dev/null").c_str()), 0);
  EXPECT_NE(std::system((m3 + " detokenize " + tok + " 12 abc 2>/dev/null").c_str()), 0);
}

}  // namespace
