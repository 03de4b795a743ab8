// Inputs that used to crash m3 or exhaust the machine (issue 11, and what the fuzzers in fuzz/
// found): each must now be an `m3: error: ...` naming the file, the field and the limit, exit 1,
// in bounded time and memory. Resource limits: src/core/limits.h.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/limits.h"
#include "core/omp_exceptions.h"
#include "cpu/vec_math.h"
#include "expect_error.h"
#include "io/input_ids.h"
#include "m3/config.h"
#include "m3/model.h"
#include "m3/safetensors.h"
#include "m3/state.h"
#include "m3/tokenizer.h"
#include "run_m3.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

using test::expect_error;
using test::quote;
using test::Result;
using test::run_m3;

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string nested(const std::string& open, const std::string& inner, const std::string& close, int depth) {
  std::string s;
  s.reserve((open.size() + close.size()) * size_t(depth) + inner.size());
  for (int i = 0; i < depth; ++i) s += open;
  s += inner;
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

// The CLI's answer to bad input: exit 1, one `m3: error:` line holding every part.
void expect_cli_error(const Result& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("m3: error: ", 0), 0u) << r.err;
  for (const auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << r.err << "\n  lacks: " << p;
}

// A minimal valid tokenizer.json (byte-level BPE over "a", "b") with `model.vocab` replaced.
nlohmann::json small_tokenizer() {
  return nlohmann::json::parse(R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]},
    "post_processor": null, "decoder": null, "normalizer": null, "pre_tokenizer": null})");
}

// config.json nested 300,000 brackets deep: `m3 info` died with SIGSEGV (recursive dump).
TEST(Hardening, DeeplyNestedConfigJson) {
  test::TempDir tmp;
  write(tmp.file("config.json"), "{\"d_model\": " + nested("[", "1", "]", 300000) + "}");
  const Result r = run_m3("info " + quote(tmp.path()), tmp);
  expect_cli_error(r, {tmp.file("config.json"), "nested deeper than 128", "kJsonDepth"});
}

// A normalizer Sequence nested 100,000 deep: `m3 tokenize` died with SIGSEGV.
TEST(Hardening, DeeplyNestedNormalizerSequence) {
  nlohmann::json j = small_tokenizer();
  std::string text = j.dump();
  const std::string seq = nested(R"({"type": "Sequence", "normalizers": [)", R"({"type": "NFC"})", "]}", 100000);
  text.replace(text.find("\"normalizer\":null"), 17, "\"normalizer\":" + seq);
  expect_error([&] { Tokenizer::from_json(text, "deep.json"); }, {"deep.json", "nested deeper than 128"});
}

// A safetensors header nested past the limit.
TEST(Hardening, DeeplyNestedSafetensorsHeader) {
  test::TempDir tmp;
  std::string header = "{\"w\": " + nested("[", "", "]", 200) + "}";
  const uint64_t n = header.size();
  std::string file(reinterpret_cast<const char*>(&n), 8);
  write(tmp.file("x.safetensors"), file + header);
  expect_error([&] { SafetensorsFile::open(tmp.file("x.safetensors")); },
               {tmp.file("x.safetensors"), "header", "nested deeper than 128"});
}

// chunk_size 2147483647: `m3 logits` aborted (bad_alloc inside an OpenMP region).
TEST(Hardening, ChunkSizeLimit) {
  for (const char* layer : {"Mamba3", "Mamba2"}) {
    const nlohmann::json c = {{"d_model", 16}, {"n_layer", 1}, {"vocab_size", 32},
                              {"ssm_cfg", {{"layer", layer}, {"headdim", 8}, {"chunk_size", 2147483647}}}};
    expect_error([&] { parse_model_config(c, "config.json"); },
                 {"config.json", "chunk_size 2147483647 exceeds the limit of 65536", "kChunkSize"});
  }
}

// A 60-byte tokenizer.json mapping a token to id 268435455 allocated 12.9 GB.
TEST(Hardening, HugeTokenIdInVocab) {
  nlohmann::json j = small_tokenizer();
  j["model"]["vocab"]["c"] = 268435455;
  expect_error([&] { Tokenizer::from_json(j.dump(), "t.json"); },
               {"t.json", "model.vocab[\"c\"]", "268435455", "outside [0, 4194304)", "kTokenIds"});
  j = small_tokenizer();
  j["model"]["vocab"]["c"] = 18446744073709551615ull;
  expect_error([&] { Tokenizer::from_json(j.dump(), "t.json"); }, {"model.vocab[\"c\"]", "outside"});
}

TEST(Hardening, PostProcessorIdsInRange) {
  nlohmann::json j = small_tokenizer();
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {5000000000ll}}, {"tokens", {"<s>"}}}}}}};
  expect_error([&] { Tokenizer::from_json(j.dump(), "t.json"); },
               {"t.json", "post_processor.special_tokens.<s>.ids", "outside"});
}

TEST(Hardening, RegexPatternLengthLimit) {
  nlohmann::json j = small_tokenizer();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", std::string(100000, 'a')}}},
                        {"behavior", "Isolated"}, {"invert", false}};
  expect_error([&] { Tokenizer::from_json(j.dump(), "t.json"); }, {"t.json", "exceeds the limit", "kRegexPatternBytes"});
}

// `m3 detokenize DIR 99999999 -5` printed an empty line and exited 0.
TEST(Hardening, DetokenizeOutOfRangeIds) {
  test::TempDir tmp;
  write(tmp.file("tokenizer.json"), small_tokenizer().dump());
  for (const char* id : {"99999999", "-5", "3"}) {
    const Result r = run_m3("detokenize " + quote(tmp.path()) + " 0 " + id, tmp);
    expect_cli_error(r, {std::string("token id ") + id + " is outside the tokenizer's vocabulary [0, 3)"});
    EXPECT_EQ(r.out, "");
  }
  const Result ok = run_m3("detokenize " + quote(tmp.path()) + " 0 1 2", tmp);
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// Numeric flags: readable ranges (not "0.000000 to 1797693..."), checked before any work.
TEST(Hardening, GenerateFlagRanges) {
  test::TempDir tmp;
  const std::string dir = quote(test::golden("mamba3_siso_hybrid"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--temperature -1", "--temperature: must be in (0, 1000000], found -1"},
      {"--temperature nan", "--temperature: must be in (0, 1000000], found nan"},
      {"--top-p 2", "--top-p: must be in (0, 1], found 2"},
      {"--min-p -0.5", "--min-p: must be in [0, 1], found -0.5"},
      {"--top-k -3", "--top-k: must be in [0, 2147483647], found -3"},
      {"--max-new-tokens -1", "--max-new-tokens: must be in [0, 1048576], found -1"},
      {"--repetition-penalty 0", "--repetition-penalty: must be in (0, 1000000], found 0"}};
  for (const auto& [flags, message] : cases) {
    const Result r = run_m3("generate " + dir + " --prompt-ids 1 " + flags, tmp);
    EXPECT_NE(r.code, 0) << flags;
    EXPECT_NE(r.err.find(message), std::string::npos) << flags << ": " << r.err;
    EXPECT_EQ(r.err.find("1797693"), std::string::npos) << r.err;
  }
}

// The same for the newer commands: each bad value is refused while the flags are parsed, before
// any file is opened (the paths given do not exist).
TEST(Hardening, ServeTrainEvalTaskFlagRanges) {
  test::TempDir tmp;
  const std::string train = "train --preset mamba3-tiny --data none --out none --steps 10 ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"serve none --port 70000", "--port: must be in [0, 65535], found 70000"},
      {"serve none --slots 0", "--slots: must be in [1, 1048576], found 0"},
      {"serve none --max-queue -1", "--max-queue: must be in [0, 1048576], found -1"},
      {"serve none --prefill-chunk 0", "--prefill-chunk: must be in [1, 1048576], found 0"},
      {"serve none --max-batch 0", "--max-batch: must be in [1, 65536], found 0"},
      {"serve none --drain-timeout -2", "--drain-timeout: must be in [0, 86400], found -2"},
      {"train --preset mamba3-tiny --data none --out none --steps 0", "--steps: must be in [1, 1000000000], found 0"},
      {train + "--batch 0", "--batch: must be in [1, 65536], found 0"},
      {train + "--seq-len -4", "--seq-len: must be in [1, 1048576], found -4"},
      {train + "--lr 0", "--lr: must be in (0, 1], found 0"},
      {train + "--lr nan", "--lr: must be in (0, 1], found nan"},
      {train + "--min-lr-ratio 2", "--min-lr-ratio: must be in [0, 1], found 2"},
      {train + "--weight-decay -0.1", "--weight-decay: must be in [0, 1], found -0.1"},
      {train + "--clip -1", "--clip: must be in [0, 1000000], found -1"},
      {train + "--eval-rows -1", "--eval-rows: must be in [0, 1000000000000], found -1"},
      {"eval none --data none --seq-len 0", "--seq-len: must be in [1, 1048576], found 0"},
      {"eval none --data none --batch 0", "--batch: must be in [1, 65536], found 0"},
      {"task parity --steps 0", "--steps: must be in [1, 1000000000], found 0"},
      {"task parity --eval-lens 64 -1", "--eval-lens: must be in [1, 1048576], found -1"},
      {"task parity --lr 5", "--lr: must be in (0, 1], found 5"}};
  for (const auto& [args, message] : cases) {
    const Result r = run_m3(args, tmp);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
  }
}

// The sampling rule: greedy unless --temperature, --top-p or --min-p is given, which then sample
// from all tokens (--top-k 0) unless --top-k says otherwise; with --top-k 1 they are an error.
TEST(Hardening, GenerateSamplingDefaults) {
  test::TempDir tmp;
  const std::string dir = quote(test::golden("mamba3_siso_hybrid"));
  auto ids = [&](const std::string& flags) {
    const Result r = run_m3("generate " + dir + " --prompt-ids '1 2 3' -n 24 --print-ids " + flags, tmp);
    EXPECT_EQ(r.code, 0) << flags << ": " << r.err;
    return r.out;
  };
  // Greedy: the seed changes nothing.
  EXPECT_EQ(ids("--seed 1"), ids("--seed 2"));
  // --temperature alone samples: at temperature 5, two seeds agreeing on 24 draws from a
  // near-uniform distribution has probability ~0.
  EXPECT_NE(ids("--temperature 5 --seed 1"), ids("--temperature 5 --seed 2"));
  EXPECT_NE(ids("--top-p 0.99 --seed 1"), ids("--top-p 0.99 --seed 2"));
  const Result r = run_m3("generate " + dir + " --prompt-ids 1 --top-k 1 --temperature 0.7", tmp);
  expect_cli_error(r, {"--top-k 1 is greedy decoding"});
}

// `m3 init` silently overwrote an existing checkpoint.
TEST(Hardening, InitRefusesToOverwrite) {
  test::TempDir tmp;
  write(tmp.file("config.json"), "{}");
  const Result r = run_m3("init --preset mamba3-tiny " + quote(tmp.path()), tmp);
  expect_cli_error(r, {tmp.file("config.json") + " exists: give --force"});
  std::ifstream in(tmp.file("config.json"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "{}");
  const Result forced = run_m3("init --preset mamba3-tiny --force " + quote(tmp.path()), tmp);
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_NO_THROW(load_model_config(tmp.file("config.json")));
}

// `m3 logits` input files: empty, too many sequences, ids out of range.
TEST(Hardening, LogitsInputLimits) {
  test::TempDir tmp;
  auto file = [&](const Shape& shape, int64_t fill) {
    Tensor t = Tensor::zeros(DType::I64, shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.ptr<int64_t>()[i] = fill;
    save_safetensors(tmp.file("in.safetensors"), {{"input_ids", t}});
    return SafetensorsFile::open(tmp.file("in.safetensors"));
  };
  const std::string path = tmp.file("in.safetensors");
  expect_error([&] { read_input_ids(file({0, 4}, 1), 10); }, {path, "input_ids is empty"});
  expect_error([&] { read_input_ids(file({limits::kSequences + 1, 1}, 1), 10); }, {path, "kSequences"});
  expect_error([&] { read_input_ids(file({2, 3}, 10), 10); }, {path, "input_ids holds 10, outside [0, 10)"});
  const InputIds ok = read_input_ids(file({2, 3}, 9), 10);
  EXPECT_EQ(ok.batch, 2);
  EXPECT_EQ(ok.len, 3);
  EXPECT_EQ(ok.tokens, std::vector<int32_t>(6, 9));
}

// An exception inside an OpenMP region reaches the caller (instead of std::terminate), and the
// work left is skipped.
TEST(Hardening, OmpExceptionsReachTheCaller) {
  OmpExceptions errors;
  std::atomic<int> ran{0};
#pragma omp parallel for schedule(static, 1)
  for (int i = 0; i < 1000; ++i)
    errors.run([&] {
      ++ran;
      if (i == 3) throw Error("iteration 3 failed");
    });
  expect_error([&] { errors.rethrow(); }, {"iteration 3 failed"});
  EXPECT_LT(ran.load(), 1000);
}

// Found by fuzz_state: saving a fresh state of a model with attention copied its empty KV cache
// from a null pointer (undefined behaviour; UBSan stops there). The round trip must hold.
TEST(Hardening, FreshHybridStateRoundTrip) {
  Model m = Model::load(test::golden("mamba3_siso_hybrid"));
  const SequenceState fresh = m.new_state();
  const auto tensors = state_to_tensors(fresh);
  SequenceState restored = m.new_state();
  state_from_tensors(restored, tensors, "fresh state");
  EXPECT_EQ(restored.n_tokens, 0);
  for (size_t i = 0; i < fresh.n_layers(); ++i)
    for (const StateBuffer& b : restored.layer(i).buffers)
      for (float v : b.data) ASSERT_EQ(v, 0.0f) << b.name;
}

// Found by fuzz_state: a NaN in a state file reached exp_approx, whose float-to-int conversion of
// NaN is undefined. State files with non-finite values are refused; the fast math helpers keep
// NaN in, NaN out, and stay defined far outside their accuracy range (checked by the UBSan build).
TEST(Hardening, NonFiniteStateRefused) {
  Model m = Model::load(test::golden("mamba3_siso_hybrid"));
  auto tensors = state_to_tensors(m.new_state());
  Tensor* ssm = nullptr;
  for (auto& [name, t] : tensors)
    if (name == "layers.0.ssm") ssm = &t;
  ASSERT_NE(ssm, nullptr);
  ssm->f32()[5] = std::nanf("");
  SequenceState s = m.new_state();
  expect_error([&] { state_from_tensors(s, tensors, "state.safetensors"); },
               {"state.safetensors", "'layers.0.ssm'", "nan at element 5"});
  ssm->f32()[5] = INFINITY;
  expect_error([&] { state_from_tensors(s, tensors, "state.safetensors"); }, {"'layers.0.ssm'", "inf at element 5"});
}

TEST(Hardening, FastMathOnNonFiniteInputs) {
  EXPECT_TRUE(std::isnan(cpu::exp_approx(std::nanf(""))));
  float s = 0, c = 0;
  cpu::sincos_approx(std::nanf(""), s, c);
  EXPECT_TRUE(std::isnan(s) && std::isnan(c));
  for (float x : {1e30f, -1e30f, 3e9f}) cpu::sincos_approx(x, s, c);  // defined, whatever it gives
}

// The test helpers themselves: sizes that differ never compare equal, and one wrong position
// shows in the per-row bound even where the whole-tensor L2 error stays small.
TEST(Hardening, ComparisonHelpersCannotPassByAccident) {
  const std::vector<double> b(1000, 1.0);
  std::vector<double> a(b);
  EXPECT_EQ(test::rel_err(std::vector<double>(500, 1.0), b), INFINITY);
  EXPECT_EQ(test::max_row_err(std::vector<double>(500, 1.0), b, 100), INFINITY);
  a[517] = 1.05;
  EXPECT_LT(test::rel_err(a, b), 2e-3);
  EXPECT_NEAR(test::max_row_err(a, b, 100), 0.05, 1e-12);
}

}  // namespace
}  // namespace m3
