// Encode throughput of m3::Tokenizer on C++ source text (the libstdc++ headers of this machine),
// single thread. scripts/bench_tokenizer_hf.py runs the same text through the Hugging Face
// tokenizers library for comparison.
//
// The text: /usr/include/c++/*/bits/*.h sorted by path, concatenated, cut to 8 MiB (override the
// size with M3_BENCH_TEXT_MB). Extra tokenizer: M3_BENCH_TOKENIZER=/path/to/tokenizer.json.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "m3/tokenizer.h"

namespace {

namespace fs = std::filesystem;

const std::string& bench_text() {
  static const std::string text = [] {
    const char* mb = std::getenv("M3_BENCH_TEXT_MB");
    const size_t limit = static_cast<size_t>((mb ? std::atof(mb) : 8.0) * (1 << 20));
    std::vector<std::string> paths;
    for (const auto& version : fs::directory_iterator("/usr/include/c++")) {
      const fs::path bits = version.path() / "bits";
      if (!fs::is_directory(bits)) continue;
      for (const auto& f : fs::directory_iterator(bits))
        if (f.path().extension() == ".h") paths.push_back(f.path().string());
    }
    std::sort(paths.begin(), paths.end());
    std::string all;
    for (const std::string& p : paths) {
      if (all.size() >= limit) break;
      std::ifstream in(p, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      all += ss.str();
    }
    all.resize(std::min(all.size(), limit));
    return all;
  }();
  return text;
}

void encode(benchmark::State& state, const std::string& path) {
  const std::string& text = bench_text();
  const m3::Tokenizer tok = m3::Tokenizer::load(path);
  size_t n_ids = 0;
  for (auto _ : state) {
    const auto ids = tok.encode(text);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_ids);
}

void decode(benchmark::State& state, const std::string& path) {
  const m3::Tokenizer tok = m3::Tokenizer::load(path);
  const auto ids = tok.encode(bench_text());
  for (auto _ : state) {
    const std::string text = tok.decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bench_text().size()));
}

const int registered = [] {
  // Every tokenizer.json of the test data (not the *.cases.json beside them), by name.
  const fs::path data = fs::path(M3_SOURCE_DIR) / "tests" / "data" / "tokenizer";
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(data))
    if (f.path().extension() == ".json" && f.path().stem().extension() != ".cases") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    benchmark::RegisterBenchmark(("TokenizerEncode/" + f.stem().string()).c_str(), encode, f.string())
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("TokenizerDecode/llama3", decode, (data / "llama3.json").string())
      ->Unit(benchmark::kMillisecond);
  if (const char* extra = std::getenv("M3_BENCH_TOKENIZER"))
    benchmark::RegisterBenchmark("TokenizerEncode/custom", encode, std::string(extra))->Unit(benchmark::kMillisecond);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
