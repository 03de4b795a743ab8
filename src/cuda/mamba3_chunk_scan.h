// The Mamba-3 prefill scan on the device in its chunked parallel form (spec/mamba3.md §6, the
// σ form of cpu/mamba3_scan.cpp): the same function as mamba3_scan_prefill (cuda/mamba3_scan.h,
// whose dims, inputs and states it takes), float32, with the work of a sequence spread over its
// chunks instead of walked token by token. Chunks never cross a sequence's end.
#pragma once
#include <cstdint>

#include "cuda/context.h"
#include "cuda/mamba3_scan.h"

namespace m3::cuda {

// The per-call intermediates, grown to the packed batch (one set per layer, reused).
struct Mamba3ChunkScratch {
  Scratch<int64_t> table;  // chunk_first [n_seqs + 1], then chunk_seq [n_chunks]
  Scratch<float> theta0;   // [n_chunks, H, S] angles entering each chunk
  Scratch<float> states;   // [n_chunks, H, P, N] chunk contributions, then the states entering
  Scratch<float> decay;    // [n_chunks, H] exp(Σ ADT) over each chunk
};

// Tokens per chunk for a requested chunk length: a chunk holds at most 64 (token, rank) rows,
// so MIMO chunks are shorter by the rank.
int64_t mamba3_chunk_tokens(const Mamba3ScanDims& d, int64_t chunk);

// Whether the chunked kernels' shared memory fits the device for these dims (else the layer
// keeps the sequential mamba3_scan_prefill).
bool mamba3_chunk_scan_fits(const Context& ctx, const Mamba3ScanDims& d, int64_t chunk);

// mamba3_scan_prefill's contract; cu_host and cu_dev are the same offsets [n_seqs + 1] on the host
// and the device.
void mamba3_chunk_scan_prefill(Context& ctx, const Mamba3ScanDims& d, const Mamba3ScanInputs& in,
                               const int64_t* cu_host, const int64_t* cu_dev, int64_t n_seqs,
                               const Mamba3ScanStates& st, float* y, int64_t y_ld, int64_t chunk,
                               Mamba3ChunkScratch& scratch);

}  // namespace m3::cuda
