// Implements spec/mamba1.md §3 step 4. A work item is (sequence, block of kBlock channels); it
// keeps the block's state h [N, kBlock] and decay rates A [N, kBlock] transposed in scratch (so the
// innermost loop runs over channels, contiguous in every input row, and needs no horizontal sums)
// and walks its sequence token by token; exp_approx lets that innermost loop compile to SIMD code.
#include "cpu/selective_scan.h"

#include <algorithm>
#include <vector>

#include "core/omp_exceptions.h"
#include "cpu/vec_math.h"

namespace m3::cpu {

namespace {

constexpr int64_t kBlock = 16;  // channels per work item: one AVX-512 register, two AVX2 ones
constexpr int64_t kParallelWork = 1 << 14;  // below this many state updates, threads cost more than they save

// One (sequence, channel block): rows [t0, t0 + L), channels [c0, c0 + w), w ≤ kBlock. Lanes at
// or past w run on zeros (Δ = u = 0 keeps their state zero) and are never stored, so every block
// runs the same fixed-width loops. h and a: scratch of N·kBlock floats.
void scan_block(int64_t N, const SelectiveScanInputs& in, int64_t t0, int64_t L, int64_t c0, int64_t w, float* ssm,
                float* y, int64_t y_ld, float* h, float* a) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < kBlock; ++j) {
      h[n * kBlock + j] = j < w ? ssm[(c0 + j) * N + n] : 0.0f;
      a[n * kBlock + j] = j < w ? in.A[(c0 + j) * N + n] : 0.0f;
    }
  alignas(64) float dt[kBlock], du[kBlock], acc[kBlock];
  for (int64_t t = t0; t < t0 + L; ++t) {
    const float* ut = in.u + t * in.u_ld + c0;
    const float* dtt = in.delta + t * in.delta_ld + c0;
    for (int64_t j = 0; j < kBlock; ++j) {
      const float u = j < w ? ut[j] : 0.0f;
      dt[j] = j < w ? dtt[j] : 0.0f;
      du[j] = dt[j] * u;
      acc[j] = j < w ? in.D[c0 + j] * u : 0.0f;
    }
    const float* Bt = in.B + t * in.bc_ld;
    const float* Ct = in.C + t * in.bc_ld;
    for (int64_t n = 0; n < N; ++n) {
      const float b = Bt[n], c = Ct[n];
      float* hn = h + n * kBlock;
      const float* an = a + n * kBlock;
#pragma omp simd
      for (int64_t j = 0; j < kBlock; ++j) {
        hn[j] = exp_approx(dt[j] * an[j]) * hn[j] + du[j] * b;
        acc[j] += hn[j] * c;
      }
    }
    std::copy_n(acc, w, y + t * y_ld + c0);
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < w; ++j) ssm[(c0 + j) * N + n] = h[n * kBlock + j];
}

// Decode: one token per sequence, state read and written in place in its [D, N] layout (no
// transposes), the innermost loop over n. Token t of the batch belongs to sequence t.
void scan_step(int64_t N, const SelectiveScanInputs& in, int64_t t, int64_t c_begin, int64_t c_end, float* ssm,
               float* y, int64_t y_ld) {
  const float* Bt = in.B + t * in.bc_ld;
  const float* Ct = in.C + t * in.bc_ld;
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float u = in.u[t * in.u_ld + c], dt = in.delta[t * in.delta_ld + c], du = dt * u;
    float* h = ssm + c * N;
    const float* a = in.A + c * N;
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < N; ++n) {
      h[n] = exp_approx(dt * a[n]) * h[n] + du * Bt[n];
      acc += h[n] * Ct[n];
    }
    y[t * y_ld + c] = acc + in.D[c] * u;
  }
}

}  // namespace

void selective_scan(int64_t D, int64_t N, const SelectiveScanInputs& in, const int64_t* cu_seqlens, int64_t n_seqs,
                    float* const* ssm, float* y, int64_t y_ld) {
  const int64_t nblk = (D + kBlock - 1) / kBlock, n_tokens = cu_seqlens[n_seqs] - cu_seqlens[0];
  if (n_tokens == n_seqs && cu_seqlens[0] == 0) {  // one token each (lengths are ≥ 0): decode
    bool one_each = true;
    for (int64_t i = 0; i < n_seqs; ++i) one_each = one_each && cu_seqlens[i + 1] - cu_seqlens[i] == 1;
    if (one_each) {
      // Static split over (sequence, channel block): each thread keeps the same channels from
      // step to step.
#pragma omp parallel for schedule(static) if (n_seqs * D * N > kParallelWork)
      for (int64_t item = 0; item < n_seqs * nblk; ++item) {
        const int64_t i = item / nblk, c0 = (item % nblk) * kBlock;
        scan_step(N, in, i, c0, std::min(D, c0 + kBlock), ssm[i], y, y_ld);
      }
      return;
    }
  }
  OmpExceptions errors;  // a scratch buffer's bad_alloc
#pragma omp parallel if (n_tokens * D * N > kParallelWork)
  {
    std::vector<float> h, a;
    errors.run([&] { h.resize(size_t(N * kBlock)), a.resize(size_t(N * kBlock)); });
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_seqs * nblk; ++item) {
      const int64_t i = item / nblk, c0 = (item % nblk) * kBlock;
      const int64_t t0 = cu_seqlens[i], L = cu_seqlens[i + 1] - t0;
      if (L > 0)
        errors.run([&] { scan_block(N, in, t0, L, c0, std::min(kBlock, D - c0), ssm[i], y, y_ld, h.data(), a.data()); });
    }
  }
  errors.rethrow();
}

}  // namespace m3::cpu
