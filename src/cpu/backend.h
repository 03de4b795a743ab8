// The CPU backend: host memory, float32, the layers of cpu/layers.h and the graph ops of cpu/ops.h.
#pragma once
#include <memory>

#include "model/backend.h"

namespace m3::cpu {

std::shared_ptr<Backend> open_cpu_backend();

}  // namespace m3::cpu
