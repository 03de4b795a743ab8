// The safetensors reader against malformed files (every defect must be an m3::Error naming the
// file, and the tensor where there is one), its acceptance of unusual but valid files, the
// writer's round trip and atomicity, and a randomized mutation loop that may only ever produce
// m3::Error or a file whose every tensor can be read (the sanitizer build checks the reads).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "expect_error.h"
#include "m3/error.h"
#include "m3/safetensors.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

namespace fs = std::filesystem;
using test::expect_error;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The 8-byte little-endian length prefix.
std::string length_prefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file from its parts: the header length (that of `header` unless given), header, data.
std::string file_bytes(const std::string& header, const std::string& data, std::optional<uint64_t> hlen = {}) {
  return length_prefix(hlen.value_or(header.size())) + header + data;
}

struct BadFile {
  std::string what, bytes;
  std::vector<std::string> message;  // besides the path
};

TEST(SafetensorsErrors, MalformedFilesNameTheFileAndTensor) {
  test::TempDir dir;
  const std::string data16(16, '\x01');
  // The header of one tensor 'w' from its entry's fields; `entry` writes the usual three.
  auto one = [](const std::string& fields) { return R"({"w": {)" + fields + "}}"; };
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"("dtype": )" + dtype + R"(, "shape": )" + shape + R"(, "data_offsets": )" + offsets;
  };
  const std::string w16 = one(entry(R"("F32")", "[4]", "[0, 16]"));  // a valid header for data16
  auto bad = [&](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return file_bytes(one(entry(dtype, shape, offsets)), data16);
  };
  auto two = [&](const std::string& a, const std::string& b) {
    return file_bytes(R"({"a": {)" + a + R"(}, "b": {)" + b + "}}", data16);
  };
  const std::vector<BadFile> cases = {
      {"empty file", "", {"truncated"}},
      {"shorter than the length prefix", std::string(5, '\0'), {"truncated"}},
      {"header cut short", file_bytes(w16, "").substr(0, 30), {"runs past the end"}},
      {"header length past the end", file_bytes("{}", "", 1000), {"header length 1000", "runs past the end"}},
      {"huge header length", file_bytes("{}", "", uint64_t(1) << 40), {"exceeds"}},
      {"all-ones header length", file_bytes("{}", "", ~uint64_t(0)), {"exceeds"}},
      {"data cut short", file_bytes(w16, data16.substr(0, 9)), {"tensor 'w'", "outside the data section"}},
      {"malformed JSON", file_bytes(R"({"w": {"dtype": )", ""), {"malformed JSON"}},
      {"empty header", file_bytes("", ""), {"malformed JSON"}},
      {"trailing garbage after the header", file_bytes("{} x", ""), {"malformed JSON"}},
      {"header is an array", file_bytes("[1, 2]", ""), {"not a JSON object"}},
      {"header is a string", file_bytes(R"("w")", ""), {"not a JSON object"}},
      {"entry is not an object", file_bytes(R"({"w": 5})", ""), {"tensor 'w'", "not an object"}},
      {"unknown dtype", bad(R"("Q4")", "[4]", "[0, 16]"), {"tensor 'w'", "unsupported dtype 'Q4'"}},
      {"dtype not a string", bad("4", "[4]", "[0, 16]"), {"tensor 'w'", "dtype"}},
      {"missing dtype", file_bytes(one(R"("shape": [4], "data_offsets": [0, 16])"), data16), {"tensor 'w'", "dtype"}},
      {"missing shape", file_bytes(one(R"("dtype": "F32", "data_offsets": [0, 16])"), data16), {"tensor 'w'", "shape"}},
      {"missing offsets", file_bytes(one(R"("dtype": "F32", "shape": [4])"), data16), {"tensor 'w'", "data_offsets"}},
      {"one offset", bad(R"("F32")", "[4]", "[16]"), {"tensor 'w'", "data_offsets"}},
      {"three offsets", bad(R"("F32")", "[4]", "[0, 8, 16]"), {"tensor 'w'", "data_offsets"}},
      {"float offsets", bad(R"("F32")", "[4]", "[0.0, 16.0]"), {"tensor 'w'", "non-negative integers"}},
      {"shape x dtype larger than the span",
       bad(R"("F32")", "[2, 3]", "[0, 16]"),
       {"tensor 'w'", "[2, 3]", "24 bytes but its span is 16"}},
      {"shape x dtype smaller than the span",
       bad(R"("F64")", "[1]", "[0, 16]"),
       {"tensor 'w'", "8 bytes but its span is 16"}},
      {"end past the data", bad(R"("F32")", "[8]", "[0, 32]"), {"tensor 'w'", "outside the data section of 16 bytes"}},
      {"begin past the data", bad(R"("F32")", "[0]", "[400, 400]"), {"tensor 'w'", "outside the data section"}},
      {"begin after end", bad(R"("F32")", "[2]", "[16, 8]"), {"tensor 'w'", "begin 16 > end 8"}},
      {"negative offsets", bad(R"("U8")", "[4]", "[-4, 0]"), {"tensor 'w'", "non-negative integers"}},
      {"offsets beyond 64 bits",
       bad(R"("U8")", "[4]", "[18446744073709551616, 4]"),
       {"tensor 'w'", "non-negative integers"}},
      {"overlapping tensors",
       two(entry(R"("F32")", "[2]", "[0, 8]"), entry(R"("F32")", "[2]", "[4, 12]")),
       {"'a'", "'b'", "overlap"}},
      {"a tensor inside another",
       two(entry(R"("F32")", "[4]", "[0, 16]"), entry(R"("U8")", "[2]", "[4, 6]")),
       {"'a'", "'b'", "overlap"}},
      {"the same tensor twice",
       file_bytes(R"({"w": {)" + entry(R"("F32")", "[2]", "[0, 8]") + R"(}, "w": {)" +
                      entry(R"("F32")", "[2]", "[8, 16]") + "}}",
                  data16),
       {"'w'", "twice"}},
      {"a key spelled with an escape and without",
       file_bytes(R"({"w": {)" + entry(R"("F32")", "[2]", "[0, 8]") + R"(}, "\u0077": {)" +
                      entry(R"("F32")", "[2]", "[8, 16]") + "}}",
                  data16),
       {"'w'", "twice"}},
      {"a repeated field in one entry",
       file_bytes(one(R"("dtype": "U8", )" + entry(R"("F32")", "[4]", "[0, 16]")), data16),
       {"'dtype'", "twice"}},
      {"float shape entry", bad(R"("U8")", "[2.5]", "[0, 2]"), {"tensor 'w'", "shape entries"}},
      {"string shape entry", bad(R"("U8")", R"(["2"])", "[0, 2]"), {"tensor 'w'", "shape entries"}},
      {"null shape entry", bad(R"("U8")", "[null]", "[0, 0]"), {"tensor 'w'", "shape entries"}},
      {"nested shape entry", bad(R"("U8")", "[[2]]", "[0, 2]"), {"tensor 'w'", "shape entries"}},
      {"negative shape entry", bad(R"("U8")", "[-4]", "[0, 4]"), {"tensor 'w'", "shape entries"}},
      {"shape not an array", bad(R"("U8")", "4", "[0, 4]"), {"tensor 'w'", "shape"}},
      {"shape overflowing 64 bits", bad(R"("F32")", "[4294967296, 4294967296]", "[0, 0]"), {"tensor 'w'", "overflows"}},
      {"shape whose byte size overflows",
       bad(R"("F64")", "[2305843009213693952]", "[0, 0]"),
       {"tensor 'w'", "overflows"}},
      // A zero dim makes the element count 0, but the other dims must still be sane sizes.
      {"huge dim behind a zero dim",
       bad(R"("F32")", "[0, 9223372036854775808]", "[0, 0]"),
       {"tensor 'w'", "overflows"}},
      {"metadata not an object", file_bytes(R"({"__metadata__": [1]})", ""), {"__metadata__"}},
      {"metadata value not a string",
       file_bytes(R"({"__metadata__": {"format": 1}})", ""),
       {"__metadata__", "'format'"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string path = dir.file("bad.safetensors");
    write_bytes(path, c.bytes);
    std::vector<std::string> parts = c.message;
    parts.push_back(path);
    expect_error([&] { SafetensorsFile::open(path); }, parts);
  }
}

TEST(SafetensorsErrors, NotAFile) {
  test::TempDir dir;
  expect_error([&] { SafetensorsFile::open(dir.file("absent.safetensors")); },
               {dir.file("absent.safetensors"), "cannot open"});
  expect_error([&] { SafetensorsFile::open(dir.path()); }, {dir.path(), "not a regular file"});
  write_bytes(dir.file("ok.safetensors"), file_bytes("{}", ""));
  SafetensorsFile f = SafetensorsFile::open(dir.file("ok.safetensors"));
  expect_error([&] { f.get("nope"); }, {dir.file("ok.safetensors"), "'nope'"});
}

TEST(Safetensors, UnusualButValidFiles) {
  test::TempDir dir;
  const std::string path = dir.file("ok.safetensors");
  // An empty header and no data.
  write_bytes(path, file_bytes("{}", ""));
  EXPECT_TRUE(SafetensorsFile::open(path).names().empty());

  // A header of odd length (padding is optional), so the F32 data is not 4-byte aligned; a scalar;
  // an empty tensor at the same offset as a non-empty one; a hole in the data section.
  const float vals[3] = {1.5f, -2.25f, 3.0f};
  const double scalar = -7.125;
  std::string data(4, 'h');  // a hole that no tensor covers
  data.append(reinterpret_cast<const char*>(vals), sizeof vals);
  data.append(reinterpret_cast<const char*>(&scalar), sizeof scalar);
  const std::string header =
      R"({"v": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]},)"
      R"( "s": {"dtype": "F64", "shape": [], "data_offsets": [16, 24]},)"
      R"( "e": {"dtype": "BF16", "shape": [0, 5], "data_offsets": [4, 4]}, "__metadata__": {"format": "pt"}}   )";
  ASSERT_NE((8 + header.size()) % 4, 0u) << "the test needs misaligned data";
  write_bytes(path, file_bytes(header, data));
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(test::to_f32v(f.get("v")), std::vector<float>(vals, vals + 3));
  Tensor s = f.get("s");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(test::to_f64(s), std::vector<double>{scalar});
  EXPECT_EQ(f.get("e").numel(), 0);
  Tensor v = f.get("v").to_f32();  // a misaligned F32 tensor is copied, not viewed
  EXPECT_EQ(std::vector<float>(v.f32(), v.f32() + 3), std::vector<float>(vals, vals + 3));
}

TEST(Safetensors, TensorsOutliveTheirFile) {
  test::TempDir dir;
  Tensor t = Tensor::zeros(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) t.f32()[i] = float(i) * 0.5f;
  save_safetensors(dir.file("a.safetensors"), {{"t", t}});
  Tensor view;
  {
    SafetensorsFile f = SafetensorsFile::open(dir.file("a.safetensors"));
    view = f.get("t");
  }
  fs::remove(dir.file("a.safetensors"));
  EXPECT_EQ(std::memcmp(view.data, t.data, t.nbytes()), 0);
}

// One tensor of each dtype with random bytes, including a scalar and an empty tensor.
NamedTensors every_dtype(std::mt19937_64& rng) {
  NamedTensors r;
  const std::vector<std::pair<DType, Shape>> kinds = {
      {DType::F32, {3, 5}}, {DType::F16, {7}},    {DType::BF16, {2, 1, 3}}, {DType::F64, {}},
      {DType::I64, {4}},    {DType::I32, {3, 3}}, {DType::U8, {11}},        {DType::F32, {0, 4}}};
  for (size_t i = 0; i < kinds.size(); ++i) {
    Tensor t = Tensor::zeros(kinds[i].first, kinds[i].second);
    for (size_t b = 0; b < t.nbytes(); ++b) static_cast<uint8_t*>(t.data)[b] = uint8_t(rng());
    r.emplace_back(std::string("t") + std::to_string(i) + "_" + dtype_name(t.dtype), t);
  }
  return r;
}

TEST(Safetensors, RoundTripEveryDtype) {
  test::TempDir dir;
  std::mt19937_64 rng(7);
  const NamedTensors tensors = every_dtype(rng);
  const std::string path = dir.file("rt.safetensors");
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names().size(), tensors.size());
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}}));
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.has(name));
    Tensor g = f.get(name);
    EXPECT_EQ(g.dtype, t.dtype);
    EXPECT_EQ(g.shape, t.shape);
    ASSERT_EQ(g.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(g.data, t.data, t.nbytes()), 0);
  }
  // The format allows no gaps between tensors, but the writer pads the header so that the data
  // section, and so the first tensor, starts 8-byte aligned.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.get(tensors.front().first).data) % 8, 0u);
}

TEST(Safetensors, WriterRejectsBadNames) {
  test::TempDir dir;
  Tensor t = Tensor::zeros(DType::F32, {2});
  expect_error([&] { save_safetensors(dir.file("x.safetensors"), {{"a", t}, {"a", t}}); }, {"duplicate", "'a'"});
  expect_error([&] { save_safetensors(dir.file("x.safetensors"), {{"__metadata__", t}}); }, {"__metadata__"});
  expect_error([&] { save_safetensors(dir.file("x.safetensors"), {{"\xff\xfe", t}}); }, {dir.file("x.safetensors")});
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a refused write leaves no file behind";
}

TEST(Safetensors, WriterIsAtomic) {
  test::TempDir dir;
  std::mt19937_64 rng(8);
  const std::string path = dir.file("m.safetensors");
  Tensor big = Tensor::zeros(DType::F32, {1000});
  save_safetensors(path, {{"big", big}});
  const auto big_size = fs::file_size(path);
  // Replacing a larger file leaves exactly the new one: no tail of the old, no temporary file.
  const NamedTensors small = every_dtype(rng);
  save_safetensors(path, small);
  EXPECT_LT(fs::file_size(path), big_size);
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_FALSE(f.has("big"));
  EXPECT_EQ(f.names().size(), small.size());
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  EXPECT_EQ(entries, std::vector<std::string>{"m.safetensors"});
  // A write that fails keeps the old file whole.
  const std::string before = read_bytes(path);
  Tensor t = Tensor::zeros(DType::F32, {2});
  EXPECT_THROW(save_safetensors(path, {{"a", t}, {"a", t}}), Error);
  EXPECT_EQ(read_bytes(path), before);
  // A missing directory is an error naming the path.
  expect_error(
      [&] {
        save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", t}});
      },
      {"no/such/dir/x.safetensors"});
  // Text files go through the same discipline.
  write_file_atomic(dir.file("c.json"), "first, longer text\n");
  write_file_atomic(dir.file("c.json"), "second\n");
  EXPECT_EQ(read_bytes(dir.file("c.json")), "second\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
}

// Random damage to a valid file: the reader must refuse it with m3::Error or accept it with every
// tensor readable within the file. Run under ASan + UBSan, this proves no read goes astray.
TEST(Safetensors, RandomMutationsNeverCrash) {
  test::TempDir dir;
  std::mt19937_64 rng(9);
  const std::string path = dir.file("base.safetensors");
  save_safetensors(path, every_dtype(rng), {{"format", "pt"}});
  const std::string base = read_bytes(path);
  uint64_t hlen = 0;
  std::memcpy(&hlen, base.data(), 8);
  auto pick = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
  int refused = 0, accepted = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string b = base;
    const int mutations = int(pick(1, 3));
    for (int m = 0; m < mutations && !b.empty(); ++m) {
      switch (pick(0, 5)) {
        case 0:
          b[pick(0, b.size() - 1)] = char(rng());
          break;  // any byte
        case 1:
          b.resize(pick(0, b.size()));
          break;   // truncation
        case 2: {  // a digit of the header
          std::vector<size_t> digits;
          for (size_t i = 8; i < std::min<size_t>(b.size(), 8 + hlen); ++i)
            if (b[i] >= '0' && b[i] <= '9') digits.push_back(i);
          if (!digits.empty()) b[digits[pick(0, digits.size() - 1)]] = char('0' + pick(0, 9));
          break;
        }
        case 3: {  // the header length, off by a little
          uint64_t n = hlen + pick(0, 32) - 16;
          std::memcpy(b.data(), &n, std::min<size_t>(8, b.size()));
          break;
        }
        case 4:
          b.erase(pick(0, b.size() - 1), 1);
          break;  // a byte removed (shifts the header)
        case 5:
          b.insert(pick(0, b.size()), 1, char(rng()));
          break;
      }
    }
    write_bytes(path, b);
    try {
      SafetensorsFile f = SafetensorsFile::open(path);
      for (const auto& name : f.names()) {
        Tensor t = f.get(name);
        ASSERT_LE(static_cast<const char*>(t.data) + t.nbytes(), static_cast<const char*>(t.owner.get()) + b.size());
        test::to_f64(t);  // reads every element
      }
      ++accepted;
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(accepted, 10);  // damage to the data section alone is not detectable, and must read fine
}

}  // namespace
}  // namespace m3
