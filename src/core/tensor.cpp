#include "m3/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include "m3/error.h"

namespace m3 {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F64: case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view n) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::U8})
    if (n == dtype_name(t)) return t;
  return std::nullopt;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

const float* Tensor::f32() const {
  check(dtype == DType::F32, std::string("expected an F32 tensor, found ") + dtype_name(dtype));
  return static_cast<const float*>(data);
}
float* Tensor::f32() {
  check(dtype == DType::F32, std::string("expected an F32 tensor, found ") + dtype_name(dtype));
  return static_cast<float*>(data);
}

Tensor Tensor::zeros(DType t, Shape s) {
  Tensor r;
  r.dtype = t;
  r.shape = std::move(s);
  // 64-byte alignment so that SIMD loads of rows are aligned; at least one byte so data != null.
  // Tensors of a huge page or more (weight matrices) are placed on huge pages where the kernel
  // allows it: decode streams every weight once per token, and with 4 KiB pages the TLB misses
  // of that stream cost a measurable part of the read bandwidth (bench/RESULTS.md).
  const size_t align = r.nbytes() >= kHugePage ? kHugePage : 64;
  size_t bytes = (std::max<size_t>(r.nbytes(), 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, bytes);
  if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
  if (align == kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
  std::memset(p, 0, bytes);
  r.data = p;
  r.owner = std::shared_ptr<void>(p, std::free);
  return r;
}

float bf16_to_f32(uint16_t v) {
  uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                         // round to nearest even
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { ++e; man <<= 1; } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow (after rounding) -> inf
  if (a < 0x38800000u) {                                  // subnormal or zero in half
    float af;
    std::memcpy(&af, &a, 4);
    return uint16_t(sign | uint32_t(std::nearbyint(af * 16777216.0f)));  // 2^24 = 1/min subnormal
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return uint16_t(sign | (r >> 13));
}

namespace {

// Element i of an array of T that may not be aligned for T (a mapped file aligns tensors only
// when its header length is a multiple of 8).
template <class T>
T load_unaligned(const void* data, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(data) + size_t(i) * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

Tensor Tensor::convert(DType t) const {
  check(t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16,
        std::string("cannot convert to ") + dtype_name(t) + ": conversions produce float tensors");
  Tensor r = zeros(t, shape);
  int64_t n = numel();
  auto load = [&](int64_t i) -> double {
    switch (dtype) {
      case DType::F32: return load_unaligned<float>(data, i);
      case DType::F64: return load_unaligned<double>(data, i);
      case DType::F16: return f16_to_f32(load_unaligned<uint16_t>(data, i));
      case DType::BF16: return bf16_to_f32(load_unaligned<uint16_t>(data, i));
      case DType::I64: return double(load_unaligned<int64_t>(data, i));
      case DType::I32: return load_unaligned<int32_t>(data, i);
      case DType::U8: return load_unaligned<uint8_t>(data, i);
    }
    return 0;
  };
  for (int64_t i = 0; i < n; ++i) {
    double v = load(i);
    switch (t) {
      case DType::F32: r.ptr<float>()[i] = float(v); break;
      case DType::F64: r.ptr<double>()[i] = v; break;
      case DType::F16: r.ptr<uint16_t>()[i] = f32_to_f16(float(v)); break;
      case DType::BF16: r.ptr<uint16_t>()[i] = f32_to_bf16(float(v)); break;
      default: break;  // excluded above
    }
  }
  return r;
}

Tensor Tensor::to_f32() const {
  if (dtype == DType::F32 && reinterpret_cast<uintptr_t>(data) % alignof(float) == 0) return *this;
  return convert(DType::F32);
}

}  // namespace m3
