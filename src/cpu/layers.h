// The CPU backend's Layer implementations, built from validated float32 parameters.
#pragma once
#include <memory>
#include <vector>

#include "m3/config.h"
#include "model/layer.h"

namespace m3::cpu {

std::unique_ptr<Layer> make_mamba3(const Mamba3Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_mamba1(const Mamba1Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_mamba2(const Mamba2Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_gated_mlp(int64_t d_model, int64_t hidden, ParamMap p);
std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d_model, ParamMap p);
// Layers side by side on the same input, their outputs summed; the state is theirs concatenated.

}  // namespace m3::cpu
