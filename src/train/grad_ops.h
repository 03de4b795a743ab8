// Forward and backward of the basic training ops on plain row-major arrays, templated on the
// scalar type (float for training, double for gradient checks). Shapes are arguments; memory is
// the caller's. Backward functions ADD into parameter gradients (accumulation over micro-batches)
// and into input gradients named "accumulate"; the rest write theirs.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace m3::train {

template <class T> T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <class T> T silu(T x) { return x * sigmoid(x); }
// d silu(x) / dx = s·(1 + x·(1 − s)), s = sigmoid(x).
template <class T> T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}
// log(1 + eˣ) without overflow.
template <class T> T softplus(T x) { return x > T(20) ? x : std::log1p(std::exp(x)); }

// C[M, N] = alpha · op(A) · op(B) + beta · C (row-major, OpenBLAS).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

// y[n, out] = x[n, in] · W[out, in]ᵀ (+ b).
template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t n, int64_t in, int64_t out);
// dx[n, in] = dy · W (written, or added when accumulate); dW += dyᵀ · x; db += Σ_rows dy (if db).
template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t n, int64_t in, int64_t out,
                     bool accumulate = false);

// y[n, D] = x · rstd ⊙ w with rstd = 1/sqrt(mean(x²) + eps) per row (stored in rstd[n]); w may
// be null (weight one).
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t D, T eps);
// dx += (written when !accumulate) the input gradient; dw += the weight gradient (if dw).
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t n, int64_t D,
                      bool accumulate);
// LayerNorm: y = (x − mean)·rstd ⊙ w + b; mean and rstd stored per row.
template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t n, int64_t D, T eps);
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                        int64_t n, int64_t D, bool accumulate);

// Depthwise causal convolution of width W over packed sequences (zero history at each start)
// followed by silu (spec/mamba2.md §3.1, mamba1.md): pre[t, c] = b[c] + Σ_k w[c, k] x[t−(W−1)+k, c],
// out = silu(pre). x has row stride ldx; w is [C, W]; b may be null.
template <class T>
void conv1d_silu_forward(T* out, T* pre, const T* x, int64_t ldx, const T* w, const T* b, int64_t C, int64_t W,
                         const std::vector<int64_t>& cu);
// dx (row stride ldx) += the input gradient; dw, db (if db) += the parameter gradients.
template <class T>
void conv1d_silu_backward(T* dx, int64_t ldx, T* dw, T* db, const T* dout, const T* pre, const T* x, const T* w,
                          int64_t C, int64_t W, const std::vector<int64_t>& cu);

// Mean cross-entropy of logits[n, V] against targets (entries < 0 are ignored), divided by
// `count` (the number of targets the loss is averaged over, possibly across micro-batches).
// Writes dlogits = (softmax − onehot) / count (zero rows for ignored positions) and returns the
// sum of the row losses divided by count.
template <class T>
double cross_entropy(T* dlogits, const T* logits, const int32_t* targets, int64_t n, int64_t V, double count);

}  // namespace m3::train
