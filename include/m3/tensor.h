// Tensors: a dtype, a shape, row-major contiguous data and a shared owner that keeps the bytes
// alive (a heap buffer or a memory-mapped file). Compute happens in float32; other dtypes are
// converted on load (to_f32).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace m3 {

enum class DType { F32, F16, BF16, F64, I64, I32, U8 };

size_t dtype_size(DType t);
// The safetensors name ("F32", "BF16", ...).
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

struct Tensor {
  DType dtype = DType::F32;
  Shape shape;
  void* data = nullptr;
  std::shared_ptr<void> owner;  // keeps `data` alive

  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
  const float* f32() const;  // checks dtype == F32
  float* f32();

  // A zero-initialised heap tensor.
  static Tensor zeros(DType t, Shape s);
  // A float32 copy (or this tensor itself, shared, when it is already float32 and aligned).
  Tensor to_f32() const;
  // A deep copy converted to `t` (float types only; rounds to nearest even for f16/bf16).
  Tensor convert(DType t) const;
};

float bf16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float v);

}  // namespace m3
