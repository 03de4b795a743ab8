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
// Attention whose input rows are d_in wide and output rows d_out (Zamba2's shared attention: in_proj
// [qkv_dim, d_in], out_proj [d_out, heads·head_dim]).
std::unique_ptr<Layer> make_attention(const AttnConfig& c, int64_t d_in, int64_t d_out, ParamMap p);
std::unique_ptr<Layer> make_gated_mlp(int64_t d_model, int64_t hidden, ParamMap p);
std::unique_ptr<Layer> make_mlp(const MlpConfig& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_moe(const MoeConfig& c, int64_t d_model, ParamMap p);
// Zamba2's hybrid layer (model/backend.h make_zamba2_hybrid).
std::unique_ptr<Layer> make_zamba2_hybrid(const ModelConfig& c, ParamMap p, ParamMap ssm_norm);

}  // namespace m3::cpu
