// The m3 command-line tool, run as a subprocess: logits of the golden hybrid, info, init then
// generate (deterministic in its seed, greedy equal to the library's argmax decode; text through
// a tokenizer.json or byte-level), and bad arguments, which must exit non-zero with a message
// and never crash.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "m3/model.h"
#include "m3/presets.h"
#include "m3/tokenizer.h"
#include "run_m3.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

using test::quote;
using test::Result;
using test::run_m3;

std::vector<int64_t> parse_ids(const std::string& s) {
  std::istringstream in(s);
  std::vector<int64_t> r;
  for (int64_t v; in >> v;) r.push_back(v);
  return r;
}

TEST(Cli, LogitsOfTheGoldenHybrid) {
  test::TempDir tmp;
  const std::string dir = test::golden("mamba3_siso_hybrid"), out = tmp.file("logits.safetensors");
  Result r = run_m3(
      "logits " + quote(dir) + " --input " + quote(dir + "/golden.safetensors") + " --output " + quote(out), tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  SafetensorsFile got = SafetensorsFile::open(out);
  SafetensorsFile golden = SafetensorsFile::open(dir + "/golden.safetensors");
  Tensor logits = got.get("logits");
  EXPECT_EQ(logits.dtype, DType::F32);
  EXPECT_EQ(logits.shape, golden.get("logits_f64").shape);
  EXPECT_LT(test::rel_err(test::to_f64(logits), test::to_f64(golden.get("logits_f64"))), 1e-4);
}

TEST(Cli, InfoListsLayersAndParameters) {
  test::TempDir tmp;
  const std::string dir = test::golden("mamba3_siso_hybrid");
  Result r = run_m3("info " + quote(dir), tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  // The parameter count straight from the file: every tensor but the tied lm_head copy.
  SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
  int64_t n = 0;
  for (const auto& name : f.names())
    if (name != "lm_head.weight") n += f.get(name).numel();
  EXPECT_NE(r.out.find("parameters: " + std::to_string(n) + " "), std::string::npos) << r.out;
  // Each layer's kind and options (the golden config: Mamba-3 SISO 8 heads of 16, d_state 32,
  // chunk 16; MHA 4/2 heads of 16, causal, no rotary, no biases; GatedMLP 128 everywhere).
  const std::string mamba3 =
      ": Mamba3 SISO heads 8x16 d_state 32 groups 1 rope_fraction 0.5 (8 angles) A_floor 0.0001 chunk 16 + GatedMLP "
      "hidden 128\n";
  for (const std::string& line : {"  layer  0" + mamba3, "  layer  1" + mamba3,
                                 std::string("  layer  2: MHA heads 4 kv_heads 2 head_dim 16 causal + GatedMLP hidden 128\n"),
                                 "  layer  3" + mamba3})
    EXPECT_NE(r.out.find(line), std::string::npos) << "missing '" << line << "' in:\n" << r.out;
  EXPECT_NE(r.out.find("KV cache"), std::string::npos) << r.out;
}

// A checkpoint with every Mamba-3 and MHA option set away from its default: info names them all.
TEST(Cli, InfoNamesEveryOption) {
  test::TempDir tmp;
  const std::string dir = tmp.file("options");
  const nlohmann::json config = {
      {"d_model", 16}, {"n_layer", 2}, {"vocab_size", 32},
      {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 12}, {"headdim", 4}, {"ngroups", 2}, {"rope_fraction", 1.0},
                   {"A_floor", 0.5}, {"is_outproj_norm", true}, {"is_mimo", true}, {"mimo_rank", 2}, {"chunk_size", 5}}},
      {"attn_layer_idx", {1}},
      {"attn_cfg", {{"num_heads", 4}, {"num_heads_kv", 1}, {"head_dim", 8}, {"causal", true}, {"softmax_scale", 0.25},
                    {"rotary_emb_dim", 4}, {"rotary_emb_base", 500}, {"rotary_emb_interleaved", true}, {"d_conv", 3},
                    {"mlp_dim", 512}, {"out_proj_bias", false}}}};
  Model::init(parse_model_config(config, "test config"), 1).save(dir);
  Result r = run_m3("info " + quote(dir), tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* line :
       {"  layer  0: Mamba3 MIMO rank 2 heads 8x4 d_state 12 groups 2 rope_fraction 1.0 (6 angles) A_floor 0.5 chunk 5 "
        "outproj_norm\n",
        "  layer  1: MHA heads 4 kv_heads 1 head_dim 8 causal softmax_scale 0.25 rotary 4 base 500 interleaved d_conv 3 "
        "mlp_dim 512 qkv_proj_bias\n"})
    EXPECT_NE(r.out.find(line), std::string::npos) << "missing '" << line << "' in:\n" << r.out;
}

TEST(Cli, InitThenGenerate) {
  test::TempDir tmp;
  const std::string dir = tmp.file("tiny");
  Result init = run_m3("init --preset mamba3-tiny --seed 3 " + quote(dir), tmp);
  ASSERT_EQ(init.code, 0) << init.err;
  const std::string prompt = " --prompt-ids '1 2 3 200' -n 5 --print-ids";
  // Sampled: the same seed gives the same tokens.
  const std::string sampled = "generate " + quote(dir) + prompt + " --top-k 0 --temperature 1.5 --seed 42";
  Result a = run_m3(sampled, tmp), b = run_m3(sampled, tmp);
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  const std::vector<int64_t> ids = parse_ids(a.out);
  EXPECT_EQ(ids.size(), 5u) << a.out;
  for (int64_t id : ids) EXPECT_TRUE(id >= 0 && id < 256) << id;
  // Greedy (the default): the tokens the library's own prefill + argmax steps give.
  Result g = run_m3("generate " + quote(dir) + prompt, tmp);
  ASSERT_EQ(g.code, 0) << g.err;
  Model m = Model::load(dir);
  std::vector<int32_t> tokens = {1, 2, 3, 200};
  SequenceState s = m.new_state();
  SequenceState* sp = &s;
  std::vector<float> logits(static_cast<size_t>(m.config().vocab_padded()));
  int64_t cu[2] = {0, 4};
  m.forward(tokens, cu, std::span<SequenceState* const>(&sp, 1), logits.data(), true);
  std::vector<int64_t> want;
  for (int i = 0; i < 5; ++i) {
    const auto best = std::max_element(logits.begin(), logits.begin() + m.config().vocab_size) - logits.begin();
    want.push_back(best);
    const int32_t next = int32_t(best);
    m.step(std::span<const int32_t>(&next, 1), std::span<SequenceState* const>(&sp, 1), logits.data());
  }
  EXPECT_EQ(parse_ids(g.out), want);
}

std::string ids_arg(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return quote(s);
}

std::vector<int32_t> to_ids32(const std::string& printed) {
  std::vector<int32_t> r;
  for (int64_t id : parse_ids(printed)) r.push_back(int32_t(id));
  return r;
}

const std::string kSpBpe = std::string(M3_TESTDATA_DIR) + "/tokenizer/sp_bpe.json";

// mamba3-tiny with sp_bpe's vocabulary (it spells rare characters with <0xXX> byte tokens, so
// random ids often leave a character incomplete) and that tokenizer beside it.
std::string tiny_model_with_tokenizer(const test::TempDir& tmp, const Tokenizer& tok) {
  const std::string dir = tmp.file("tiny_sp");
  ModelConfig c = preset_config("mamba3-tiny");
  c.vocab_size = tok.vocab_size();
  Model::init(c, 3).save(dir);
  std::filesystem::copy_file(kSpBpe, dir + "/tokenizer.json");
  return dir;
}

// The index of the first of ids[at...] that is not among the ids before it (ids.size() if none):
// made the EOS token, generation must stop right there.
size_t first_new_token_after(const std::vector<int32_t>& ids, size_t at) {
  while (at < ids.size() && std::find(ids.begin(), ids.begin() + at, ids[at]) != ids.begin() + at) ++at;
  return at;
}

TEST(Cli, GenerateStreamsTextThroughTheTokenizer) {
  test::TempDir tmp;
  const Tokenizer tok = Tokenizer::load(kSpBpe);
  const std::string dir = tiny_model_with_tokenizer(tmp, tok);
  const std::string prompt = "Hello wörld 🤖 {";
  const std::string sampled = " -n 48 --top-k 0 --temperature 1.0 --seed 7";
  const std::string gen = "generate " + quote(dir) + " --prompt " + quote(prompt) + sampled;
  Result ids_run = run_m3(gen + " --ignore-eos --print-ids", tmp);
  ASSERT_EQ(ids_run.code, 0) << ids_run.err;
  const std::vector<int32_t> ids = to_ids32(ids_run.out);
  ASSERT_EQ(ids.size(), 48u) << ids_run.out;
  // The printed text is the decode of the generated ids, characters whole.
  Result text_run = run_m3(gen + " --ignore-eos", tmp);
  ASSERT_EQ(text_run.code, 0) << text_run.err;
  const std::string want = tok.decode(ids);
  EXPECT_EQ(text_run.out, want);
  EXPECT_TRUE(std::any_of(want.begin(), want.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
      << "no multi-byte character in " << want;

  // The prompt is encoded with the post-processor's BOS, or without it under --no-special.
  const std::vector<int32_t> with_bos = tok.encode(prompt), plain = tok.encode(prompt, false);
  const int32_t bos = tok.bos_id().value();
  ASSERT_EQ(with_bos.front(), bos);
  ASSERT_NE(plain.front(), bos);
  const std::string by_ids = "generate " + quote(dir) + sampled + " --ignore-eos --print-ids --prompt-ids ";
  EXPECT_EQ(run_m3(by_ids + ids_arg(with_bos), tmp).out, ids_run.out);
  EXPECT_EQ(run_m3(by_ids + ids_arg(plain), tmp).out, run_m3(gen + " --ignore-eos --print-ids --no-special", tmp).out);

  // Generation stops after the EOS token of tokenizer_config.json.
  const size_t stop = first_new_token_after(ids, 3);
  ASSERT_LT(stop, ids.size());
  std::ofstream(dir + "/tokenizer_config.json") << nlohmann::json{{"eos_token", *tok.id_to_token(ids[stop])}}.dump();
  const std::vector<int32_t> until_eos(ids.begin(), ids.begin() + stop + 1);
  EXPECT_EQ(to_ids32(run_m3(gen + " --print-ids", tmp).out), until_eos);
  EXPECT_EQ(run_m3(gen, tmp).out, Tokenizer::load(dir).decode(until_eos));
  EXPECT_EQ(to_ids32(run_m3(gen + " --print-ids --ignore-eos", tmp).out), ids);

  // --tokenizer names one elsewhere; one larger than the model's vocabulary is refused.
  std::filesystem::rename(dir + "/tokenizer.json", tmp.file("elsewhere.json"));
  std::filesystem::remove(dir + "/tokenizer_config.json");
  EXPECT_EQ(run_m3(gen + " --ignore-eos --tokenizer " + quote(tmp.file("elsewhere.json")), tmp).out, want);
  const std::string byte_model = tmp.file("tiny");
  ASSERT_EQ(run_m3("init --preset mamba3-tiny " + quote(byte_model), tmp).code, 0);
  Result big = run_m3("generate " + quote(byte_model) + " --prompt hi --tokenizer " + quote(kSpBpe), tmp);
  EXPECT_EQ(big.code, 1);
  EXPECT_NE(big.err.find("has 1500 tokens, more than the model's vocabulary of 256"), std::string::npos) << big.err;
}

// A Hugging Face checkpoint's config.json names its EOS ids (a number or a list).
TEST(Cli, GenerateStopsAtTheConfigEosTokenId) {
  test::TempDir tmp;
  const std::string dir = tmp.file("hf_mamba2");
  std::filesystem::create_directory(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    std::filesystem::copy_file(test::golden("hf_mamba2/") + f, dir + "/" + f);
  const std::string gen = "generate " + quote(dir) + " --prompt-ids '1 2 3' -n 24 --top-k 0 --seed 11 --print-ids";
  const std::vector<int32_t> ids = to_ids32(run_m3(gen + " --ignore-eos", tmp).out);
  ASSERT_EQ(ids.size(), 24u);
  const size_t stop = first_new_token_after(ids, 3);
  ASSERT_LT(stop, ids.size());
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  config["eos_token_id"] = {100000, ids[stop]};  // the first is never generated (vocabulary 256)
  std::ofstream(dir + "/config.json") << config.dump();
  EXPECT_EQ(to_ids32(run_m3(gen, tmp).out), std::vector<int32_t>(ids.begin(), ids.begin() + stop + 1));
  EXPECT_EQ(to_ids32(run_m3(gen + " --ignore-eos", tmp).out), ids);
}

// Without a tokenizer.json, --prompt is byte-level: one token per UTF-8 byte.
TEST(Cli, GenerateWithoutTokenizerIsByteLevel) {
  test::TempDir tmp;
  const std::string dir = tmp.file("tiny");
  ASSERT_EQ(run_m3("init --preset mamba3-tiny " + quote(dir), tmp).code, 0);
  const std::string gen = "generate " + quote(dir) + " -n 6 --top-k 0 --seed 3 --print-ids ";
  Result text = run_m3(gen + "--prompt " + quote("hé"), tmp);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out, run_m3(gen + "--prompt-ids '104 195 169'", tmp).out);
}

TEST(Cli, BadArgumentsFailWithAMessage) {
  test::TempDir tmp;
  const std::string dir = tmp.file("tiny");
  ASSERT_EQ(run_m3("init --preset mamba3-tiny " + quote(dir), tmp).code, 0);
  const std::string gen = "generate " + quote(dir) + " -n 2 --prompt-ids ";
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> library_errors = {
      {"info " + quote(tmp.file("missing")), tmp.file("missing")},
      {"init --preset nope " + quote(tmp.file("x")), "unknown preset 'nope'"},
      {gen + "'1 x 3'", "'x' is not an integer"},
      {gen + "'1 2.5'", "'2.5' is not an integer"},
      {gen + "'256'", "outside the vocabulary"},
      {gen + "'3 -1'", "outside the vocabulary"},
      {gen + "'4294967297'", "4294967297"},  // must not wrap around to token 1
      {gen + "'99999999999999999999'", "is not an integer"},
      {gen + "''", "prompt is empty"},
      {"logits " + quote(dir) + " --input " + quote(tmp.file("none.safetensors")) + " --output " + quote(tmp.file("o")),
       tmp.file("none.safetensors")},
  };
  for (const auto& c : library_errors) {
    SCOPED_TRACE(c.args);
    Result r = run_m3(c.args, tmp);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.err.rfind("m3: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  // Input ids of the wrong dtype or out of the vocabulary.
  Tensor f = Tensor::zeros(DType::F32, {1, 3});
  save_safetensors(tmp.file("f32.safetensors"), {{"input_ids", f}});
  Tensor big = Tensor::zeros(DType::I64, {1, 2});
  big.ptr<int64_t>()[1] = 1000;
  save_safetensors(tmp.file("big.safetensors"), {{"input_ids", big}});
  for (auto [file, message] : {std::pair{"f32.safetensors", "I64 or I32"}, {"big.safetensors", "1000"}}) {
    Result r =
        run_m3("logits " + quote(dir) + " --input " + quote(tmp.file(file)) + " --output " + quote(tmp.file("o")), tmp);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  // Argument-parser errors: their own exit codes, a message, no crash.
  for (const std::string& args :
       std::vector<std::string>{"", "frobnicate", "generate", "generate " + quote(dir) + " -n -3 --prompt-ids 1",
                                "info " + quote(dir) + " --bogus"}) {
    SCOPED_TRACE(args);
    Result r = run_m3(args, tmp);
    EXPECT_NE(r.code, 0);
    EXPECT_LT(r.code, 128) << "killed by a signal";
    EXPECT_NE(r.code, 2) << "an internal error: " << r.err;
    EXPECT_FALSE(r.err.empty() && r.out.empty());
  }
}

}  // namespace
}  // namespace m3
