// Programmatic dependent launch (Hopper): a kernel launched with launch_pdl may start while the
// kernel before it on the stream is still running, so its prologue (block scheduling, loads of
// weights that no earlier kernel writes) overlaps the tail of the previous one. This is what keeps
// the weight stream of a batch-1 decode step going between the small per-layer kernels.
//
// The contract, for every kernel launched with launch_pdl:
// - it calls pdl_wait() before it reads anything an earlier kernel wrote (and before it writes
//   anything an earlier kernel reads): pdl_wait returns when the previous grid has completed and
//   its memory is visible;
// - it calls pdl_wait() on every path before it exits, so that its own completion still implies
//   the completion of everything before it (a chain of such kernels stays ordered).
// A kernel calls pdl_trigger() to let the next kernel, if that one was launched with launch_pdl,
// be scheduled early; it does not make any of its results visible early (the next kernel's
// pdl_wait still waits for this grid's completion). Without a PDL launch after it, it is a no-op.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "cuda/check.h"

namespace m3::cuda {

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" :::); }

template <class... Params, class... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  M3_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace m3::cuda
