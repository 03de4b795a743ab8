// Warp-level bf16 and fp16 tensor-core products (PTX mma.sync m16n8k16, fp32 accumulation) on
// tiles kept in shared memory, for the chunked scans. Fragment layouts are PTX ISA §9.7.13.4.7 (lane = 4·g + t):
//   A 16×16 row-major: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..);
//   B 16×8:            b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g);
//   C 16×8 fp32:       c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1).
// Operands are loaded with ldmatrix from 16-bit tiles stored either way round (warp_mma).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace m3::cuda {

struct MmaLane {
  int g, t;  // lane / 4, lane % 4
};

__device__ inline MmaLane mma_lane() {
  const int lane = int(threadIdx.x) % 32;
  return {lane / 4, lane % 4};
}

// ldmatrix: four 8×8 16-bit matrices, lanes 8q..8q+7 giving the 16-byte rows of matrix q; .trans
// hands each lane the transposed matrix's elements. Rows must be 16-byte aligned.
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(unsigned(__cvta_generic_to_shared(row))));
}
__device__ inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(unsigned(__cvta_generic_to_shared(row))));
}
__device__ inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(unsigned(__cvta_generic_to_shared(row))));
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(unsigned(__cvta_generic_to_shared(row))));
}

// c += a · b.
__device__ inline void mma_bf16_16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ inline void mma_f16_16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <class T>
__device__ inline void mma_16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16 operands");
  if constexpr (std::is_same_v<T, __half>) mma_f16_16816(c, a, b);
  else mma_bf16_16816(c, a, b);
}

// acc[j] += A[m0..m0+15][0..K) · B[0..K)[n0 + 8j .. n0 + 8j + 7] for j < NT (K a multiple of 16),
// operands of type T (bf16 or fp16) in shared memory:
//   A_KM false: A stored [m][k] (row stride lda);  true: stored as its transpose [k][m];
//   B_KN false: B stored as its transpose [n][k];  true: stored [k][n] (row stride ldb).
// Each pair of B fragments comes from one ldmatrix (lane L addresses row L % 8 of matrix L / 8); an
// odd last tile from one of two matrices (lanes 0..15's addresses).
template <int NT, bool A_KM, bool B_KN, class T>
__device__ inline void warp_mma(float (&acc)[NT][4], const T* A, int lda, int m0, const T* B, int ldb, int n0,
                                int K) {
  const int L = int(threadIdx.x) % 32, r8 = L & 7, q = L >> 3;
  // Matrices a0..a3 = (rows +0, k +0), (rows +8, k +0), (rows +0, k +8), (rows +8, k +8).
  const T* a_row = A_KM ? A + (r8 + (q >> 1) * 8) * lda + m0 + (q & 1) * 8
                                    : A + (m0 + r8 + (q & 1) * 8) * lda + (q >> 1) * 8;
  // Matrices (tile n, k +0), (tile n, k +8), (tile n + 8, k +0), (tile n + 8, k +8).
  const T* b_row = B_KN ? B + (r8 + (q & 1) * 8) * ldb + n0 + (q >> 1) * 8
                                    : B + (n0 + r8 + (q >> 1) * 8) * ldb + (q & 1) * 8;
  const int a_step = A_KM ? 16 * lda : 16, b_step = B_KN ? 16 * ldb : 16;
  const int b_tile = B_KN ? 16 : 16 * ldb;  // two n tiles further
  for (int k0 = 0; k0 < K; k0 += 16, a_row += a_step, b_row += b_step) {
    uint32_t a[4];
    if (A_KM) ldmatrix_x4_trans(a, a_row);
    else ldmatrix_x4(a, a_row);
#pragma unroll
    for (int j = 0; j + 1 < NT; j += 2) {
      uint32_t b[4];
      if (B_KN) ldmatrix_x4_trans(b, b_row + (j / 2) * b_tile);
      else ldmatrix_x4(b, b_row + (j / 2) * b_tile);
      const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
      mma_16816<T>(acc[j], a, b0);
      mma_16816<T>(acc[j + 1], a, b1);
    }
    if constexpr (NT % 2 == 1) {
      uint32_t b[2];
      if (B_KN) ldmatrix_x2_trans(b, b_row + (NT / 2) * b_tile);
      else ldmatrix_x2(b, b_row + (NT / 2) * b_tile);
      mma_16816<T>(acc[NT - 1], a, b);
    }
  }
}

__device__ inline void store_bf16x2(__nv_bfloat16* p, float lo, float hi) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(lo, hi);
}

// Four values to p[0..3] (8-byte aligned) in one store.
__device__ inline void store_bf16x4(__nv_bfloat16* p, float a, float b, float c, float d) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&lo);
  u.y = *reinterpret_cast<const uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(p) = u;
}

__device__ inline void store_f16x2(__half* p, float lo, float hi) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(lo, hi);
}

// Four values to p[0..3] (8-byte aligned) as fp16 in one store; a value beyond fp16's largest
// finite magnitude becomes ±65504 rather than ±inf (NaN stays NaN).
__device__ inline void store_f16x4_sat(__half* p, float a, float b, float c, float d) {
  auto sat = [](float v) { return fabsf(v) > 65504.0f ? copysignf(65504.0f, v) : v; };
  const __half2 lo = __floats2half2_rn(sat(a), sat(b)), hi = __floats2half2_rn(sat(c), sat(d));
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&lo);
  u.y = *reinterpret_cast<const uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(p) = u;
}

}  // namespace m3::cuda
