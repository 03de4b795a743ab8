// Layers side by side (FalconH1's attention and Mamba-2, transformers' FalconH1DecoderLayer): each
// part runs on the same input and their outputs are summed; part k's state buffers follow those of
// parts 0..k−1. The same on every backend but for where a later part's output goes and how it is
// added, which the backend supplies.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/layer.h"

namespace m3 {

struct ParallelOps {
  std::function<float*(int64_t n)> scratch;                     // n floats in the backend's memory
  std::function<void(float* y, const float* x, int64_t n)> add;  // y[i] += x[i]
};

std::unique_ptr<Layer> make_parallel_layer(std::vector<std::unique_ptr<Layer>> parts, int64_t d_model,
                                           ParallelOps ops);

}  // namespace m3
