// Hugging Face config translation (spec/mamba2.md §5): each field of the checkpoint's config.json
// is mapped onto its reference-format name, the result is parsed (and so validated) like a
// reference config, then the properties that format cannot express are set. Every field is
// accounted for: mapped, checked against the one value this engine implements, or listed as
// having no effect on inference; anything else is refused, as reference configs are.
#include "io/hf_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "m3/error.h"

namespace m3 {

namespace {

using json = nlohmann::json;

// Fields that describe the file or training, not the network's math.
const std::set<std::string> kNoEffect = {
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "bos_token_id", "eos_token_id",
    "pad_token_id", "use_cache", "initializer_range", "rescale_prenorm_residual", "time_step_rank"};

// Mamba2ForCausalLM → MambaLMHeadModel with Mamba2 mixers: HF name → reference name (spec §5).
const std::map<std::string, std::string> kMamba2Top = {
    {"hidden_size", "d_model"}, {"num_hidden_layers", "n_layer"}, {"vocab_size", "vocab_size"},
    {"residual_in_fp32", "residual_in_fp32"}, {"tie_word_embeddings", "tie_embeddings"}};
const std::map<std::string, std::string> kMamba2Ssm = {
    {"state_size", "d_state"},         {"n_groups", "ngroups"},          {"conv_kernel", "d_conv"},
    {"expand", "expand"},              {"head_dim", "headdim"},          {"use_bias", "bias"},
    {"use_conv_bias", "conv_bias"},    {"chunk_size", "chunk_size"},     {"time_step_limit", "dt_limit"},
    {"time_step_min", "dt_min"},       {"time_step_max", "dt_max"},      {"time_step_floor", "dt_init_floor"}};

CheckpointLayout parse_hf_mamba2(const json& j, const std::string& source) {
  json ref = {{"pad_vocab_size_multiple", 1}, {"d_intermediate", 0}, {"rms_norm", true},
              {"tie_embeddings", true},  // PretrainedConfig's default for tie_word_embeddings
              {"ssm_cfg", {{"layer", "Mamba2"}}}};
  int64_t num_heads = -1;
  double eps = 1e-5;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const std::string at = source + ": field '" + k + "'";
    if (auto m = kMamba2Top.find(k); m != kMamba2Top.end()) {
      ref[m->second] = *it;
    } else if (auto s = kMamba2Ssm.find(k); s != kMamba2Ssm.end()) {
      ref["ssm_cfg"][s->second] = *it;
    } else if (k == "num_heads") {
      check(it->is_number_integer(), at + ": expected an integer, found " + it->dump());
      num_heads = it->get<int64_t>();
    } else if (k == "layer_norm_epsilon") {
      check(it->is_number() && it->get<double>() > 0, at + ": expected a positive number, found " + it->dump());
      eps = it->get<double>();
    } else if (k == "hidden_act") {
      check(*it == "silu", at + ": only \"silu\" is implemented, found " + it->dump());
    } else if (k == "rms_norm" || k == "norm_before_gate") {
      // HF's Mamba2Mixer applies the gated norm, after the gate (spec §5); only that is implemented.
      check(*it == (k == "rms_norm"), at + ": only " + (k == "rms_norm" ? "true" : "false") + " is implemented");
    } else {
      check(kNoEffect.count(k) != 0, source + ": unknown field '" + k + "' for model_type \"mamba2\"");
    }
  }
  CheckpointLayout l;
  l.config = parse_model_config(ref, source + " (translated from Hugging Face's Mamba2 config)");
  Mamba2Config& m = std::get<Mamba2Config>(l.config.ssm);
  check(num_heads == m.nheads, source + ": num_heads " + std::to_string(num_heads) + " does not match expand · " +
                                   "hidden_size / head_dim = " + std::to_string(m.nheads));
  l.config.norm_eps = eps;
  m.norm_eps = eps;
  m.norm_per_group = false;  // HF's MambaRMSNormGated normalises over all of d_inner (spec §5)
  l.renames = {{"backbone.embedding.weight", "backbone.embeddings.weight"}};
  return l;
}

}  // namespace

const std::string& CheckpointLayout::file_name(const std::string& name) const {
  auto it = renames.find(name);
  return it == renames.end() ? name : it->second;
}

CheckpointLayout parse_checkpoint_layout(const json& j, const std::string& source) {
  check(j.is_object(), source + ": expected a JSON object");
  auto type = j.find("model_type");
  if (type == j.end()) return {parse_model_config(j, source), {}};
  if (*type == "mamba") return parse_hf_mamba(j, source);
  check(*type == "mamba2", source + ": Hugging Face model_type " + type->dump() +
                               " is not supported (supported: \"mamba\", \"mamba2\"; or a reference-format config)");
  return parse_hf_mamba2(j, source);
}

CheckpointLayout load_checkpoint_layout(const std::string& path) {
  std::ifstream in(path);
  check(bool(in), path + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
  return parse_checkpoint_layout(j, path);
}

}  // namespace m3
