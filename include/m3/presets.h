// Named model shapes for `m3 init --preset` and the benchmarks.
#pragma once
#include <string>
#include <vector>

#include "m3/config.h"

namespace m3 {

std::vector<std::string> preset_names();
// Throws m3::Error listing the known names when `name` is unknown.
ModelConfig preset_config(const std::string& name);

}  // namespace m3
