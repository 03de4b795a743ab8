// Kernel-level GPU benchmark of the recurrent scans, the anchors of the speed work, at the
// reference's shapes (64 heads × headdim 64, d_state 128, one B/C group, chunk 64):
//   mamba3_siso_prefill  the chunked Mamba-3 SISO scan (cuda/mamba3_chunk_scan.h, FP32 SIMT, what
//                        `--dtype f32` runs), D·x included;
//   mamba3_siso_prefill_bf16, mamba3_mimo4_prefill_bf16  the tensor-core scan that `--dtype bf16`
//                        runs (cuda/mamba3_chunk_scan_bf16.h), SISO and MIMO rank 4;
//   mamba3_siso_step     the Mamba-3 decode step (mamba3_scan_step), one token per sequence;
//   mamba2_ssd_prefill   the Mamba-2 scan (cuda/ssd_scan.h, FP32, what `--dtype f32` runs);
//   mamba2_ssd_prefill_bf16  the same on tensor cores through the Mamba-3 scan
//                        (cuda/ssd_chunk_scan_bf16.h), what `--dtype bf16` runs;
//   gemv_IN_OUT, cublaslt_IN_OUT  a decode product y[T, OUT] = x[T, IN]·Wᵀ with a bf16 matrix at the
//                        1.4B presets' shapes (in_proj, out_proj, lm_head): the weight-streaming
//                        kernel linear_fwd runs at T = 1 (cuda/linear_gemv.h) and cuBLASLt on
//                        the same inputs (linear_fwd_cublaslt, what it ran before); B is T.
//   attention_prefill, attention_decode  the attention kernel (cuda/flash_attention.h, fp32 SIMT,
//                        what attention layers run) at the reference's SDPA shape, 16 heads × 128,
//                        causal: B sequences of L tokens over an empty cache, and one token per
//                        sequence over L cached keys (the roofline of the latter is its cache bytes).
// Inputs are random (never zeros: zeros run faster than real data) in the layouts the functions
// take; states live in pool-like buffers of slots (model/specs.h order), as StatePool keeps them.
// Each case: kWarmup untimed calls, then the median over --reps repetitions, each timed with CUDA
// events on the context's stream. When one set of inputs and states would fit in the L2, calls
// rotate over enough sets to hold three L2s' worth, so that no call finds the previous one's data
// there. The step's repetition is kStepCalls back-to-back calls (one call is a few µs, close to
// the events' resolution), reported per call.
//
// The roofline line of each case is max(FLOP / peak, bytes / 4.27 TB/s) with the H200's fp32 SIMT
// peak (67 TFLOP/s) for fp32 kernels and its measured bf16 GEMM rate (729 TFLOP/s) for tensor-core
// ones, and its HBM copy rate; the counts are in prefill_flops, mamba3_prefill_bytes,
// ssd_prefill_bytes and the step's state bytes below.
//
//   build/m3_cuda_bench [--reps N] [--json FILE]      (exit 2 when there is no GPU)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/backend.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/flash_attention.h"
#include "cuda/linear.h"
#include "cuda/weights.h"
#include "cuda/mamba3_chunk_scan.h"
#include "cuda/mamba3_chunk_scan_bf16.h"
#include "cuda/mamba3_scan.h"
#include "cuda/ssd_chunk_scan_bf16.h"
#include "cuda/ssd_scan.h"
#include "m3/error.h"

namespace m3::cuda {
namespace {

constexpr int64_t kH = 64, kP = 64, kN = 128, kG = 1, kChunk = 64;
// Rotary angles of d_state 128 at the default rope_fraction 0.5 (io/config.cpp: ⌊N·0.5⌋ / 2).
constexpr int64_t kS = 32;
constexpr double kPeakFlops = 67e12, kPeakTensorFlops = 729e12, kPeakBytes = 4.27e12, kL2Bytes = 60e6;
constexpr int kWarmup = 3, kStepCalls = 16;

// Why the Mamba-3 prefill times are the scan alone.
constexpr const char* kGatingNote =
    "scan only (D*x included): the z-gating kernel (mamba3_gate_out) is internal to cuda/mamba3_layer.cu "
    "and cannot be called on its own, so it is not timed";

// Matmul FLOPs of the chunked form (spec/mamba3.md §6, the same for Mamba-2's SSD) at chunk Q, per
// (token, rank) row and head: chunk state Σ v kᵀ (2PN), inter-chunk output (e^a q) G_inᵀ (2PN),
// scores q kᵀ (2QN) and intra-chunk output M V (2QP), the causal Q × Q tiles counted whole as
// kernels compute them:  FLOP = T·R·H·(4·P·N + 2·Q·(N + P)), Q = 64 rows (MIMO: 64 / R tokens).
// (The recurrent Mamba-2 kernel does 4·P·N + P·N.)
double prefill_flops(int64_t T, int64_t R = 1) {
  return double(T) * double(R) * kH * (4.0 * kP * kN + 2.0 * kChunk * (kN + kP));
}

// Mamba-3 state bytes of one sequence: angle [H, S], ssm [H, P, N], k [R, H, N], v [H, P].
constexpr int64_t mamba3_state_floats(int64_t R) { return kH * kS + kH * kP * kN + R * kH * kN + kH * kP; }
constexpr int64_t kMamba3StateFloats = mamba3_state_floats(1);

// Compulsory HBM bytes of the Mamba-3 prefill at rank R: each input read once (q, k [T, R·G·N];
// x [T, H·P]; adt, dt, trap [T, H]; angle [T, S]), y [T, R·H·P] written once, each sequence's state
// read and written once:  bytes = 4·(T·(2·R·G·N + (1 + R)·H·P + 3·H + S) + 2·B·state floats).
// The chunk-state scratch is not counted: it is the implementation's choice.
double mamba3_prefill_bytes(int64_t B, int64_t T, int64_t R = 1) {
  return 4.0 * (double(T) * double(2 * R * kG * kN + (1 + R) * kH * kP + 3 * kH + kS) +
                2.0 * double(B) * double(mamba3_state_floats(R)));
}

// Mamba-2 likewise: x [T, H·P], B, C [T, G·N], dt [T, H] read, y [T, H·P] written, ssm [H, P, N]
// read and written:  bytes = 4·(T·(2·H·P + 2·G·N + H) + 2·B·H·P·N).
double ssd_prefill_bytes(int64_t B, int64_t T) {
  return 4.0 * (double(T) * (2 * kH * kP + 2 * kG * kN + kH) + 2.0 * double(B) * kH * kP * kN);
}

struct Result {
  std::string kernel;
  int64_t B = 0, L = 0;
  double ms = 0;              // median per call
  double flops = 0, bytes = 0;  // the roofline's counts (no FLOPs for the step: it streams its state)
  bool step = false;
  std::string streamed = "state";  // what a step-like case's bytes are
  double peak_flops = kPeakFlops;  // kPeakTensorFlops for tensor-core kernels
  double roofline_ms() const { return std::max(flops / peak_flops, bytes / kPeakBytes) * 1e3; }
  double mtok_s() const { return double(B * L) / ms / 1e3; }
  double gb_s() const { return bytes / ms / 1e6; }
};

// One number formatted by f.
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string time_text(const Result& r) { return r.step ? fmt("%9.2f us", r.ms * 1e3) : fmt("%9.3f ms", r.ms); }
std::string rate_text(const Result& r) {
  return r.step ? fmt("%9.1f GB/s ", r.gb_s()) + r.streamed : fmt("%9.2f Mtok/s", r.mtok_s());
}
std::string roofline_text(const Result& r) {
  return r.step ? fmt("%9.2f us", r.roofline_ms() * 1e3) : fmt("%9.3f ms", r.roofline_ms());
}

std::string table_row(const Result& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-26s %4lld %6lld %12s %-20s %9s %8.3f %12s %7.1f %%", r.kernel.c_str(),
                (long long)r.B, (long long)r.L, time_text(r).c_str(), rate_text(r).c_str(),
                r.step ? "-" : fmt("%.1f", r.flops / 1e9).c_str(), r.bytes / 1e9, roofline_text(r).c_str(),
                100.0 * r.roofline_ms() / r.ms);
  return buf;
}

// splitmix64: fast enough to fill gigabytes of inputs in a second.
struct Rng {
  uint64_t s;
  float uniform(float lo, float hi) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * float(z >> 40) * 0x1p-24f;
  }
};

template <class T>
std::shared_ptr<T> upload(Context& ctx, const std::vector<T>& host) {
  auto d = std::static_pointer_cast<T>(device_alloc(ctx, host.size() * sizeof(T)));
  // On ctx.stream, after device_alloc's zero fill there.
  M3_CUDA_CHECK(cudaMemcpyAsync(d.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, ctx.stream));
  M3_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return d;
}

std::vector<float> random_host(Rng& rng, int64_t n, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

std::shared_ptr<float> random_device(Context& ctx, Rng& rng, int64_t n, float lo, float hi) {
  return upload(ctx, random_host(rng, n, lo, hi));
}

// dt after softplus in [0.001, 0.1] (log-uniform, dt_min..dt_max of the presets) and A·dt with
// A ∈ [−16, −1] per head, [rows, H] each.
void random_dt_adt(Rng& rng, int64_t rows, std::vector<float>& dt, std::vector<float>& adt) {
  std::vector<float> A(static_cast<size_t>(kH));
  for (float& a : A) a = -rng.uniform(1.0f, 16.0f);
  dt.resize(size_t(rows * kH));
  adt.resize(dt.size());
  for (int64_t i = 0; i < rows * kH; ++i) {
    dt[size_t(i)] = std::exp(rng.uniform(std::log(1e-3f), std::log(1e-1f)));
    adt[size_t(i)] = A[size_t(i % kH)] * dt[size_t(i)];
  }
}

// Input sets to rotate over: one when a set does not fit in the L2, else enough to hold three
// L2s' worth.
int64_t rotation_sets(double set_bytes) {
  if (set_bytes >= kL2Bytes) return 1;
  return std::clamp<int64_t>(int64_t(std::ceil(3 * kL2Bytes / set_bytes)), 2, 512);
}

// Slots 0 .. n − 1 on the device: set s of B sequences uses slots s·B .. s·B + B − 1.
std::shared_ptr<int32_t> slot_ids(Context& ctx, int64_t n) {
  std::vector<int32_t> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[size_t(i)] = int32_t(i);
  return upload(ctx, s);
}

// cu_seqlens of B sequences of L tokens.
std::vector<int64_t> offsets(int64_t B, int64_t L) {
  std::vector<int64_t> cu(static_cast<size_t>(B + 1));
  for (int64_t i = 0; i <= B; ++i) cu[size_t(i)] = i * L;
  return cu;
}

class Timer {
 public:
  Timer() {
    M3_CUDA_CHECK(cudaEventCreate(&start_));
    M3_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Median milliseconds per call; call(c) gets a running index c (for rotating sets), `inner`
  // calls per timed repetition.
  template <class F>
  double median_ms(Context& ctx, int reps, int inner, F&& call) {
    int64_t c = 0;
    for (int i = 0; i < kWarmup * inner; ++i) call(c++);
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      M3_CUDA_CHECK(cudaEventRecord(start_, ctx.stream));
      for (int i = 0; i < inner; ++i) call(c++);
      M3_CUDA_CHECK(cudaEventRecord(stop_, ctx.stream));
      M3_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0;
      M3_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(double(t) / inner);
    }
    std::sort(ms.begin(), ms.end());
    const size_t n = ms.size();
    return n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

const Mamba3ScanDims kMamba3Dims{kH, kG, kP, kN, kS, 1, false};
// MIMO rank 4 at the same sizes (the halves pairing of the rotary pairs, spec §3).
const Mamba3ScanDims kMamba3MimoDims{kH, kG, kP, kN, kS, 4, true};

// Mamba-3 inputs at rank R for `sets` sets of T token rows each (dense layouts: qk_ld = R·G·N,
// x_ld = H·P, trap_ld = H, angle_ld = S), the layer's parameters, and the pool's four buffers with
// sets·B slots.
struct Mamba3Data {
  int64_t T, B, sets, R;
  std::shared_ptr<float> q, k, x, adt, dt, trap, angle, q_bias, k_bias, mimo_x, D, y;
  std::shared_ptr<float> st_angle, st_ssm, st_k, st_v;
  std::shared_ptr<int32_t> slot;

  Mamba3Data(Context& ctx, Rng& rng, int64_t B_, int64_t T_, int64_t sets_, int64_t R_ = 1)
      : T(T_), B(B_), sets(sets_), R(R_) {
    const int64_t rows = sets * T, slots = sets * B;
    q = random_device(ctx, rng, rows * R * kG * kN, -1.7f, 1.7f);  // after RMSNorm: RMS ≈ 1
    k = random_device(ctx, rng, rows * R * kG * kN, -1.7f, 1.7f);
    x = random_device(ctx, rng, rows * kH * kP, -1.0f, 1.0f);
    std::vector<float> dt_h, adt_h;
    random_dt_adt(rng, rows, dt_h, adt_h);
    dt = upload(ctx, dt_h);
    adt = upload(ctx, adt_h);
    trap = random_device(ctx, rng, rows * kH, -3.0f, 3.0f);
    angle = random_device(ctx, rng, rows * kS, -2.0f, 2.0f);
    q_bias = random_device(ctx, rng, kH * R * kN, -0.5f, 0.5f);
    k_bias = random_device(ctx, rng, kH * R * kN, -0.5f, 0.5f);
    if (R > 1) mimo_x = random_device(ctx, rng, kH * R * kP, 0.0f, 0.5f);
    D = random_device(ctx, rng, kH, -1.0f, 1.0f);
    y = std::static_pointer_cast<float>(device_alloc(ctx, size_t(T * R * kH * kP) * sizeof(float)));
    st_angle = random_device(ctx, rng, slots * kH * kS, 0.0f, 6.28f);
    st_ssm = random_device(ctx, rng, slots * kH * kP * kN, -0.1f, 0.1f);
    st_k = random_device(ctx, rng, slots * R * kH * kN, -1.0f, 1.0f);
    st_v = random_device(ctx, rng, slots * kH * kP, -1.0f, 1.0f);
    slot = slot_ids(ctx, slots);
  }

  Mamba3ScanInputs inputs(int64_t set) const {
    const int64_t r = set * T, qk = R * kG * kN;
    return {.q = q.get() + r * qk,
            .k = k.get() + r * qk,
            .qk_ld = qk,
            .q_bias = q_bias.get(),
            .k_bias = k_bias.get(),
            .x = x.get() + r * kH * kP,
            .x_ld = kH * kP,
            .mimo_x = mimo_x.get(),
            .adt = adt.get() + r * kH,
            .dt = dt.get() + r * kH,
            .trap = trap.get() + r * kH,
            .trap_ld = kH,
            .angle = angle.get() + r * kS,
            .angle_ld = kS,
            .D = D.get()};
  }
  Mamba3ScanStates states(int64_t set) const {
    return {st_angle.get(), st_ssm.get(), st_k.get(),     st_v.get(),        kH * kS,
            kH * kP * kN,   R * kH * kN,  kH * kP,        slot.get() + set * B};
  }
};

double mamba3_set_bytes(int64_t B, int64_t T, int64_t R = 1) {
  return 4.0 * (double(T) * double(2 * R * kG * kN + kH * kP + 3 * kH + kS) +
                double(B) * double(mamba3_state_floats(R)));
}

Result mamba3_prefill(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t B, int64_t L) {
  check(mamba3_chunk_scan_fits(ctx, kMamba3Dims, kChunk),
        "Mamba-3 chunked scan: its shared memory does not fit this device");
  const int64_t T = B * L;
  const Mamba3Data d(ctx, rng, B, T, rotation_sets(mamba3_set_bytes(B, T)));
  const std::vector<int64_t> cu = offsets(B, L);
  const auto cu_dev = upload(ctx, cu);
  Mamba3ChunkScratch scratch;
  Result r{"mamba3_siso_prefill", B, L};
  r.ms = timer.median_ms(ctx, reps, 1, [&](int64_t c) {
    const int64_t s = c % d.sets;
    mamba3_chunk_scan_prefill(ctx, kMamba3Dims, d.inputs(s), cu.data(), cu_dev.get(), B, d.states(s), d.y.get(),
                              kH * kP, kChunk, scratch);
  });
  r.flops = prefill_flops(T);
  r.bytes = mamba3_prefill_bytes(B, T);
  return r;
}

// The tensor-core scan (what `--dtype bf16` runs) at rank R: SISO, or MIMO with 64 / R tokens a chunk;
// split as the layer splits it, or (unsplit, the baseline of the split) one block per (sequence, head).
Result mamba3_prefill_bf16(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t B, int64_t L, int64_t R,
                           bool unsplit = false) {
  const Mamba3ScanDims& dims = R == 1 ? kMamba3Dims : kMamba3MimoDims;
  check(mamba3_chunk_scan_bf16_supported(dims), "Mamba-3 bf16 chunked scan: unsupported bench dims");
  const int64_t T = B * L;
  const Mamba3Data d(ctx, rng, B, T, rotation_sets(mamba3_set_bytes(B, T, R)), R);
  const auto cu_dev = upload(ctx, offsets(B, L));
  const Mamba3Bf16Split split = unsplit ? Mamba3Bf16Split{} : mamba3_chunk_scan_bf16_split(ctx, dims, B, L);
  Scratch<float> scratch;
  Result r{std::string(R == 1 ? "mamba3_siso_prefill_bf16" : "mamba3_mimo4_prefill_bf16") + (unsplit ? "_unsplit" : ""),
           B, L};
  r.ms = timer.median_ms(ctx, reps, 1, [&](int64_t c) {
    const int64_t s = c % d.sets;
    mamba3_chunk_scan_bf16_prefill(ctx, dims, d.inputs(s), cu_dev.get(), B, d.states(s), d.y.get(), R * kH * kP,
                                   split, scratch);
  });
  std::printf("%s B=%lld L=%lld: split %d parts × %d pieces\n", r.kernel.c_str(), (long long)B, (long long)L,
              split.segments, split.subsegments);
  r.flops = prefill_flops(T, R);
  r.bytes = mamba3_prefill_bytes(B, T, R);
  r.peak_flops = kPeakTensorFlops;
  return r;
}

// State traffic of the step: each sequence's four state buffers read and written once.
Result mamba3_step(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t B) {
  check_mamba3_scan_supported(ctx, kMamba3Dims);
  const Mamba3Data d(ctx, rng, B, B, rotation_sets(mamba3_set_bytes(B, B)));
  Result r{"mamba3_siso_step", B, 1};
  r.step = true;
  r.ms = timer.median_ms(ctx, reps, kStepCalls, [&](int64_t c) {
    const int64_t s = c % d.sets;
    mamba3_scan_step(ctx, kMamba3Dims, d.inputs(s), B, d.states(s), d.y.get(), kH * kP);
  });
  r.bytes = 2.0 * 4.0 * double(B) * kMamba3StateFloats;
  return r;
}

// bytes = the matrix (2·in·out) + x (4·T·in) + y (4·T·out); matrices rotate like the other inputs.
Result linear_decode(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t T, int64_t in, int64_t out,
                     bool cublaslt) {
  const double bytes = 2.0 * double(in * out) + 4.0 * double(T * (in + out));
  const int64_t sets = rotation_sets(bytes);
  std::vector<Matrix> W;
  for (int64_t s = 0; s < sets; ++s) {
    std::vector<uint16_t> host(size_t(in * out));
    for (uint16_t& v : host) {  // bf16 of a uniform in ±1/sqrt(in), rounded down
      const float f = rng.uniform(-1.0f, 1.0f) / std::sqrt(float(in));
      uint32_t u;
      std::memcpy(&u, &f, 4);
      v = uint16_t(u >> 16);
    }
    Matrix m;
    m.mem = upload(ctx, host);
    m.data = m.mem.get();
    m.bf16 = true;
    m.rows = out;
    m.cols = in;
    W.push_back(m);
  }
  const auto x = random_device(ctx, rng, T * in, -1.0f, 1.0f);
  const auto y = std::static_pointer_cast<float>(device_alloc(ctx, size_t(T * out) * sizeof(float)));
  Result r{(cublaslt ? "cublaslt_" : "gemv_") + std::to_string(in) + "_" + std::to_string(out), T, 1};
  r.step = true;
  r.streamed = "weights";
  r.ms = timer.median_ms(ctx, reps, kStepCalls, [&](int64_t c) {
    const Matrix& m = W[size_t(c % sets)];
    if (cublaslt)
      linear_fwd_cublaslt(ctx, y.get(), x.get(), m, nullptr, T, in, out);
    else
      linear_fwd(ctx, y.get(), x.get(), m, nullptr, T, in, out);
  });
  r.bytes = bytes;
  return r;
}

constexpr int kAttnHeads = 16, kAttnHeadDim = 128;

// Attention of B sequences, `len` new tokens each after `past` cached keys (prefill: past 0; decode:
// len 1). The cache holds past + len random keys and values per sequence, as the layer leaves it
// before the kernel runs. FLOP (prefill) = 4·B·heads·head_dim·L²/2, the causal half of q·kᵀ and
// P·v; bytes = q, out, and the cache's keys and values read once.
Result attention(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t B, int64_t len, int64_t past) {
  const int64_t width = kAttnHeads * kAttnHeadDim, keys = past + len, T = B * len;
  const double bytes = 4.0 * (2.0 * double(T * width) + 2.0 * double(B * keys * width));
  const auto q = random_device(ctx, rng, T * width, -1.0f, 1.0f);
  const auto kc = random_device(ctx, rng, B * keys * width, -1.0f, 1.0f);
  const auto vc = random_device(ctx, rng, B * keys * width, -1.0f, 1.0f);
  const auto out = std::static_pointer_cast<float>(device_alloc(ctx, size_t(T * width) * sizeof(float)));
  const auto cu = upload(ctx, offsets(B, len));
  const auto slot = slot_ids(ctx, B);
  const auto pos = upload(ctx, std::vector<int64_t>(size_t(B), past));
  AttentionArgs a;
  a.q = q.get(), a.ldq = width, a.out = out.get(), a.ldo = width;
  a.k_cache = kc.get(), a.v_cache = vc.get(), a.cache_stride = keys * width;
  a.cu = cu.get(), a.slot = slot.get(), a.pos = pos.get(), a.n_seqs = B;
  a.num_heads = kAttnHeads, a.num_heads_kv = kAttnHeads, a.head_dim = kAttnHeadDim;
  a.scale = 1.0f / std::sqrt(float(kAttnHeadDim));
  a.causal = true;
  Scratch<float> partial;
  const bool decode = len == 1;
  Result r{decode ? "attention_decode" : "attention_prefill", B, decode ? past : len};
  r.step = decode;
  r.streamed = "kv";
  r.ms = timer.median_ms(ctx, reps, decode ? kStepCalls : 1,
                         [&](int64_t) { flash_attention_fwd(ctx, a, len, keys, partial); });
  r.flops = decode ? 0.0 : 2.0 * double(B) * kAttnHeads * kAttnHeadDim * double(len) * double(len);
  r.bytes = bytes;
  return r;
}

// tensor_cores: the bf16 tensor-core form `--dtype bf16` runs (cuda/ssd_chunk_scan_bf16.h).
Result ssd_prefill(Context& ctx, Timer& timer, Rng& rng, int reps, int64_t B, int64_t L, bool tensor_cores) {
  const SsdScanDims dims{kH, kG, kP, kN};
  const int64_t T = B * L;
  const int64_t sets = rotation_sets(4.0 * (double(T) * (kH * kP + 2 * kG * kN + kH) + double(B) * kH * kP * kN));
  const int64_t rows = sets * T;
  const auto x = random_device(ctx, rng, rows * kH * kP, -1.0f, 1.0f);
  const auto Bm = random_device(ctx, rng, rows * kG * kN, -1.0f, 1.0f);
  const auto Cm = random_device(ctx, rng, rows * kG * kN, -1.0f, 1.0f);
  // dt before softplus: softplus(−6 .. −2 + dt_bias) ≈ 0.002 .. 0.2.
  const auto dt = random_device(ctx, rng, rows * kH, -6.0f, -2.0f);
  const auto dt_bias = random_device(ctx, rng, kH, -0.5f, 0.5f);
  const auto A = random_device(ctx, rng, kH, -16.0f, -1.0f);
  const auto D = random_device(ctx, rng, kH, -1.0f, 1.0f);
  const auto ssm = random_device(ctx, rng, sets * B * kH * kP * kN, -0.1f, 0.1f);
  const auto slot = slot_ids(ctx, sets * B);
  const auto y = std::static_pointer_cast<float>(device_alloc(ctx, size_t(T * kH * kP) * sizeof(float)));
  const auto cu_dev = upload(ctx, offsets(B, L));
  Result r{tensor_cores ? "mamba2_ssd_prefill_bf16" : "mamba2_ssd_prefill", B, L};
  if (tensor_cores) r.peak_flops = kPeakTensorFlops;
  SsdChunkScanBf16 chunked;
  r.ms = timer.median_ms(ctx, reps, 1, [&](int64_t c) {
    const int64_t s = c % sets, t0 = s * T;
    const SsdScanInputs in{.x = x.get() + t0 * kH * kP,
                           .x_ld = kH * kP,
                           .B = Bm.get() + t0 * kG * kN,
                           .C = Cm.get() + t0 * kG * kN,
                           .bc_ld = kG * kN,
                           .dt = dt.get() + t0 * kH,
                           .dt_ld = kH,
                           .dt_bias = dt_bias.get(),
                           .dt_min = 0.0f,
                           .dt_max = INFINITY,
                           .A = A.get(),
                           .D = D.get(),
                           .D_per_channel = false};
    if (tensor_cores)
      chunked.prefill(ctx, dims, in, cu_dev.get(), T, B, L, ssm.get(), slot.get() + s * B, kH * kP * kN,
                      int32_t(sets * B - 1), y.get(), kH * kP);
    else
      ssd_scan(ctx, dims, in, cu_dev.get(), B, ssm.get(), slot.get() + s * B, kH * kP * kN, y.get(), kH * kP);
  });
  r.flops = prefill_flops(T);
  r.bytes = ssd_prefill_bytes(B, T);
  return r;
}

nlohmann::json to_json(const Result& r) {
  nlohmann::json j = {{"kernel", r.kernel}, {"B", r.B},         {"L", r.L},
                      {"ms", r.ms},         {"flops", r.flops}, {"bytes", r.bytes},
                      {"roofline_ms", r.roofline_ms()},         {"of_roofline", r.roofline_ms() / r.ms}};
  if (r.step) {
    j["us"] = r.ms * 1e3;
    j[r.streamed + "_gb_s"] = r.gb_s();
  } else {
    j["mtok_s"] = r.mtok_s();
  }
  if (r.kernel.rfind("mamba3_", 0) == 0 && !r.step) j["note"] = kGatingNote;
  return j;
}

int usage(const char* prog) {
  std::fprintf(stderr, "usage: %s [--reps N] [--json FILE]\n", prog);
  return 1;
}

int run(int argc, char** argv) {
  int reps = 20;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else return usage(argv[0]);
  }
  int n_dev = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&n_dev); e != cudaSuccess || n_dev == 0) {
    std::fprintf(stderr, "m3_cuda_bench: no CUDA GPU here (%s); nothing to measure\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found no device");
    return 2;
  }
  const std::shared_ptr<Backend> backend = open_cuda_backend({DeviceKind::CUDA, 0, Precision::F32});
  Context& ctx = context_of(*backend);
  std::printf("m3_cuda_bench on %s (L2 %d MB): H %lld, P %lld, N %lld, G %lld, angles %lld, chunk %lld; "
              "median of %d reps after %d warm-up calls\n",
              ctx.prop.name, ctx.prop.l2CacheSize >> 20, (long long)kH, (long long)kP, (long long)kN,
              (long long)kG, (long long)kS, (long long)kChunk, reps, kWarmup);
  std::printf("mamba3_siso_prefill: %s\n", kGatingNote);
  std::fflush(stdout);

  Timer timer;
  Rng rng{12345};
  std::vector<Result> results;
  auto report = [&](const Result& r) {
    results.push_back(r);
    std::printf("%s B=%lld L=%lld: %s, %s; roofline %s (%.1f GFLOP, %.3f GB) = %.1f %%\n", r.kernel.c_str(),
                (long long)r.B, (long long)r.L, time_text(r).c_str(), rate_text(r).c_str(), roofline_text(r).c_str(),
                r.flops / 1e9, r.bytes / 1e9, 100.0 * r.roofline_ms() / r.ms);
    std::fflush(stdout);
  };
  for (auto [B, L] : {std::pair<int64_t, int64_t>{1, 4096}, {1, 16384}, {1, 65536}, {8, 4096}})
    report(mamba3_prefill(ctx, timer, rng, reps, B, L));
  for (int64_t R : {1, 4})
    for (auto [B, L] : {std::pair<int64_t, int64_t>{1, 4096}, {1, 16384}, {1, 65536}, {8, 4096}})
      report(mamba3_prefill_bf16(ctx, timer, rng, reps, B, L, R));
  for (int64_t R : {1, 4})
    for (auto [B, L] : {std::pair<int64_t, int64_t>{1, 4096}, {1, 65536}})
      report(mamba3_prefill_bf16(ctx, timer, rng, reps, B, L, R, true));
  for (int64_t B : {1, 16, 128}) report(mamba3_step(ctx, timer, rng, reps, B));
  for (bool tensor_cores : {false, true})
    for (auto [B, L] : {std::pair<int64_t, int64_t>{1, 16384}, {1, 65536}, {8, 4096}})
      report(ssd_prefill(ctx, timer, rng, reps, B, L, tensor_cores));
  for (auto [in, out] : {std::pair<int64_t, int64_t>{2048, 8640}, {4096, 2048}, {2048, 50288}})
    for (bool cublaslt : {false, true}) report(linear_decode(ctx, timer, rng, reps, 1, in, out, cublaslt));
  report(attention(ctx, timer, rng, reps, 1, 16384, 0));
  for (auto [B, past] : {std::pair<int64_t, int64_t>{1, 16384}, {128, 2048}})
    report(attention(ctx, timer, rng, reps, B, 1, past));

  std::printf("\n== results (roofline: max(FLOP / %.0f TFLOP/s, bytes / %.2f TB/s))\n", kPeakFlops / 1e12,
              kPeakBytes / 1e12);
  std::printf("%-26s %4s %6s %12s %-20s %9s %8s %12s %9s\n", "kernel", "B", "L", "time", "rate", "GFLOP", "GB",
              "roofline", "of roof");
  for (const Result& r : results) std::printf("%s\n", table_row(r).c_str());

  if (!json_path.empty()) {
    nlohmann::json j = {{"device", ctx.prop.name},
                        {"reps", reps},
                        {"warmup", kWarmup},
                        {"peak_flops", kPeakFlops},
                        {"peak_bytes_per_s", kPeakBytes},
                        {"cases", nlohmann::json::array()}};
    for (const Result& r : results) j["cases"].push_back(to_json(r));
    std::ofstream f(json_path);
    f << j.dump(2) << "\n";
    check(bool(f), "cannot write " + json_path);
  }
  return 0;
}

}  // namespace
}  // namespace m3::cuda

int main(int argc, char** argv) {
  try {
    return m3::cuda::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "m3_cuda_bench: %s\n", e.what());
    return 1;
  }
}
