// The step form of a layer over a packed batch, for the layer tests: at time t every sequence
// still running advances by one token, together (a batch of sequences at different positions).
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "layer_states.h"
#include "model/layer.h"

namespace m3::test {

// x: the packed batch [cu.back(), d_in] (d_in = x.size() / cu.back(): d_model, or 2·d_model for
// Zamba2's hybrid layer); states[i] belongs to sequence i (rows cu[i]..cu[i+1]) and is advanced.
// Returns the outputs [cu.back(), d_model] in the same packed layout. x, the result and the states
// are on the host; the layer runs on `backend`.
inline std::vector<float> step_packed(Layer& layer, const std::vector<float>& x, const std::vector<int64_t>& cu,
                                      int64_t d_model, std::vector<LayerState>& states,
                                      const std::shared_ptr<Backend>& backend = cpu_backend()) {
  const size_t n = cu.size() - 1;
  const int64_t rows = cu.back(), d_in = rows > 0 ? int64_t(x.size()) / rows : d_model;
  std::vector<float> y(size_t(rows * d_model), NAN);
  int64_t longest = 0;
  for (size_t i = 0; i < n; ++i) longest = std::max(longest, cu[i + 1] - cu[i]);
  for (int64_t t = 0; t < longest; ++t) {
    std::vector<size_t> active;
    for (size_t i = 0; i < n; ++i)
      if (t < cu[i + 1] - cu[i]) active.push_back(i);
    std::vector<float> xs;
    std::vector<LayerState*> sp;
    for (size_t i : active) {
      xs.insert(xs.end(), x.begin() + (cu[i] + t) * d_in, x.begin() + (cu[i] + t + 1) * d_in);
      sp.push_back(&states[i]);
    }
    const std::vector<float> ys = step_with_states(layer, xs, sp, backend);
    for (size_t a = 0; a < active.size(); ++a)
      std::copy_n(ys.begin() + int64_t(a) * d_model, d_model, y.begin() + (cu[active[a]] + t) * d_model);
  }
  return y;
}

}  // namespace m3::test
