// The Mamba-3 prefill scan on bf16 tensor cores (spec/mamba3.md §6), for `--dtype bf16`: the
// contract of mamba3_scan_prefill (cuda/mamba3_scan.h) with the chunk products — scores q̃ k̃ᵀ,
// scores · V, the inter-chunk term q̃ Gᵀ and the state update — on bf16 operands with fp32
// accumulation (the reference's precision choice), while dt, ADT, the angles, the decays and the
// state G carried between chunks stay fp32. One block per (sequence, head) walks the sequence's
// chunks in order with G in registers: nothing per chunk goes to device memory.
// Float32 runs keep cuda/mamba3_chunk_scan.h (FP32 SIMT), which matches the CPU to 1e-4.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/mamba3_scan.h"

namespace m3::cuda {

// Whether this form runs these dims: headdim 64, d_state 32, 64 or 128, a rank dividing 64.
bool mamba3_chunk_scan_bf16_supported(const Mamba3ScanDims& d);

// mamba3_scan_prefill's contract (cu_dev [n_seqs + 1] device offsets).
void mamba3_chunk_scan_bf16_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in,
                                    const int64_t* cu_dev, int64_t n_seqs, const Mamba3ScanStates& st, float* y,
                                    int64_t y_ld);

}  // namespace m3::cuda
