// For layers built of other layers (FalconH1's parallel block, Zamba2's hybrid layer): each part's
// parameters and state buffers out of the whole layer's.
#pragma once
#include <string>

#include "model/layer.h"

namespace m3 {

// The parameters named prefix + x ("attn.in_proj.weight"), by x ("in_proj.weight").
inline ParamMap params_under(const ParamMap& p, const std::string& prefix) {
  ParamMap m;
  for (const auto& [name, t] : p)
    if (name.starts_with(prefix)) m[name.substr(prefix.size())] = t;
  return m;
}

// s with only its buffers [first, first + count): a part's, whose state_spec() entries follow those
// of the parts before it in the layer's.
inline StateBatch state_buffers(const StateBatch& s, size_t first, size_t count) {
  StateBatch r = s;
  r.buf.assign(s.buf.begin() + ptrdiff_t(first), s.buf.begin() + ptrdiff_t(first + count));
  r.stride.assign(s.stride.begin() + ptrdiff_t(first), s.stride.begin() + ptrdiff_t(first + count));
  return r;
}

}  // namespace m3
