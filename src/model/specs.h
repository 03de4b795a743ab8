// Backend-agnostic description of each layer kind: its parameters (names relative to the layer's
// key prefix, shapes, initialisation) and its per-sequence decode state. Backends build their
// Layer implementations from these.
#pragma once
#include <vector>

#include "m3/config.h"
#include "m3/state.h"
#include "model/layer.h"

namespace m3 {

// spec/mamba3.md §2 and §5.
std::vector<ParamSpec> mamba3_param_specs(const Mamba3Config& c, int64_t d_model, int64_t n_layer);
LayerState mamba3_new_state(const Mamba3Config& c);

// spec/model.md §4. The KV cache buffers ("kv_k", "kv_v": [tokens, num_heads_kv·head_dim]) start empty.
std::vector<ParamSpec> attention_param_specs(const AttnConfig& c, int64_t d_model, int64_t n_layer);
LayerState attention_new_state(const AttnConfig& c);

// spec/model.md §3.
std::vector<ParamSpec> gated_mlp_param_specs(int64_t d_model, int64_t hidden, int64_t n_layer);

}  // namespace m3
