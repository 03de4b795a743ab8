// cuBLASLt products for linear_fwd. Row-major y[T, out] = x[T, in] · W[out, in]ᵀ is, in cuBLAS's
// column-major terms, Yᶜ[out, T] = op(Wᶜ)ᵀ · Xᶜ with Wᶜ = W read as [in, out] (ld in), Xᶜ = x
// read as [in, T] (ld ldx): m = out, n = T, k = in, transa = T. Plans (descriptors and the
// heuristic's algorithm) are cached per shape, strides and pointer alignment.
#include <cuda_bf16.h>

#include <map>
#include <mutex>
#include <tuple>

#include "cuda/check.h"
#include "cuda/linear.h"
#include "cuda/linear_gemv.h"

namespace m3::cuda {

namespace {

// x (row stride ldx) rounded to bf16, contiguous [T, in].
__global__ void to_bf16_rows(__nv_bfloat16* __restrict__ out, const float* __restrict__ x, int64_t T, int64_t in,
                             int64_t ldx) {
  const int64_t n = T * in;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / in, c = i - t * in;
    out[i] = __float2bfloat16_rn(x[t * ldx + c]);
  }
}

__global__ void add_bias_rows(float* __restrict__ y, const float* __restrict__ bias, int64_t T, int64_t out,
                              int64_t ldy) {
  const int64_t n = T * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / out, c = i - t * out;
    y[t * ldy + c] += bias[c];
  }
}

int grid_for(int64_t n, int threads) {
  const int64_t g = (n + threads - 1) / threads;
  return int(std::min<int64_t>(std::max<int64_t>(g, 1), 65535 * 16));
}

int alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (int b : {256, 128, 64, 32, 16, 8, 4})
    if (a % uintptr_t(b) == 0) return b;
  return 2;
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

using PlanKey = std::tuple<cublasLtHandle_t, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int>;

Plan make_plan(Context& ctx, bool bf16, int64_t T, int64_t in, int64_t out, int64_t ldb, int64_t ldy, int align_a,
               int align_b, int align_c) {
  Plan p;
  const cudaDataType_t ab = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  M3_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  M3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  M3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  M3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab, uint64_t(in), uint64_t(out), in));
  M3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab, uint64_t(in), uint64_t(T), ldb));
  M3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, uint64_t(out), uint64_t(T), ldy));
  cublasLtMatmulPreference_t pref;
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx.lt_workspace_bytes;
  const uint32_t aa = uint32_t(align_a), ba = uint32_t(align_b), ca = uint32_t(align_c);
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ba, sizeof ba));
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ca, sizeof ca));
  M3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ca, sizeof ca));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  M3_CUBLAS_CHECK(st);
  check(found > 0, "cuBLASLt has no algorithm for a " + std::to_string(T) + "x" + std::to_string(in) + " · " +
                       std::to_string(in) + "x" + std::to_string(out) + (bf16 ? " bf16" : " f32") + " product");
  p.algo = result.algo;
  return p;
}

}  // namespace

void linear_fwd(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t T, int64_t in,
                int64_t out, int64_t ldx, int64_t ldy) {
  if (ldx < 0) ldx = in;
  if (ldy < 0) ldy = out;
  if (T > 0 && out > 0 && W.rows == out && W.cols == in && linear_bf16_gemv_fits(W, T, in))
    linear_bf16_gemv(ctx, y, x, W, bias, in, out);
  else
    linear_fwd_cublaslt(ctx, y, x, W, bias, T, in, out, ldx, ldy);
}

void linear_fwd_cublaslt(Context& ctx, float* y, const float* x, const Matrix& W, const float* bias, int64_t T,
                         int64_t in, int64_t out, int64_t ldx, int64_t ldy) {
  if (ldx < 0) ldx = in;
  if (ldy < 0) ldy = out;
  check(W.rows == out && W.cols == in, "linear_fwd: weight is " + std::to_string(W.rows) + "x" +
                                           std::to_string(W.cols) + ", expected " + std::to_string(out) + "x" +
                                           std::to_string(in));
  if (T <= 0 || out <= 0) return;
  if (in == 0) {  // an empty sum
    M3_CUDA_CHECK(cudaMemset2DAsync(y, size_t(ldy) * sizeof(float), 0, size_t(out) * sizeof(float), size_t(T), ctx.stream));
  } else {
    const void* B = x;
    int64_t ldb = ldx;
    if (W.bf16) {
      // Products in bf16 with float32 accumulation: x is rounded once, like the reference's
      // autocast of activations entering a bf16 linear layer.
      auto* xbp = reinterpret_cast<__nv_bfloat16*>(ctx.linear_x_bf16.get(ctx, size_t(T * in)));
      to_bf16_rows<<<grid_for(T * in, 256), 256, 0, ctx.stream>>>(xbp, x, T, in, ldx);
      M3_CUDA_LAUNCH_CHECK();
      B = xbp;
      ldb = in;
    }
    static std::mutex mu;
    static std::map<PlanKey, Plan> plans;
    const PlanKey key{ctx.lt, W.bf16, T, in, out, ldb, ldy, alignment(W.data), alignment(B), alignment(y)};
    Plan plan;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = plans.find(key);
      if (it == plans.end())
        it = plans.emplace(key, make_plan(ctx, W.bf16, T, in, out, ldb, ldy, std::get<7>(key), std::get<8>(key),
                                          std::get<9>(key))).first;
      plan = it->second;
    }
    const float alpha = 1.0f, beta = 0.0f;
    M3_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, plan.op, &alpha, W.data, plan.a, B, plan.b, &beta, y, plan.c, y, plan.c,
                                   &plan.algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream));
  }
  if (bias) {
    add_bias_rows<<<grid_for(T * out, 256), 256, 0, ctx.stream>>>(y, bias, T, out, ldy);
    M3_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace m3::cuda
