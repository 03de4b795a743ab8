// Checkpoint load time from the page cache (issue 11, item 6): Model::load of the directory in
// M3_BENCH_CHECKPOINT (`m3 init --preset mamba3-130m DIR` writes one), which validates the config,
// maps the safetensors files, checks every tensor's dtype, shape and values (all finite) and builds
// the CPU model on the mapped float32 data (no copy). Bytes/s counts the checkpoint's files. A
// warm-up load first brings the files into the page cache. bench/RESULTS.md records runs.
//
//   M3_BENCH_CHECKPOINT=/tmp/m3-130m build/m3_bench --benchmark_filter=Load
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "m3/model.h"

namespace {

namespace fs = std::filesystem;

void load(benchmark::State& state, const std::string& dir) {
  int64_t bytes = 0;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.is_regular_file()) bytes += int64_t(f.file_size());
  benchmark::DoNotOptimize(m3::Model::load(dir));  // warm-up: the page cache
  for (auto _ : state) {
    m3::Model m = m3::Model::load(dir);
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}

const int registered = [] {
  if (const char* dir = std::getenv("M3_BENCH_CHECKPOINT"))
    benchmark::RegisterBenchmark("Load/checkpoint", load, std::string(dir))->Unit(benchmark::kMillisecond)->UseRealTime();
  return 0;
}();

}  // namespace
