// Shared by the CUDA tests: whether this machine has a GPU (each test skips without one, saying
// why), the CUDA backends under test, the golden folder, fresh random seeds, and the comparison
// the tolerances are stated in (per-row max-abs error relative to the row's largest value, with
// state buffers grouped into rows by state_rows). The CPU
// backend and host ↔ backend copies come from layer_states.h, random arrays and the L2 error from
// testing.h.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "layer_states.h"
#include "m3/device.h"
#include "m3/error.h"
#include "m3/tensor.h"
#include "model/backend.h"
#include "testing.h"

namespace m3::test {

// Tolerances of the CUDA backend against the CPU one (F32: float32 everywhere, only the order of
// sums differs; BF16: matrices and the activations entering them rounded to bf16).
constexpr double kTolF32 = 1e-4;
constexpr double kTolBF16 = 2e-2;
inline double tolerance(Precision p) { return p == Precision::F32 ? kTolF32 : kTolBF16; }
inline const char* precision_name(Precision p) { return p == Precision::F32 ? "f32" : "bf16"; }

}  // namespace m3::test

namespace m3 {
// How GoogleTest prints a Precision parameter (found by argument-dependent lookup in m3).
inline void PrintTo(Precision p, std::ostream* os) { *os << test::precision_name(p); }
}  // namespace m3

namespace m3::test {

// An m3::Error from opening the CUDA backend that means "this machine has no usable GPU" (any
// other error is a failure of the backend, not a reason to skip).
inline bool says_no_device(const std::string& what) {
  std::string s = what;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* p : {"no cuda gpu", "no cuda-capable device", "no cuda device", "no gpu", "cudaerrornodevice"})
    if (s.find(p) != std::string::npos) return true;
  return false;
}

// Empty when a CUDA device is usable; otherwise why not. Decided once: cudaGetDeviceCount failing
// or finding none, or the backend refusing to open for want of a device. Any other error opening
// the backend propagates (the test that asked fails with it).
inline const std::string& no_gpu_reason() {
  static const std::string reason = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
      return std::string("no GPU: cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + " (" +
             cudaGetErrorString(e) + ")";
    if (n == 0) return std::string("no GPU: cudaGetDeviceCount found no device");
    try {
      open_backend(parse_device("cuda", "f32"));
    } catch (const Error& err) {
      if (says_no_device(err.what())) return std::string("no GPU: ") + err.what();
      throw;
    }
    return std::string();
  }();
  return reason;
}

// Base of every CUDA test that needs a GPU: skipped, with the reason, on a machine without one.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!no_gpu_reason().empty()) GTEST_SKIP() << no_gpu_reason();
  }
};
template <class P>
class CudaTestWithParam : public CudaTest, public ::testing::WithParamInterface<P> {};

// One CUDA backend per precision for the whole run (each holds a stream and a cuBLASLt handle),
// never destroyed: freeing device memory from static destructors, after the CUDA runtime may have
// shut down, would fail at exit.
inline std::shared_ptr<Backend> cuda_backend(Precision p) {
  static auto* backends = new std::shared_ptr<Backend>[2];
  std::shared_ptr<Backend>& b = backends[p == Precision::F32 ? 0 : 1];
  if (!b) b = open_backend(parse_device("cuda", precision_name(p)));
  return b;
}

// The golden folder: $M3_GOLDEN_DIR when set (the GPU machine carries a copy inside the checkout),
// else the build's default beside the checkout.
inline std::string golden_dir() {
  const char* env = std::getenv("M3_GOLDEN_DIR");
  return env && *env ? std::string(env) : std::string(M3_GOLDEN_DIR);
}
// The checkout's tests/data: $M3_TESTDATA_DIR when set (scripts/gpu.sh points it at the GPU
// machine's copy), else the build's.
inline std::string testdata_dir() {
  const char* env = std::getenv("M3_TESTDATA_DIR");
  return env && *env ? std::string(env) : std::string(M3_TESTDATA_DIR);
}
// "data/NAME" is tests/data/NAME (the tiny models transformers built), anything else a folder of
// the golden data.
inline std::string golden_path(const std::string& rel) {
  return rel.starts_with("data/") ? testdata_dir() + "/" + rel.substr(5) : golden_dir() + "/" + rel;
}

// A fresh seed for every run ($M3_TEST_SEED reproduces one); put seed_note(seed) in a SCOPED_TRACE
// so that every failure names it.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("M3_TEST_SEED"); s && *s) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ uint64_t(rd());
}
inline std::string seed_note(uint64_t seed) {
  return "random seed " + std::to_string(seed) + " (rerun with M3_TEST_SEED=" + std::to_string(seed) + ")";
}

inline int64_t random_int(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// The value a float32 takes as bf16 (round to nearest even): what the CUDA backend multiplies
// with under BF16, so that the CPU reference can use the very same matrices.
inline Tensor rounded_to_bf16(const Tensor& t) { return t.convert(DType::BF16).convert(DType::F32); }

// got against want, both [rows, cols] row-major: for every row, max |got − want| over the row's
// largest |want| (a row of zeros must be matched exactly); the worst row must be within tol.
// Non-finite values fail. The message gives the worst row, its error, the first element off by
// more than tol there, and the L2 error over the whole array.
inline ::testing::AssertionResult rows_near(const std::vector<float>& got, const std::vector<float>& want,
                                            int64_t cols, double tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << ", expected " << want.size();
  if (cols <= 0 || want.size() % size_t(cols) != 0)
    return ::testing::AssertionFailure() << want.size() << " values are not rows of " << cols;
  const int64_t rows = int64_t(want.size()) / cols;
  double worst = 0, worst_scale = 0, num = 0, den = 0;
  int64_t worst_row = -1;
  for (int64_t r = 0; r < rows; ++r) {
    double scale = 0, err = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double g = got[size_t(r * cols + c)], w = want[size_t(r * cols + c)];
      scale = std::max(scale, std::abs(w));
      err = std::isfinite(g) ? std::max(err, std::abs(g - w)) : INFINITY;
      num += (g - w) * (g - w), den += w * w;
    }
    const double rel = err == 0 ? 0 : err / scale;  // any error over a row of zeros: infinite
    if (!(rel <= worst)) worst = rel, worst_scale = scale, worst_row = r;
  }
  if (worst <= tol) return ::testing::AssertionSuccess();
  ::testing::AssertionResult fail = ::testing::AssertionFailure();
  fail << "row " << worst_row << " of " << rows << " (" << cols << " columns) is off by " << worst
       << " of its largest value (tolerance " << tol << "); L2 error over all rows "
       << std::sqrt(num / std::max(den, 1e-300));
  for (int64_t c = 0; c < cols; ++c) {
    const size_t i = size_t(worst_row * cols + c);
    if (!(std::abs(double(got[i]) - double(want[i])) <= tol * worst_scale))
      return fail << "; first bad element: column " << c << " got " << got[i] << ", expected " << want[i];
  }
  return fail;
}

// A state buffer (a LayerState's, or a saved "layers.N.<buffer>") as the rows its comparison
// (rows_near) normalises by: a KV cache ("kv_k", "kv_v") per position; any other buffer as one row,
// since a value's error scales with the inputs it came from, not with itself (a Mamba-1 channel
// whose inputs nearly cancelled holds a state far below the rest, with their absolute error). The
// angle becomes (cos θ, sin θ): the engine keeps θ mod 2π.
inline std::pair<std::vector<float>, int64_t> state_rows(const std::string& name, const Shape& shape,
                                                         const std::vector<float>& data) {
  auto is = [&](const char* b) { return name == b || name.ends_with(std::string(".") + b); };
  if (is("kv_k") || is("kv_v"))
    return {data, shape.empty() || shape[0] == 0 ? 1 : int64_t(data.size()) / shape[0]};
  if (!is("angle")) return {data, std::max<int64_t>(1, int64_t(data.size()))};
  std::vector<float> cs;
  for (float t : data) cs.push_back(std::cos(t)), cs.push_back(std::sin(t));
  return {cs, std::max<int64_t>(1, int64_t(cs.size()))};
}

// n values from the backend's memory (to_backend of layer_states.h is the way there), after the
// work queued so far.
template <class T>
std::vector<T> to_host(Backend& be, const void* src, size_t n) {
  std::vector<T> v(n);
  be.synchronize();
  if (n > 0) be.download(v.data(), src, n * sizeof(T));
  return v;
}

}  // namespace m3::test
