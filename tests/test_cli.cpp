// The m3 command-line tool, run as a subprocess: logits of the golden hybrid, info, init then
// generate (deterministic in its seed, greedy equal to the library's argmax decode), and bad
// arguments, which must exit non-zero with a message and never crash.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "m3/model.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

struct Result {
  int code;  // the exit status, or 128 + the signal that killed it
  std::string out, err;
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs `m3 ARGS` with stdout and stderr captured separately.
Result run_m3(const std::string& args, const test::TempDir& tmp) {
  const std::string err_file = tmp.file("stderr.txt");
  const std::string cmd = quote(std::string(M3_BINARY_DIR) + "/m3") + " " + args + " 2>" + quote(err_file);
  Result r{-1, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

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
  for (const char* line : {"layer  0: Mamba3 SISO", "layer  1: Mamba3 SISO", "layer  2: MHA heads 4 kv_heads 2",
                           "layer  3: Mamba3 SISO", "GatedMLP"})
    EXPECT_NE(r.out.find(line), std::string::npos) << "missing '" << line << "' in:\n" << r.out;
  EXPECT_NE(r.out.find("KV cache"), std::string::npos) << r.out;
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
