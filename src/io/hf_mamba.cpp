// Hugging Face MambaForCausalLM (model_type "mamba", spec/mamba1.md §5) as a reference-format
// model with Mamba-1 mixers, the same way as hf_config.cpp treats "mamba2": each field of
// config.json is mapped onto its reference-format name and the result parsed (so validated) like a
// reference config; fields that must hold the one value this engine implements are checked; fields
// that change nothing at inference are listed; anything else is refused.
#include <nlohmann/json.hpp>
#include <set>

#include "io/hf_config.h"
#include "m3/error.h"

namespace m3 {

namespace {

using json = nlohmann::json;

// HF name → reference name (spec/model.md §1, spec/mamba1.md §1).
const std::map<std::string, std::string> kTop = {{"hidden_size", "d_model"},
                                                 {"num_hidden_layers", "n_layer"},
                                                 {"vocab_size", "vocab_size"},
                                                 {"residual_in_fp32", "residual_in_fp32"},
                                                 {"tie_word_embeddings", "tie_embeddings"}};
const std::map<std::string, std::string> kSsm = {
    {"state_size", "d_state"},       {"conv_kernel", "d_conv"},          {"expand", "expand"},
    {"time_step_rank", "dt_rank"},   {"use_bias", "bias"},               {"use_conv_bias", "conv_bias"},
    {"time_step_min", "dt_min"},     {"time_step_max", "dt_max"},        {"time_step_floor", "dt_init_floor"},
    {"time_step_scale", "dt_scale"}, {"time_step_init_scheme", "dt_init"}};

// Fields that describe the file, generation or training, or that MambaForCausalLM reads no further
// (the last row: what conversions from the reference format leave behind; HF always uses RMSNorm,
// does not pad the vocabulary and takes its sizes from the fields above).
const std::set<std::string> kNoEffect = {
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "rescale_prenorm_residual",
    "use_mambapy", "use_associative_scan",  // which implementation of the same scan HF runs
    "d_model", "n_layer", "ssm_cfg", "rms_norm", "fused_add_norm", "pad_vocab_size_multiple"};

}  // namespace

CheckpointLayout parse_hf_mamba(const json& j, const std::string& source) {
  json ref = {{"pad_vocab_size_multiple", 1}, {"d_intermediate", 0}, {"rms_norm", true},
              {"tie_embeddings", true},  // PretrainedConfig's default for tie_word_embeddings
              {"ssm_cfg", {{"layer", "Mamba1"}}}};
  int64_t intermediate_size = -1;
  double eps = 1e-5;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const std::string at = source + ": field '" + k + "'";
    if (auto m = kTop.find(k); m != kTop.end()) {
      ref[m->second] = *it;
    } else if (auto s = kSsm.find(k); s != kSsm.end()) {
      ref["ssm_cfg"][s->second] = *it;
    } else if (k == "intermediate_size") {
      check(it->is_number_integer(), at + ": expected an integer, found " + it->dump());
      intermediate_size = it->get<int64_t>();
    } else if (k == "layer_norm_epsilon") {
      check(it->is_number() && it->get<double>() > 0, at + ": expected a positive number, found " + it->dump());
      eps = it->get<double>();
    } else if (k == "hidden_act") {
      check(*it == "silu", at + ": only \"silu\" is implemented, found " + it->dump());
    } else {
      check(kNoEffect.count(k) != 0, source + ": unknown field '" + k + "' for model_type \"mamba\"");
    }
  }
  CheckpointLayout l;
  l.config = parse_model_config(ref, source + " (translated from Hugging Face's Mamba config)");
  const Mamba1Config& m = std::get<Mamba1Config>(l.config.ssm);
  check(intermediate_size < 0 || intermediate_size == m.d_inner,
        source + ": intermediate_size " + std::to_string(intermediate_size) + " does not match expand · hidden_size = " +
            std::to_string(m.d_inner));
  l.config.norm_eps = eps;
  l.renames = {{"backbone.embedding.weight", "backbone.embeddings.weight"}};
  return l;
}

}  // namespace m3
