// The CUDA backend's Layer implementations, built from validated float32 host parameters that
// they copy to the device (matrices in the context's precision). Each implements the same math
// as its CPU counterpart in cpu/layers.h, against which tests/test_cuda_layers.cpp checks it.
#pragma once
#include <memory>
#include <vector>

#include "cuda/context.h"
#include "m3/config.h"
#include "model/layer.h"

namespace m3::cuda {

std::unique_ptr<Layer> make_mamba3(Context& ctx, const Mamba3Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_mamba2(Context& ctx, const Mamba2Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_mamba1(Context& ctx, const Mamba1Config& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_attention(Context& ctx, const AttnConfig& c, int64_t d_model, ParamMap p);
// Attention whose input rows are d_in wide and output rows d_out (Zamba2's shared attention, as
// cpu::make_attention's overload).
std::unique_ptr<Layer> make_attention(Context& ctx, const AttnConfig& c, int64_t d_in, int64_t d_out, ParamMap p);
std::unique_ptr<Layer> make_gated_mlp(Context& ctx, int64_t d_model, int64_t hidden, ParamMap p);
std::unique_ptr<Layer> make_mlp(Context& ctx, const MlpConfig& c, int64_t d_model, ParamMap p);
std::unique_ptr<Layer> make_moe(Context& ctx, const MoeConfig& c, int64_t d_model, ParamMap p);
// Zamba2's hybrid layer (model/backend.h make_zamba2_hybrid), as cpu::make_zamba2_hybrid.
std::unique_ptr<Layer> make_zamba2_hybrid(Context& ctx, const ModelConfig& c, ParamMap p, ParamMap ssm_norm);

}  // namespace m3::cuda
