// The basic training ops of grad_ops.h, instantiated for float and double.
#include "train/grad_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"

namespace m3::train {

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(M), blasint(N),
              blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(M), blasint(N),
              blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t n, int64_t in, int64_t out) {
  gemm<T>(false, true, n, out, in, T(1), x, in, W, in, T(0), y, out);
  if (b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) y[i * out + o] += b[o];
}

template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t n, int64_t in, int64_t out,
                     bool accumulate) {
  if (dx) gemm<T>(false, false, n, in, out, T(1), dy, out, W, in, accumulate ? T(1) : T(0), dx, in);
  gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dW, in);
  if (db)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) db[o] += dy[i * out + o];
}

template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t D, T eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * D;
    T ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += xi[d] * xi[d];
    const T r = T(1) / std::sqrt(ss / T(D) + eps);
    rstd[i] = r;
    for (int64_t d = 0; d < D; ++d) y[i * D + d] = xi[d] * r * (w ? w[d] : T(1));
  }
}

// y = x·r ⊙ w, r = (mean x² + eps)^(−1/2): dx = r·(g − x̂·mean(g ⊙ x̂)) with g = dy ⊙ w, x̂ = x·r.
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t n, int64_t D,
                      bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    const T *xi = x + i * D, *gi = dy + i * D;
    const T r = rstd[i];
    T dot = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T g = gi[d] * (w ? w[d] : T(1));
      dot += g * xi[d] * r;
      if (dw) dw[d] += gi[d] * xi[d] * r;
    }
    dot /= T(D);
    for (int64_t d = 0; d < D; ++d) {
      const T g = gi[d] * (w ? w[d] : T(1));
      const T v = r * (g - xi[d] * r * dot);
      dx[i * D + d] = accumulate ? dx[i * D + d] + v : v;
    }
  }
}

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t n, int64_t D, T eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * D;
    T m = 0, v = 0;
    for (int64_t d = 0; d < D; ++d) m += xi[d];
    m /= T(D);
    for (int64_t d = 0; d < D; ++d) v += (xi[d] - m) * (xi[d] - m);
    const T r = T(1) / std::sqrt(v / T(D) + eps);
    mean[i] = m;
    rstd[i] = r;
    for (int64_t d = 0; d < D; ++d) y[i * D + d] = (xi[d] - m) * r * w[d] + b[d];
  }
}

// dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)), g = dy ⊙ w.
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                        int64_t n, int64_t D, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    const T *xi = x + i * D, *gi = dy + i * D;
    const T r = rstd[i], m = mean[i];
    T gm = 0, gx = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T xh = (xi[d] - m) * r, g = gi[d] * w[d];
      gm += g;
      gx += g * xh;
      dw[d] += gi[d] * xh;
      db[d] += gi[d];
    }
    gm /= T(D);
    gx /= T(D);
    for (int64_t d = 0; d < D; ++d) {
      const T xh = (xi[d] - m) * r;
      const T v = r * (gi[d] * w[d] - gm - xh * gx);
      dx[i * D + d] = accumulate ? dx[i * D + d] + v : v;
    }
  }
}

template <class T>
void conv1d_silu_forward(T* out, T* pre, const T* x, int64_t ldx, const T* w, const T* b, int64_t C, int64_t W,
                         const std::vector<int64_t>& cu) {
  for (size_t i = 0; i + 1 < cu.size(); ++i)
    for (int64_t t = cu[i]; t < cu[i + 1]; ++t)
      for (int64_t c = 0; c < C; ++c) {
        T s = b ? b[c] : T(0);
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1) + k;
          if (src >= cu[i]) s += w[c * W + k] * x[src * ldx + c];
        }
        pre[t * C + c] = s;
        out[t * C + c] = silu(s);
      }
}

template <class T>
void conv1d_silu_backward(T* dx, int64_t ldx, T* dw, T* db, const T* dout, const T* pre, const T* x, const T* w,
                          int64_t C, int64_t W, const std::vector<int64_t>& cu) {
  for (size_t i = 0; i + 1 < cu.size(); ++i)
    for (int64_t t = cu[i]; t < cu[i + 1]; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const T g = dout[t * C + c] * silu_grad(pre[t * C + c]);
        if (db) db[c] += g;
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1) + k;
          if (src < cu[i]) continue;
          dw[c * W + k] += g * x[src * ldx + c];
          dx[src * ldx + c] += g * w[c * W + k];
        }
      }
}

template <class T>
double cross_entropy(T* dlogits, const T* logits, const int32_t* targets, int64_t n, int64_t V, double count) {
  std::vector<double> row_loss(size_t(n), 0.0);  // summed in order below: the same loss on any thread count
#pragma omp parallel for if (n * V > cpu::kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const T* l = logits + i * V;
    T* d = dlogits + i * V;
    if (targets[i] < 0) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const T mx = *std::max_element(l, l + V);
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(l[v] - mx));
    row_loss[size_t(i)] = std::log(sum) - double(l[targets[i]] - mx);
    for (int64_t v = 0; v < V; ++v) d[v] = T(std::exp(double(l[v] - mx)) / sum / count);
    d[targets[i]] -= T(1.0 / count);
  }
  double loss = 0;
  for (double r : row_loss) loss += r;
  return loss / count;
}

#define M3_INSTANTIATE(T)                                                                                           \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);                    \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool);     \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);                                \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t, bool);       \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, T);                \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,        \
                                      int64_t, bool);                                                               \
  template void conv1d_silu_forward<T>(T*, T*, const T*, int64_t, const T*, const T*, int64_t, int64_t,          \
                                       const std::vector<int64_t>&);                                                \
  template void conv1d_silu_backward<T>(T*, int64_t, T*, T*, const T*, const T*, const T*, const T*, int64_t,       \
                                        int64_t, const std::vector<int64_t>&);                                      \
  template double cross_entropy<T>(T*, const T*, const int32_t*, int64_t, int64_t, double);
M3_INSTANTIATE(float)
M3_INSTANTIATE(double)
#undef M3_INSTANTIATE

}  // namespace m3::train
