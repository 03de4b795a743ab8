#include "m3/presets.h"

#include <nlohmann/json.hpp>

#include "m3/error.h"

namespace m3 {

namespace {

using json = nlohmann::json;

// Each preset is a reference-format config.json, parsed like any checkpoint's.
const std::vector<std::pair<std::string, json>>& presets() {
  static const std::vector<std::pair<std::string, json>> p = [] {
    // The shape of the public mamba2-130m with Mamba-3 SISO mixers.
    json m3_130m = {{"d_model", 768}, {"n_layer", 24}, {"vocab_size", 50288}, {"d_intermediate", 0},
                    {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 128}, {"headdim", 64}, {"expand", 2},
                                 {"chunk_size", 64}}},
                    {"tie_embeddings", true}, {"pad_vocab_size_multiple", 8}};
    json hybrid = m3_130m;
    hybrid["attn_layer_idx"] = {5, 17};
    hybrid["attn_cfg"] = {{"num_heads", 12}, {"head_dim", 64}, {"causal", true}, {"rotary_emb_dim", 32},
                          {"qkv_proj_bias", false}, {"out_proj_bias", false}};
    // The same shape with MIMO rank-4 mixers (the reference's MIMO path: chunk 16 keeps C·R at 64).
    json mimo = m3_130m;
    mimo["ssm_cfg"]["is_mimo"] = true;
    mimo["ssm_cfg"]["mimo_rank"] = 4;
    mimo["ssm_cfg"]["chunk_size"] = 16;
    // The shape of the public mamba-130m: 24 Mamba-1 layers (d_state 16, dt_rank auto = 48).
    json m1_130m = {{"d_model", 768}, {"n_layer", 24}, {"vocab_size", 50280}, {"d_intermediate", 0},
                    {"ssm_cfg", {{"layer", "Mamba1"}, {"d_state", 16}, {"d_conv", 4}, {"expand", 2}, {"dt_rank", "auto"}}},
                    {"tie_embeddings", true}, {"pad_vocab_size_multiple", 8}};
    // A few-layer byte-level hybrid (vocabulary = the 256 byte values) that runs in milliseconds.
    json tiny = {{"d_model", 128}, {"n_layer", 4}, {"vocab_size", 256}, {"d_intermediate", 256},
                 {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 32}, {"headdim", 32}, {"expand", 2}, {"chunk_size", 32}}},
                 {"attn_layer_idx", {2}},
                 {"attn_cfg", {{"num_heads", 4}, {"num_heads_kv", 2}, {"causal", true}, {"rotary_emb_dim", 16},
                               {"qkv_proj_bias", false}, {"out_proj_bias", false}}},
                 {"tie_embeddings", true}};
    // The shape of the public mamba2-130m: 24 Mamba-2 layers (24 heads of 64, d_state 128, 1 group).
    json m2_130m = {{"d_model", 768}, {"n_layer", 24}, {"vocab_size", 50288}, {"d_intermediate", 0},
                    {"ssm_cfg", {{"layer", "Mamba2"}, {"d_state", 128}, {"d_conv", 4}, {"expand", 2}, {"headdim", 64},
                                 {"ngroups", 1}, {"chunk_size", 256}}},
                    {"tie_embeddings", true}, {"pad_vocab_size_multiple", 8}};
    // mamba3-tiny with Mamba-2 mixers (8 heads of 32 in 2 groups: the gated norm is per group).
    json m2_tiny = tiny;
    m2_tiny["ssm_cfg"] = {{"layer", "Mamba2"}, {"d_state", 32}, {"headdim", 32}, {"expand", 2}, {"ngroups", 2},
                          {"chunk_size", 32}};
    // mamba3-tiny with MIMO rank-2 mixers (the rank multiplies B and C; chunk 16 keeps C·R at 32).
    json mimo_tiny = tiny;
    mimo_tiny["ssm_cfg"]["is_mimo"] = true;
    mimo_tiny["ssm_cfg"]["mimo_rank"] = 2;
    mimo_tiny["ssm_cfg"]["chunk_size"] = 16;
    // A few-layer byte-level Mamba-1 model (no attention, no MLP, as mamba-130m).
    json m1_tiny = {{"d_model", 128}, {"n_layer", 4}, {"vocab_size", 256}, {"d_intermediate", 0},
                    {"ssm_cfg", {{"layer", "Mamba1"}, {"d_state", 16}, {"d_conv", 4}, {"expand", 2}}},
                    {"tie_embeddings", true}};
    // The reference's 1.36 B whole-model benchmark shape (issue 10): mamba3-130m widened to
    // d_model 2048 and 48 layers; with MIMO rank 4; and with attention at every twelfth layer
    // (16 heads of 128, rotary over 64 dims).
    json m3_1b4 = m3_130m;
    m3_1b4["d_model"] = 2048;
    m3_1b4["n_layer"] = 48;
    json mimo_1b4 = m3_1b4;
    mimo_1b4["ssm_cfg"] = mimo["ssm_cfg"];
    json hybrid_1b4 = m3_1b4;
    hybrid_1b4["attn_layer_idx"] = {11, 23, 35, 47};
    hybrid_1b4["attn_cfg"] = {{"num_heads", 16}, {"head_dim", 128}, {"causal", true}, {"rotary_emb_dim", 64},
                              {"qkv_proj_bias", false}, {"out_proj_bias", false}};
    // The shape of the public mamba2-1.3b: 48 Mamba-2 layers of d_model 2048 (64 heads of 64).
    json m2_1b3 = m2_130m;
    m2_1b3["d_model"] = 2048;
    m2_1b3["n_layer"] = 48;
    return std::vector<std::pair<std::string, json>>{
        {"mamba3-130m", m3_130m}, {"mamba3-130m-hybrid", hybrid}, {"mamba3-mimo-130m", mimo}, {"mamba3-tiny", tiny},
        {"mamba3-mimo-tiny-hybrid", mimo_tiny}, {"mamba1-130m", m1_130m}, {"mamba1-tiny", m1_tiny}, {"mamba2-130m", m2_130m}, {"mamba2-tiny-hybrid", m2_tiny},
        {"mamba3-1.4b", m3_1b4}, {"mamba3-mimo-1.4b", mimo_1b4}, {"mamba3-1.4b-hybrid", hybrid_1b4},
        {"mamba2-1.3b", m2_1b3}};
  }();
  return p;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> r;
  for (const auto& [n, j] : presets()) r.push_back(n);
  return r;
}

ModelConfig preset_config(const std::string& name) {
  for (const auto& [n, j] : presets())
    if (n == name) return parse_model_config(j, "preset " + n);
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace m3
