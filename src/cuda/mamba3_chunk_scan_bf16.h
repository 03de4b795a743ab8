// The Mamba-3 prefill scan on bf16 tensor cores (spec/mamba3.md §6), for `--dtype bf16`: the
// contract of mamba3_scan_prefill (cuda/mamba3_scan.h) with the chunk products — scores q̃ k̃ᵀ,
// scores · V, the inter-chunk term q̃ Gᵀ and the state update — on bf16 operands with fp32
// accumulation (the reference's precision choice), while dt, ADT, the angles, the decays and the
// state G carried between chunks stay fp32. A block per (sequence, head) walks the sequence's
// chunks in order with G in registers: nothing per chunk goes to device memory. When there are
// fewer (sequence, head) pairs than SMs, each sequence is split into parts walked by blocks of
// their own, after a first pass that computes each part's own state change (see the .cu file).
// Float32 runs keep cuda/mamba3_chunk_scan.h (FP32 SIMT), which matches the CPU to 1e-4.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/mamba3_scan.h"

namespace m3::cuda {

// Whether this form runs these dims: headdim 64, d_state 32, 64 or 128, a rank dividing 64.
bool mamba3_chunk_scan_bf16_supported(const Mamba3ScanDims& d);

// How a call splits its sequences: `segments` blocks per (sequence, head) each walk a consecutive
// part of the sequence's chunks (1: no split); the state entering each part comes from a first
// pass whose blocks compute the state change of `subsegments` pieces per part (all parts but the
// last).
struct Mamba3Bf16Split {
  int segments = 1;
  int subsegments = 1;
};

// The split that fills the device's SMs for n_seqs sequences of at most max_len tokens: none when
// the (sequence, head) pairs alone fill them, the sequences are too short to gain, or the
// environment sets M3_NO_SCAN_SPLIT=1 (the unsplit baseline, for side-by-side measurements).
Mamba3Bf16Split mamba3_chunk_scan_bf16_split(const Context& ctx, const Mamba3ScanDims& d, int64_t n_seqs,
                                             int64_t max_len);

// mamba3_scan_prefill's contract (cu_dev [n_seqs + 1] device offsets), split as `split` says
// (segments 1 to 64, subsegments 1 to 64); `scratch` holds the first pass's states.
void mamba3_chunk_scan_bf16_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in,
                                    const int64_t* cu_dev, int64_t n_seqs, const Mamba3ScanStates& st, float* y,
                                    int64_t y_ld, const Mamba3Bf16Split& split, Scratch<float>& scratch);

}  // namespace m3::cuda
