// The float64 decode state of the Mamba-1 and Mamba-2 references (spec/mamba1.md §4,
// spec/mamba2.md §4): the conv window [channels, W] (the last W inputs, oldest first) and the SSM
// state, and its exchange with the engine's LayerState buffers "conv" and "ssm".
#pragma once
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>

#include "layer_states.h"
#include "model/layer.h"
#include "reference.h"
#include "testing.h"

namespace m3::test {

struct ConvSsmState {
  ref::Vec conv, ssm;
};

// Conv window N(0, 1), SSM state N(0, 0.25): a carried-in state that every output depends on.
inline ConvSsmState random_conv_ssm_state(int64_t conv_size, int64_t ssm_size, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  ConvSsmState s{ref::Vec(static_cast<size_t>(conv_size)), ref::Vec(static_cast<size_t>(ssm_size))};
  for (double& v : s.conv) v = normal(rng);
  for (double& v : s.ssm) v = 0.5 * normal(rng);
  return s;
}

inline LayerState to_layer_state(const Layer& layer, const ConvSsmState& s) {
  LayerState ls = new_host_state(layer);
  for (auto [name, src] : {std::pair{"conv", &s.conv}, {"ssm", &s.ssm}}) {
    auto& b = ls[name];
    EXPECT_EQ(b.data.size(), src->size()) << name;
    b.data.assign(src->begin(), src->end());
  }
  return ls;
}

inline void expect_state_near(const LayerState& got, const ConvSsmState& want, double tol, const std::string& what) {
  EXPECT_LT(rel_err(got["conv"].data, want.conv), tol) << what << ": conv";
  EXPECT_LT(rel_err(got["ssm"].data, want.ssm), tol) << what << ": ssm";
}

}  // namespace m3::test
