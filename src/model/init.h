// Initialisers for training from scratch (spec/model.md §6 and each mixer spec's §2).
#pragma once
#include <cstdint>

#include "model/layer.h"

namespace m3::init {

InitFn zeros();
InitFn ones();
InitFn constant(float v);
InitFn normal(float std);
// PyTorch's Linear/Conv1d default: U(−1/√fan_in, +1/√fan_in), divided by `rescale` (√n_layer for
// residual-output projections).
InitFn linear_uniform(int64_t fan_in, float rescale = 1.0f);
// dt_bias = inverse softplus of dt ~ exp(U(log dt_min, log dt_max)) clamped ≥ floor.
InitFn dt_bias(double dt_min, double dt_max, double floor);

}  // namespace m3::init
