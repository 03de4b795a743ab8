// input_ids of a safetensors file, shared by `m3 logits` and `m3 grad`.
#include <cstring>

#include "m3/error.h"
#include "m3/safetensors.h"
#include "tools/commands.h"

namespace m3::cli {

namespace {

// Element i of an integer tensor. Copied out byte-wise: a safetensors data section is only
// byte-aligned, so a typed pointer into the mapping may be misaligned.
template <class T>
int64_t element(const Tensor& t, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(t.data) + size_t(i) * sizeof(T), sizeof(T));
  return int64_t(v);
}

}  // namespace

InputIds read_input_ids(const std::string& path, int64_t vocab) {
  SafetensorsFile in = SafetensorsFile::open(path);
  Tensor ids = in.get("input_ids");
  check(ids.shape.size() == 2, path + ": input_ids must be [batch, len], found " + shape_str(ids.shape));
  check(ids.dtype == DType::I64 || ids.dtype == DType::I32,
        path + ": input_ids must be I64 or I32, found " + dtype_name(ids.dtype));
  InputIds r{ids.shape[0], ids.shape[1], {}};
  r.tokens.resize(size_t(r.batch * r.len));
  for (int64_t i = 0; i < r.batch * r.len; ++i) {
    const int64_t v = ids.dtype == DType::I64 ? element<int64_t>(ids, i) : element<int32_t>(ids, i);
    check(v >= 0 && v < vocab, path + ": input_ids holds " + std::to_string(v) + ", outside [0, " + std::to_string(vocab) + ")");
    r.tokens[size_t(i)] = int32_t(v);
  }
  return r;
}

}  // namespace m3::cli
