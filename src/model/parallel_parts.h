// What both backends' parallel layers (layers side by side on the same input, outputs summed:
// FalconH1's attention and Mamba-2) share: the description, the state buffers (part k's follow
// those of parts 0..k−1) and the slice of a StateBatch a part sees.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/layer.h"

namespace m3 {

inline std::string parallel_describe(const std::vector<std::unique_ptr<Layer>>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : " || ") + p->describe();
  return s;
}

inline LayerStateSpec parallel_state_spec(const std::vector<std::unique_ptr<Layer>>& parts) {
  LayerStateSpec s;
  for (const auto& p : parts) {
    const LayerStateSpec ps = p->state_spec();
    s.insert(s.end(), ps.begin(), ps.end());
  }
  return s;
}

// Buffers first .. first + n − 1 of s (slots, positions and capacity as s has them).
inline StateBatch state_part(const StateBatch& s, size_t first, size_t n) {
  StateBatch ps = s;
  ps.buf.assign(s.buf.begin() + ptrdiff_t(first), s.buf.begin() + ptrdiff_t(first + n));
  ps.stride.assign(s.stride.begin() + ptrdiff_t(first), s.stride.begin() + ptrdiff_t(first + n));
  return ps;
}

}  // namespace m3
