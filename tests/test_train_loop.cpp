// Training loop pieces: token files (round trip, corrupt files), packed rows with document
// boundaries, AdamW and the schedules against hand-computed values, loss falling on a learnable
// sequence, and checkpoints: `--steps 4` then `--steps 8 --resume` equals `--steps 8` byte for
// byte, and `m3 eval` ends with `loss X ppl Y`.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "expect_error.h"
#include "io/files.h"
#include "m3/error.h"
#include "m3/model.h"
#include "run_m3.h"
#include "temp_dir.h"
#include "testing.h"
#include "train/optimizer.h"
#include "train/token_file.h"
#include "train/trainer.h"

namespace m3 {
namespace {

using train::TokenData;

TEST(TrainData, TokenFileRoundTripAndCorruptFiles) {
  test::TempDir tmp;
  TokenData d;
  d.tokens = {1, 2, 3, 70000, 5};
  d.doc_offsets = {0, 2, 2, 5};
  train::write_token_file(tmp.file("a.tokens"), d);
  const TokenData r = train::read_token_file(tmp.file("a.tokens"));
  EXPECT_EQ(r.tokens, d.tokens);
  EXPECT_EQ(r.doc_offsets, d.doc_offsets);
  const std::string bytes = read_file(tmp.file("a.tokens"));
  EXPECT_EQ(bytes.size(), 32u + 8 * 4 + 4 * 5);  // uint32: 70000 does not fit in 16 bits
  write_file_atomic(tmp.file("short.tokens"), bytes.substr(0, bytes.size() - 1));
  test::expect_error([&] { train::read_token_file(tmp.file("short.tokens")); }, {"short.tokens: not a valid token file"});
  write_file_atomic(tmp.file("magic.tokens"), "X" + bytes.substr(1));
  test::expect_error([&] { train::read_token_file(tmp.file("magic.tokens")); }, {"missing M3TOKENS header"});
}

// Stream 0 1 2 | 3 4 | 5 6 7 8 (three documents), rows of 4: row 0 = 0 1 2 | 3, row 1 = 4 | 5 6 7.
TEST(TrainData, RowsSplitAtDocumentsAndTargetTheSameDocument) {
  TokenData d;
  d.tokens = {10, 11, 12, 13, 14, 15, 16, 17, 18};
  d.doc_offsets = {0, 3, 5, 9};
  const train::Rows r = train::make_rows(d, {1, 0}, 4);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{14, 15, 16, 17, 10, 11, 12, 13}));
  EXPECT_EQ(r.targets, (std::vector<int32_t>{-1, 16, 17, 18, 11, 12, -1, 14}));
  EXPECT_EQ(r.cu, (std::vector<int64_t>{0, 1, 4, 7, 8}));
  const auto o = train::epoch_order(10, 3, 0);
  EXPECT_EQ(o, train::epoch_order(10, 3, 0));
  EXPECT_NE(o, train::epoch_order(10, 3, 1));
  std::vector<int64_t> sorted = o;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(sorted[size_t(i)], i);
}

TEST(TrainOptimizer, AdamWStepAndNoDecaySet) {
  EXPECT_TRUE(train::no_weight_decay("backbone.layers.0.mixer.dt_bias"));
  EXPECT_TRUE(train::no_weight_decay("backbone.layers.0.mixer.D"));
  EXPECT_TRUE(train::no_weight_decay("backbone.layers.0.mixer.B_bias"));
  EXPECT_TRUE(train::no_weight_decay("backbone.layers.0.norm.weight"));
  EXPECT_TRUE(train::no_weight_decay("backbone.layers.0.mixer.A_log"));
  EXPECT_FALSE(train::no_weight_decay("backbone.layers.0.mixer.in_proj.weight"));
  EXPECT_FALSE(train::no_weight_decay("backbone.embedding.weight"));
  // Two steps by hand (β1 0.9, β2 0.95, eps 1e-8, lr 0.1, decay 0.1 on the weight only).
  std::vector<std::vector<float>> p = {{1.0f}, {2.0f}}, g = {{0.5f}, {-1.0f}};
  train::AdamW opt({"w.weight", "w.bias"}, p, {});
  opt.update(p, g, 0.1);
  // Step 1: m̂ = g, v̂ = g², update = sign(g)·lr (up to eps); decay lr·0.1·p on the weight.
  EXPECT_NEAR(p[0][0], 1.0 - 0.1 * 0.1 * 1.0 - 0.1, 1e-6);
  EXPECT_NEAR(p[1][0], 2.0 + 0.1, 1e-6);
  std::vector<std::vector<float>> gg = {{3.0f, 4.0f}};
  EXPECT_NEAR(train::clip_grad_norm(gg, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(gg[0][0], 0.6, 1e-5);
  EXPECT_NEAR(gg[0][1], 0.8, 1e-5);
}

TEST(TrainOptimizer, Schedules) {
  train::LrSchedule s;
  s.lr = 1.0, s.min_lr_ratio = 0.1, s.warmup = 2, s.total = 12;
  s.kind = train::Schedule::Cosine;
  EXPECT_NEAR(s.at(0), 0.5, 1e-12);
  EXPECT_NEAR(s.at(1), 1.0, 1e-12);
  EXPECT_NEAR(s.at(2), 1.0, 1e-12);
  EXPECT_NEAR(s.at(7), 0.55, 1e-12);  // halfway: (1 + 0.1) / 2
  EXPECT_NEAR(s.at(12), 0.1, 1e-12);
  s.kind = train::Schedule::Wsd;  // decay over the last ceil(0.2·12) = 3 steps: 9, 10, 11
  EXPECT_NEAR(s.at(8), 1.0, 1e-12);
  EXPECT_NEAR(s.at(9), 0.7, 1e-12);
  EXPECT_NEAR(s.at(11), 0.1, 1e-12);
}

const char* kTinyConfig = R"({"d_model": 16, "n_layer": 2, "vocab_size": 256, "d_intermediate": 32,
  "ssm_cfg": {"layer": "Mamba3", "d_state": 16, "headdim": 8, "expand": 2, "chunk_size": 8},
  "attn_layer_idx": [1], "attn_cfg": {"num_heads": 2, "head_dim": 8, "causal": true, "rotary_emb_dim": 4},
  "tie_embeddings": true})";

// A repeating byte pattern: a tiny model must learn it quickly.
TEST(TrainLoop, LossFallsOnARepeatingSequence) {
  test::TempDir tmp;
  TokenData d;
  for (int i = 0; i < 2048; ++i) d.tokens.push_back("abcdefg"[i % 7]);
  d.doc_offsets = {0, 2048};
  train::write_token_file(tmp.file("d.tokens"), d);
  const ModelConfig cfg = parse_model_config(nlohmann::json::parse(kTinyConfig), "tiny");
  train::TrainOptions o;
  o.data = tmp.file("d.tokens"), o.out = tmp.file("out");
  o.steps = 30, o.batch = 4, o.seq_len = 32, o.schedule.lr = 1e-2;
  std::vector<double> losses;
  train::train(cfg, Model::init(cfg, 1).parameters(), o, [&](const train::StepReport& r) { losses.push_back(r.loss); }, {});
  ASSERT_EQ(losses.size(), 30u);
  EXPECT_GT(losses.front(), 4.5);  // ≈ ln 256 at initialisation
  EXPECT_LT(losses.back(), std::log(7.0));  // better than the letters' frequencies alone
}

// Threads over the batch (one model replica per thread) train the same model as one thread, up to
// float summation order.
TEST(TrainLoop, ThreadsOverTheBatchMatchOneThread) {
  test::TempDir tmp;
  TokenData d;
  for (int i = 0; i < 1024; ++i) d.tokens.push_back((i * 7 + i / 5) % 256);
  d.doc_offsets = {0, 300, 1024};
  train::write_token_file(tmp.file("d.tokens"), d);
  const ModelConfig cfg = parse_model_config(nlohmann::json::parse(kTinyConfig), "tiny");
  train::TrainOptions o;
  o.data = tmp.file("d.tokens"), o.steps = 2, o.batch = 4, o.seq_len = 32;
  std::vector<std::vector<double>> runs;
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    o.out = tmp.file("out" + std::to_string(threads));
    train::train(cfg, Model::init(cfg, 2).parameters(), o, {}, {});
    runs.push_back(test::to_f64(SafetensorsFile::open(o.out + "/model.safetensors").get("backbone.layers.0.mixer.in_proj.weight")));
  }
  omp_set_num_threads(saved);
  EXPECT_LT(test::rel_err(runs[1], runs[0]), 1e-5);
}

TEST(TrainLoop, ResumeIsBitIdenticalAndEvalReportsLoss) {
  test::TempDir tmp;
  {
    std::ofstream(tmp.file("cfg.json")) << kTinyConfig;
    std::ofstream t(tmp.file("a.txt"));
    for (int i = 0; i < 40; ++i) t << "line " << i << ": the quick brown fox jumps over the lazy dog\n";
    std::ofstream(tmp.file("b.txt")) << "a second, shorter document.\n";
  }
  auto ok = [&](const std::string& args) {
    const test::Result r = test::run_m3(args, tmp);
    EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
    return r;
  };
  ok("data tokenize --bytes --output " + tmp.file("d.tokens") + " " + tmp.file("a.txt") + " " + tmp.file("b.txt"));
  const std::string common = "train --config " + tmp.file("cfg.json") + " --data " + tmp.file("d.tokens") +
                             " --batch 2 --seq-len 24 --lr 3e-3 --warmup 2 --total-steps 8 --seed 5 --out ";
  ok(common + tmp.file("full") + " --steps 8");
  ok(common + tmp.file("split") + " --steps 4");
  const test::Result r = ok("train --data " + tmp.file("d.tokens") +
                            " --batch 2 --seq-len 24 --lr 3e-3 --warmup 2 --total-steps 8 --seed 5 --out " +
                            tmp.file("split") + " --steps 8 --resume");
  EXPECT_NE(r.out.find("step 8/8"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("step 4/8"), std::string::npos) << "resume must not redo steps";
  EXPECT_EQ(read_file(tmp.file("full/model.safetensors")), read_file(tmp.file("split/model.safetensors")));
  EXPECT_EQ(read_file(tmp.file("full/train_state.safetensors")), read_file(tmp.file("split/train_state.safetensors")));
  // Resuming with another data order is refused.
  const test::Result bad = test::run_m3("train --data " + tmp.file("d.tokens") + " --batch 2 --seq-len 24 --lr 3e-3 --warmup 2 --total-steps 8 --seed 6 --out " +
                                         tmp.file("split") + " --steps 9 --resume", tmp);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("other options"), std::string::npos) << bad.err;
  // The checkpoint loads as a model; eval's last line is `loss X ppl Y`.
  const test::Result e = ok("eval " + tmp.file("full") + " --data " + tmp.file("d.tokens") + " --seq-len 24");
  double loss = 0, ppl = 0;
  ASSERT_EQ(std::sscanf(e.out.c_str(), "loss %lf ppl %lf", &loss, &ppl), 2) << e.out;
  EXPECT_NEAR(ppl, std::exp(loss), 1e-3 * ppl);
  ok("generate " + tmp.file("full") + " --prompt-ids \"1 2 3\" -n 4");
  // A truncated token file is a clear error, not a crash.
  const std::string bytes = read_file(tmp.file("d.tokens"));
  write_file_atomic(tmp.file("bad.tokens"), bytes.substr(0, bytes.size() - 3));
  const test::Result t = test::run_m3("eval " + tmp.file("full") + " --data " + tmp.file("bad.tokens"), tmp);
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("m3: error: " + tmp.file("bad.tokens") + ": not a valid token file"), std::string::npos) << t.err;
}

// A process killed (SIGKILL) while it saves every step leaves a checkpoint that loads and resumes.
TEST(TrainLoop, KilledDuringSavesLeavesALoadableCheckpoint) {
  test::TempDir tmp;
  std::ofstream(tmp.file("cfg.json")) << kTinyConfig;
  TokenData d;
  for (int i = 0; i < 4096; ++i) d.tokens.push_back(i % 251);
  d.doc_offsets = {0, 4096};
  train::write_token_file(tmp.file("d.tokens"), d);
  const std::string opts = " --data " + tmp.file("d.tokens") + " --batch 2 --seq-len 16 --total-steps 100000 --out " +
                           tmp.file("out");
  ASSERT_EQ(test::run_m3("train --config " + tmp.file("cfg.json") + opts + " --steps 1", tmp).code, 0);
  for (const char* after : {"0.3", "0.7"}) {
    const std::string cmd = "timeout -s KILL " + std::string(after) + " " + test::quote(test::m3_binary_dir() + "/m3") +
                            " train" + opts + " --steps 100000 --save-every 1 --resume > /dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    EXPECT_NE(status, 0) << "the run was meant to be killed";
    const test::Result e = test::run_m3("eval " + tmp.file("out") + " --data " + tmp.file("d.tokens") + " --seq-len 16 --rows 2", tmp);
    EXPECT_EQ(e.code, 0) << e.err;
  }
  SafetensorsFile st = SafetensorsFile::open(tmp.file("out/train_state.safetensors"));
  const int64_t step = std::stoll(st.metadata().at("step"));
  const test::Result r = test::run_m3("train" + opts + " --steps " + std::to_string(step + 1) + " --resume", tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("step " + std::to_string(step + 1) + "/"), std::string::npos) << r.out;
}

// m3 task parity runs end to end (a few steps; the table itself is in bench/RESULTS.md) and names
// a bad mixer.
TEST(TrainLoop, ParityTaskRuns) {
  test::TempDir tmp;
  const test::Result r = test::run_m3("task parity --mixer mamba3-norope --steps 2 --batch 2 --train-len 8 --eval-lens 8 12 --eval-seqs 2", tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("mamba3-norope parity length 12: accuracy"), std::string::npos) << r.out;
  const test::Result bad = test::run_m3("task parity --mixer mamba9 --steps 1", tmp);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("unknown mixer 'mamba9'"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace m3
