// Backend-agnostic description of each layer kind: its parameters (names relative to the layer's
// key prefix, shapes, initialisation) and its per-sequence decode state. Backends build their
// Layer implementations from these.
#pragma once
#include <string>
#include <vector>

#include "m3/config.h"
#include "m3/state.h"
#include "model/layer.h"

namespace m3 {

// Each layer kind's line for `m3 info` (every option the math reads), the same on every backend.
std::string mamba3_describe(const Mamba3Config& c);
std::string mamba2_describe(const Mamba2Config& c);
std::string mamba1_describe(const Mamba1Config& c);
std::string attention_describe(const AttnConfig& c);
std::string gated_mlp_describe(int64_t hidden);

// spec/mamba3.md §2 and §5.
std::vector<ParamSpec> mamba3_param_specs(const Mamba3Config& c, int64_t d_model, int64_t n_layer);
// State: "angle" [H, S], "ssm" [H, P, N], "k" [R, H, N], "v" [H, P], in this order.
LayerStateSpec mamba3_state_spec(const Mamba3Config& c);

// spec/mamba1.md §2 and §4: state "conv" [d_inner, d_conv], "ssm" [d_inner, d_state].
std::vector<ParamSpec> mamba1_param_specs(const Mamba1Config& c, int64_t d_model, int64_t n_layer);
LayerStateSpec mamba1_state_spec(const Mamba1Config& c);

// spec/mamba2.md §2 and §4: state "conv" [d_ssm + 2·ngroups·d_state, d_conv], "ssm" [nheads, headdim, d_state].
std::vector<ParamSpec> mamba2_param_specs(const Mamba2Config& c, int64_t d_model, int64_t n_layer);
LayerStateSpec mamba2_state_spec(const Mamba2Config& c);

// spec/model.md §4. State: the KV cache "kv_k", "kv_v" [positions, num_heads_kv·head_dim] (KV
// buffers), then "conv" [qkv_dim, d_conv] when d_conv > 0.
std::vector<ParamSpec> attention_param_specs(const AttnConfig& c, int64_t d_model, int64_t n_layer);
LayerStateSpec attention_state_spec(const AttnConfig& c);

// spec/model.md §3.
std::vector<ParamSpec> gated_mlp_param_specs(int64_t d_model, int64_t hidden, int64_t n_layer);

// transformers' NemotronHMLP: "up_proj.weight" [hidden, d_model], "down_proj.weight" [d_model, hidden]
// (and their biases when c.bias).
std::vector<ParamSpec> mlp_param_specs(const MlpConfig& c, int64_t d_model, int64_t n_layer);
std::string mlp_describe(const MlpConfig& c);

// transformers' GraniteMoeHybridMoE, NemotronHMoE and JambaSparseMoeBlock: the router, the experts
// and the shared experts under the family's names (MoeConfig).
std::vector<ParamSpec> moe_param_specs(const MoeConfig& c, int64_t d_model, int64_t n_layer);
std::string moe_describe(const MoeConfig& c);

// Zamba2's hybrid layer (MixerKind::Zamba2Hybrid, transformers' Zamba2HybridLayer) with this use's
// adapters folded into its weights: "shared_norm.weight" [2·d_model] (the RMSNorm of [h | e]);
// "attn.in_proj.weight" [qkv_dim, 2·d_model] and "attn.out_proj.weight" [d_model, heads·head_dim];
// "ff_norm.weight" [d_model]; "mlp.fc1.weight" [2·I, d_model] (gate rows first, GELU on them) and
// "mlp.fc2.weight" [d_model, I]; "linear.weight" [d_model, d_model]; the Mamba-2 mixer's under
// "ssm.". The Mamba-2 input's RMSNorm is the block's norm. State: the attention's KV buffers, then
// the Mamba-2 mixer's.
std::vector<ParamSpec> zamba2_hybrid_param_specs(const ModelConfig& c);
LayerStateSpec zamba2_hybrid_state_spec(const ModelConfig& c);
std::string zamba2_hybrid_describe(const ModelConfig& c);

}  // namespace m3
