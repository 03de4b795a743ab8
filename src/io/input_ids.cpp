#include "io/input_ids.h"

#include <cstring>

#include "core/lazy_check.h"
#include "core/limits.h"
#include "m3/error.h"

namespace m3 {

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

InputIds read_input_ids(const SafetensorsFile& f, int64_t vocab) {
  const std::string& path = f.path();
  Tensor ids = f.get("input_ids");
  check(ids.shape.size() == 2, path + ": input_ids must be [batch, len], found " + shape_str(ids.shape));
  check(ids.dtype == DType::I64 || ids.dtype == DType::I32,
        path + ": input_ids must be I64 or I32, found " + dtype_name(ids.dtype));
  InputIds r{ids.shape[0], ids.shape[1], {}};
  check(r.batch >= 1 && r.len >= 1, path + ": input_ids is empty, shape " + shape_str(ids.shape));
  // Each sequence holds a decode state.
  check(r.batch <= limits::kSequences, path + ": input_ids holds " + std::to_string(r.batch) +
                                           " sequences, more than the limit of " +
                                           std::to_string(limits::kSequences) + " (kSequences, src/core/limits.h)");
  // The shape's element count is bounded by the file's size; this bounds the forward pass.
  check(ids.numel() <= limits::kPromptTokens, path + ": input_ids holds " + std::to_string(ids.numel()) +
                                                   " tokens, more than the limit of " +
                                                   std::to_string(limits::kPromptTokens) +
                                                   " (kPromptTokens, src/core/limits.h)");
  r.tokens.resize(size_t(ids.numel()));
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t v = ids.dtype == DType::I64 ? element<int64_t>(ids, i) : element<int32_t>(ids, i);
    check(v >= 0 && v < vocab, [&] {
      return path + ": input_ids holds " + std::to_string(v) + ", outside [0, " + std::to_string(vocab) + ")";
    });
    r.tokens[size_t(i)] = int32_t(v);
  }
  return r;
}

}  // namespace m3
