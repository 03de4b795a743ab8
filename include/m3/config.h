// Model configuration in the reference format (mamba_ssm's MambaLMHeadModel config.json,
// spec/model.md §1) and each mixer's hyperparameters (spec/mamba3.md §1, mamba2.md §1,
// mamba1.md §1). Parsing rejects unknown or inconsistent fields with a message naming the file
// and the field.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace m3 {

struct Mamba3Config {
  int64_t d_state = 128, expand = 2, headdim = 64, ngroups = 1;
  double rope_fraction = 0.5;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, A_floor = 1e-4;
  bool is_outproj_norm = false, is_mimo = false;
  int64_t mimo_rank = 4, chunk_size = 64;
  // Derived from d_model at parse time.
  int64_t d_inner = 0, nheads = 0, n_angles = 0;
  int64_t rank() const { return is_mimo ? mimo_rank : 1; }
  int64_t in_proj_dim() const { return 2 * d_inner + 2 * d_state * ngroups * rank() + 3 * nheads + n_angles; }
  bool operator==(const Mamba3Config&) const = default;
};

struct Mamba2Config {
  int64_t d_state = 128, d_conv = 4, expand = 2, headdim = 64, d_ssm = -1, ngroups = 1;
  double A_init_min = 1, A_init_max = 16;
  bool D_has_hdim = false, rmsnorm = true, norm_before_gate = false;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4;
  double dt_limit_min = 0, dt_limit_max = 1.0 / 0.0;
  bool bias = false, conv_bias = true;
  int64_t chunk_size = 256;
  // Hugging Face's Mamba2 (spec/mamba2.md §5): the gated norm over all of d_ssm instead of per
  // group, with the checkpoint's epsilon. The reference format cannot express either.
  bool norm_per_group = true;
  double norm_eps = 1e-5;
  // Derived.
  int64_t d_inner = 0, nheads = 0;
  int64_t d_mlp() const { return d_inner - d_ssm; }
  int64_t conv_dim() const { return d_ssm + 2 * ngroups * d_state; }
  int64_t in_proj_dim() const { return 2 * d_inner + 2 * ngroups * d_state + nheads; }
  bool operator==(const Mamba2Config&) const = default;
};

struct Mamba1Config {
  int64_t d_state = 16, d_conv = 4, expand = 2, dt_rank = -1;  // -1: "auto"
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, dt_scale = 1.0;
  bool dt_init_random = true, conv_bias = true, bias = false;
  // FalconMamba (spec/mamba1.md §5): δ, B and C each through a weightless RMSNorm of epsilon
  // bcdt_rms_eps after x_proj. The reference format cannot express it.
  bool bcdt_rmsnorm = false;
  double bcdt_rms_eps = 1e-6;
  // Jamba (transformers' JambaMambaMixer): those norms have learnable weights, "dt_layernorm.weight"
  // [dt_rank], "b_layernorm.weight" and "c_layernorm.weight" [d_state] (bcdt_rmsnorm must be set too).
  bool bcdt_norm_weight = false;
  int64_t d_inner = 0;
  bool operator==(const Mamba1Config&) const = default;
};

struct AttnConfig {
  int64_t num_heads = 0, num_heads_kv = 0, head_dim = 0, mlp_dim = 0;
  bool qkv_proj_bias = true, out_proj_bias = true, causal = false;
  double softmax_scale = 0;  // 0: 1/sqrt(head_dim)
  int64_t d_conv = 0, rotary_emb_dim = 0;
  double rotary_emb_base = 10000;
  bool rotary_emb_interleaved = false;
  int64_t qkv_dim() const { return head_dim * (num_heads + 2 * num_heads_kv); }
  bool operator==(const AttnConfig&) const = default;
};

// Feed-forward layers of the Hugging Face hybrids (transformers' NemotronHMLP): an MLP standing alone as a
// layer, up_proj → relu² → down_proj (NemotronH's "mlp" blocks).
struct MlpConfig {
  int64_t hidden = 0;
  bool bias = false;
  bool operator==(const MlpConfig&) const = default;
};

// Top-k mixture of experts plus shared experts (transformers' GraniteMoeHybridMoE and
// NemotronHMoE). The two families differ in
// routing, expert shape and tensor layout:
// - Granite (GraniteMoeHybrid): softmax over the top-k router logits; experts silu(gate) ⊙ up → down
//   stacked in input_linear [E, 2·I, d] (gate rows first) and output_linear [E, d, I]; a shared
//   MLP of the same shape, shared_mlp.input_linear [2·S, d] and output_linear [d, S].
// - NemotronH (DeepSeek-V3's router): sigmoid scores, choice by score + e_score_correction_bias
//   within the best topk_group of n_group groups, weights the chosen sigmoid scores (renormalised
//   when norm_topk_prob) times routed_scaling_factor; experts up → relu² → down, one tensor each
//   (experts.{e}.up_proj.weight); shared experts of the same shape (shared_experts.*).
// - Jamba (Mixtral's router): softmax over all router logits, the top-k probabilities as the
//   weights, not renormalised; experts silu(gate) ⊙ up → down, router.weight [E, d],
//   experts.{e}.gate_up_proj.weight [2·I, d] (gate rows first) and experts.{e}.down_proj.weight
//   [d, I]; no shared experts.
struct MoeConfig {
  enum class Family { Granite, NemotronH, Jamba };
  Family family = Family::Granite;
  int64_t n_experts = 0, top_k = 0, expert_hidden = 0, shared_hidden = 0;
  int64_t n_group = 1, topk_group = 1;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1;
  bool operator==(const MoeConfig&) const = default;
};

// AttentionMamba2: FalconH1's parallel hybrid, attention (attn) and Mamba-2 (ssm, the model's
// Mamba2Config) on the same normed input, their outputs summed (transformers' FalconH1DecoderLayer).
// Zamba2Hybrid: Zamba2's hybrid layer (transformers' Zamba2HybridLayer): a transformer block
// (attention `attn` over the 2·d_model-wide [residual | embeddings], then a GELU-gated MLP of
// zamba2_mlp_hidden) and a linear map whose output is added to the Mamba-2 mixer's input, not to
// the residual; its block norm is the Mamba-2 input's norm.
enum class MixerKind { Mamba1, Mamba2, Mamba3, Attention, Mlp, Moe, AttentionMamba2, Zamba2Hybrid };
const char* mixer_kind_name(MixerKind k);

struct ModelConfig {
  int64_t d_model = 2560, d_intermediate = 0, n_layer = 64, vocab_size = 50277;
  int64_t pad_vocab_size_multiple = 8;
  bool rms_norm = true, residual_in_fp32 = true, fused_add_norm = true, tie_embeddings = true;
  double norm_eps = 1e-5;
  MixerKind ssm_kind = MixerKind::Mamba1;
  std::variant<Mamba1Config, Mamba2Config, Mamba3Config> ssm;
  std::vector<int64_t> attn_layer_idx;
  AttnConfig attn;
  // Hugging Face hybrids (as transformers defines them), which the reference format cannot express:
  // each layer's kind (empty: ssm_kind, with attention at attn_layer_idx); what ends every block
  // after its second norm instead of the d_intermediate GatedMLP: a GatedMLP of exactly
  // gated_mlp_hidden, or the MoE `moe` (block_moe: in every block; block_moe_layers: in the blocks
  // it marks, Jamba's every expert_layer_period-th, the others keeping the GatedMLP); the configs of
  // Mlp and Moe layers.
  std::vector<MixerKind> layer_kinds;
  int64_t gated_mlp_hidden = 0;
  bool block_moe = false;
  std::vector<bool> block_moe_layers;
  MlpConfig mlp;
  MoeConfig moe;
  int64_t zamba2_mlp_hidden = 0;

  int64_t vocab_padded() const {
    return (vocab_size + pad_vocab_size_multiple - 1) / pad_vocab_size_multiple * pad_vocab_size_multiple;
  }
  int64_t mlp_hidden() const { return gated_mlp_hidden > 0 ? gated_mlp_hidden : (d_intermediate + 127) / 128 * 128; }
  // Whether each block ends with a second norm and a GatedMLP or MoE.
  bool has_block_ffn() const { return d_intermediate > 0 || gated_mlp_hidden > 0 || block_moe; }
  // Whether block i's feed-forward network is the MoE.
  bool block_is_moe(int64_t i) const {
    return block_moe || (!block_moe_layers.empty() && block_moe_layers[size_t(i)]);
  }
  MixerKind layer_kind(int64_t i) const;
  // Every field, given and derived (what the config round trip must preserve).
  bool operator==(const ModelConfig&) const = default;
};

// Parses a reference-format config object; `source` names it in errors (usually the file path).
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig load_model_config(const std::string& path);
// The reference-format JSON of a config (what `m3 init` writes); parse(to_json(c)) == c. Throws
// m3::Error for what the format cannot express (Hugging Face norms: another epsilon, FalconMamba's
// dt/B/C norms, Mamba-2's norm over all groups).
nlohmann::json model_config_to_json(const ModelConfig& c);

}  // namespace m3
