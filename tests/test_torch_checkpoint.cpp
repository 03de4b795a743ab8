// pytorch_model.bin (io/torch_checkpoint.h): torch.save's ZIP + pickle layout built byte by byte
// (tests/torch_pickle_writer.h), read back to the same tensors; a golden checkpoint re-packed as
// pytorch_model.bin (single and sharded) loads to the same logits and converts back to the same
// safetensors; crafted pickles (other globals, other opcodes, out-of-range storages, truncation)
// are refused naming what is wrong; random corruptions of a valid file never crash the reader.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "expect_error.h"
#include "golden_model.h"
#include "io/torch_checkpoint.h"
#include "m3/model.h"
#include "run_m3.h"
#include "temp_dir.h"
#include "testing.h"
#include "torch_pickle_writer.h"

namespace m3 {
namespace {

namespace fs = std::filesystem;
using test::PickledTensor;

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string floats(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// A pytorch_model.bin holding `tensors` (F32, contiguous), one storage each.
std::string torch_file(const NamedTensors& tensors) {
  std::vector<PickledTensor> meta;
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor f = tensors[i].second.convert(DType::F32);
    std::vector<int64_t> stride(f.shape.size(), 1);
    for (size_t k = f.shape.size(); k-- > 1;) stride[k - 1] = stride[k] * f.shape[k];
    meta.push_back({tensors[i].first, "FloatStorage", std::to_string(i), f.numel(), 0, f.shape, stride});
    entries.emplace_back("archive/data/" + std::to_string(i), std::string(static_cast<const char*>(f.data), f.nbytes()));
  }
  entries.insert(entries.begin(), {"archive/data.pkl", test::state_dict_pickle(meta)});
  entries.emplace_back("archive/version", "3\n");
  return test::zip_archive(entries);
}

TEST(TorchCheckpoint, ReadsTensorsAsTorchSaveLaysThemOut) {
  test::TempDir tmp;
  // Storage 0: 8 floats; "w" is a [2, 3] view at offset 1, "wt" its transpose (strides 1, 3) read
  // from offset 0; storage 1: bf16.
  const std::vector<float> s0 = {0, 1, 2, 3, 4, 5, 6, 7};
  const uint16_t s1[3] = {f32_to_bf16(1.5f), f32_to_bf16(-2.0f), f32_to_bf16(0.25f)};
  const std::string pkl = test::state_dict_pickle({{"w", "FloatStorage", "0", 8, 1, {2, 3}, {3, 1}},
                                                   {"wt", "FloatStorage", "0", 8, 0, {3, 2}, {1, 3}},
                                                   {"b", "BFloat16Storage", "1", 3, 1, {2}, {1}}});
  write(tmp.file("pytorch_model.bin"),
        test::zip_archive({{"m/data.pkl", pkl}, {"m/data/0", floats(s0)}, {"m/data/1", std::string((const char*)s1, 6)}}));
  const NamedTensors t = read_torch_checkpoint(tmp.file("pytorch_model.bin"));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].first, "w");
  EXPECT_EQ(t[0].second.shape, (Shape{2, 3}));
  EXPECT_EQ(test::to_f32v(t[0].second), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(test::to_f32v(t[1].second), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(t[2].second.dtype, DType::BF16);
  EXPECT_EQ(test::to_f32v(t[2].second), (std::vector<float>{-2.0f, 0.25f}));
}

// hf_mamba2 re-packed as pytorch_model.bin, and as two shards with an index.
TEST(TorchCheckpoint, GoldenRepackedLoadsToTheSameLogitsAndConvertsBack) {
  test::TempDir tmp;
  const std::string src = test::golden("hf_mamba2");
  const SafetensorsFile st = SafetensorsFile::open(src + "/model.safetensors");
  NamedTensors all;
  for (const auto& n : st.names()) all.emplace_back(n, st.get(n));
  const fs::path one = fs::path(tmp.path()) / "one", two = fs::path(tmp.path()) / "two";
  fs::create_directories(one), fs::create_directories(two);
  fs::copy_file(src + "/config.json", one / "config.json"), fs::copy_file(src + "/config.json", two / "config.json");
  write((one / "pytorch_model.bin").string(), torch_file(all));
  const size_t half = all.size() / 2;
  const NamedTensors a(all.begin(), all.begin() + ptrdiff_t(half)), b(all.begin() + ptrdiff_t(half), all.end());
  write((two / "pytorch_model-00001-of-00002.bin").string(), torch_file(a));
  write((two / "pytorch_model-00002-of-00002.bin").string(), torch_file(b));
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [n, t] : a) index["weight_map"][n] = "pytorch_model-00001-of-00002.bin";
  for (const auto& [n, t] : b) index["weight_map"][n] = "pytorch_model-00002-of-00002.bin";
  write((two / "pytorch_model.bin.index.json").string(), index.dump());

  test::GoldenRun g = test::load_golden("hf_mamba2");
  const std::vector<float> want = test::packed_logits(g);
  for (const fs::path& dir : {one, two}) {
    g.model = Model::load(dir.string());
    EXPECT_EQ(test::packed_logits(g), want) << dir;
  }
  const test::Result r = test::run_m3(test::quote("convert") + " " + test::quote(two.string()) + " " +
                                          test::quote(tmp.file("out")),
                                      tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  const SafetensorsFile back = SafetensorsFile::open(tmp.file("out/model.safetensors"));
  ASSERT_EQ(back.names().size(), all.size());
  for (const auto& [n, t] : all) EXPECT_EQ(test::to_f32v(back.get(n)), test::to_f32v(t)) << n;
  EXPECT_TRUE(fs::exists(tmp.file("out/config.json")));
}

// A one-tensor state dict pickle with `body` in place of the tensor's construction.
std::string read_error(const std::string& pickle) {
  const std::vector<float> s = {1, 2, 3, 4};
  test::TempDir tmp;
  write(tmp.file("p.bin"), test::zip_archive({{"a/data.pkl", pickle}, {"a/data/0", floats(s)}}));
  try {
    read_torch_checkpoint(tmp.file("p.bin"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TorchCheckpoint, RefusesOtherGlobalsOpcodesAndBadStorages) {
  const std::string good = test::state_dict_pickle({{"x", "FloatStorage", "0", 4, 0, {4}, {1}}});
  EXPECT_EQ(read_error(good), "(no error)");
  // The classic payload: os.system("...") through GLOBAL + REDUCE.
  test::PickleWriter evil;
  evil.global("os", "system");
  evil.str("touch /tmp/m3_pwned");
  evil.op('\x85');
  evil.op('R');
  evil.op('.');
  EXPECT_NE(read_error(evil.bytes).find("global 'os.system' is not allowed"), std::string::npos);
  EXPECT_FALSE(fs::exists("/tmp/m3_pwned"));
  // builtins.eval through STACK_GLOBAL.
  test::PickleWriter evil2;
  evil2.str("builtins");
  evil2.str("eval");
  evil2.op('\x93');
  evil2.op('.');
  EXPECT_NE(read_error(evil2.bytes).find("global 'builtins.eval' is not allowed"), std::string::npos);
  // INST ('i'), OBJ ('o'), EXT1 (0x82): opcodes a state dict never uses.
  for (const char* op : {"i", "o", "\x82"}) {
    const std::string e = read_error(std::string("\x80\x02", 2) + op + ".");
    EXPECT_NE(e.find("is not allowed in a state dict"), std::string::npos) << e;
  }
  // A tensor reaching past its storage, a storage with no entry, a storage type that is not one.
  EXPECT_NE(read_error(test::state_dict_pickle({{"x", "FloatStorage", "0", 4, 2, {3}, {1}}})).find("reaches element 4"),
            std::string::npos);
  EXPECT_NE(read_error(test::state_dict_pickle({{"x", "FloatStorage", "7", 4, 0, {4}, {1}}})).find("no entry a/data/7"),
            std::string::npos);
  EXPECT_NE(read_error(test::state_dict_pickle({{"x", "FloatStorage", "0", 9, 0, {4}, {1}}})).find("fewer than 9"),
            std::string::npos);
  EXPECT_NE(read_error(test::state_dict_pickle({{"x", "Storage", "0", 4, 0, {4}, {1}}})).find("torch.Storage"),
            std::string::npos);
  // Truncated pickle.
  EXPECT_NE(read_error(good.substr(0, good.size() / 2)).find("ends early"), std::string::npos);
}

TEST(TorchCheckpoint, RefusesTruncatedAndCompressedArchives) {
  test::TempDir tmp;
  const std::vector<float> s = {1, 2, 3, 4};
  const std::string z =
      test::zip_archive({{"a/data.pkl", test::state_dict_pickle({{"x", "FloatStorage", "0", 4, 0, {4}, {1}}})},
                         {"a/data/0", floats(s)}});
  write(tmp.file("cut.bin"), z.substr(0, z.size() - 30));
  test::expect_error([&] { read_torch_checkpoint(tmp.file("cut.bin")); }, {"cut.bin", "end-of-central-directory"});
  std::string deflated = z;
  deflated[8] = 8;  // the first local header's method; the central directory's is at its +10
  const size_t cd = deflated.rfind(std::string("\x50\x4b\x01\x02", 4), deflated.size() - 22);
  for (size_t p = 0; p < deflated.size(); p = cd + 1) {
    p = deflated.find(std::string("\x50\x4b\x01\x02", 4), p);
    if (p == std::string::npos) break;
    deflated[p + 10] = 8;
  }
  write(tmp.file("deflated.bin"), deflated);
  test::expect_error([&] { read_torch_checkpoint(tmp.file("deflated.bin")); }, {"deflated.bin", "is compressed"});
  write(tmp.file("legacy.bin"), std::string("\x80\x02\x8a\x0a", 4));
  test::expect_error([&] { read_torch_checkpoint(tmp.file("legacy.bin")); }, {"legacy.bin", "legacy"});
}

// Random byte corruptions of a valid file: each read either succeeds or throws m3::Error (run
// under ASan/UBSan in CI, which also catches reads out of bounds).
TEST(TorchCheckpoint, FuzzedFilesAreRefusedCleanly) {
  test::TempDir tmp;
  const std::vector<float> s = {1, 2, 3, 4, 5, 6};
  const std::string z = test::zip_archive(
      {{"a/data.pkl", test::state_dict_pickle({{"x", "FloatStorage", "0", 6, 0, {2, 3}, {3, 1}},
                                               {"y", "FloatStorage", "0", 6, 1, {5}, {1}}})},
       {"a/data/0", floats(s)}});
  std::mt19937_64 rng(5);
  int refused = 0;
  for (int it = 0; it < 300; ++it) {
    std::string f = z;
    const int n = 1 + int(rng() % 4);
    for (int k = 0; k < n; ++k) f[size_t(rng() % f.size())] = char(rng());
    if (it % 5 == 0) f.resize(size_t(rng() % f.size()));
    write(tmp.file("f.bin"), f);
    try {
      read_torch_checkpoint(tmp.file("f.bin"));
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace m3
