// Hugging Face config translation (spec/mamba1.md §5, spec/mamba2.md §5). Each supported
// model_type is a table (HfFamily) and one loop translates any of them: fields with a
// reference-format name are mapped onto it and the result is parsed (and so validated) like a
// reference config; the family's own fields are read after that and set what the reference format
// cannot express; fields that must hold the one value this engine implements are checked; fields
// that change nothing at inference are listed; anything else is refused, as reference configs are.
#include "io/hf_config.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "io/files.h"
#include "io/hf_hybrids.h"
#include "m3/error.h"

namespace m3 {

namespace {

using json = nlohmann::json;

// Typed reads of an HF config's own fields; errors name the source and the field.
class HfFields {
 public:
  HfFields(const json& j, const std::string& source)
      : gated_norm_per_group(hf_gated_norm_per_group(j, source)), j_(j), source_(source) {}
  const bool gated_norm_per_group;
  std::string at(const std::string& key) const { return source_ + ": field '" + key + "'"; }
  std::optional<int64_t> integer(const std::string& key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    check(v->is_number_integer(), at(key) + ": expected an integer, found " + v->dump());
    return v->get<int64_t>();
  }
  double positive(const std::string& key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    check(v->is_number() && v->get<double>() > 0 && std::isfinite(v->get<double>()),
          at(key) + ": expected a positive number, found " + v->dump());
    return v->get<double>();
  }
  // A field that, when present, must hold the one value this engine implements.
  void require(const std::string& key, const json& value) const {
    const json* v = find(key);
    check(!v || *v == value, at(key) + ": only " + value.dump() + " is implemented, found " + (v ? v->dump() : ""));
  }

 private:
  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& j_;
  const std::string& source_;
};

// One supported model_type.
struct HfFamily {
  const char* model_type;
  const char* layer;                       // the reference's ssm_cfg.layer
  std::map<std::string, std::string> ssm;  // HF name → reference ssm_cfg name
  std::set<std::string> own;               // fields `finish` reads
  std::set<std::string> no_effect;         // beyond kNoEffect
  // Reads the family's own fields; sets what the reference format cannot express.
  void (*finish)(const HfFields& f, ModelConfig& c);
};

// Every family: HF name → reference top-level name (spec/model.md §1).
const std::map<std::string, std::string> kTop = {{"hidden_size", "d_model"},
                                                 {"num_hidden_layers", "n_layer"},
                                                 {"vocab_size", "vocab_size"},
                                                 {"residual_in_fp32", "residual_in_fp32"},
                                                 {"tie_word_embeddings", "tie_embeddings"}};
// Fields that describe the file, generation or training, not the network's math.
const std::set<std::string> kNoEffect = {"architectures", "model_type",  "transformers_version",
                                         "dtype",         "torch_dtype", "_name_or_path",
                                         "bos_token_id",  "eos_token_id", "pad_token_id",
                                         "use_cache",     "initializer_range", "rescale_prenorm_residual"};

// MambaForCausalLM and FalconMambaForCausalLM (spec/mamba1.md §5).
const std::map<std::string, std::string> kMamba1Ssm = {
    {"state_size", "d_state"},       {"conv_kernel", "d_conv"},          {"expand", "expand"},
    {"time_step_rank", "dt_rank"},   {"use_bias", "bias"},               {"use_conv_bias", "conv_bias"},
    {"time_step_min", "dt_min"},     {"time_step_max", "dt_max"},        {"time_step_floor", "dt_init_floor"},
    {"time_step_scale", "dt_scale"}, {"time_step_init_scheme", "dt_init"}};
// Which implementation of the same scan HF runs; and (the last row) what conversions from the
// reference format leave behind, which HF reads no further: it always uses RMSNorm, does not pad
// the vocabulary and takes its sizes from the fields above.
const std::set<std::string> kMamba1NoEffect = {"use_mambapy", "use_falcon_mambapy", "use_associative_scan",
                                               "d_model",     "n_layer",            "ssm_cfg",
                                               "rms_norm",    "fused_add_norm",     "pad_vocab_size_multiple"};

void finish_mamba1(const HfFields& f, ModelConfig& c) {
  const Mamba1Config& m = std::get<Mamba1Config>(c.ssm);
  if (const std::optional<int64_t> n = f.integer("intermediate_size"))
    check(*n == m.d_inner, f.at("intermediate_size") + ": " + std::to_string(*n) +
                               " does not match expand · hidden_size = " + std::to_string(m.d_inner));
}

void finish_falcon_mamba(const HfFields& f, ModelConfig& c) {
  finish_mamba1(f, c);
  Mamba1Config& m = std::get<Mamba1Config>(c.ssm);
  m.bcdt_rmsnorm = true;
  m.bcdt_rms_eps = f.positive("mixer_rms_eps", 1e-6);  // FalconMambaConfig's default
}

// Mamba2ForCausalLM (spec/mamba2.md §5).
const std::map<std::string, std::string> kMamba2Ssm = {
    {"state_size", "d_state"},       {"n_groups", "ngroups"},         {"conv_kernel", "d_conv"},
    {"expand", "expand"},            {"head_dim", "headdim"},         {"use_bias", "bias"},
    {"use_conv_bias", "conv_bias"},  {"chunk_size", "chunk_size"},    {"time_step_limit", "dt_limit"},
    {"time_step_min", "dt_min"},     {"time_step_max", "dt_max"},     {"time_step_floor", "dt_init_floor"}};

void finish_mamba2(const HfFields& f, ModelConfig& c) {
  Mamba2Config& m = std::get<Mamba2Config>(c.ssm);
  const std::optional<int64_t> n = f.integer("num_heads");
  check(n.has_value(), f.at("num_heads") + " is missing");
  check(*n == m.nheads, f.at("num_heads") + ": " + std::to_string(*n) + " does not match expand · hidden_size / " +
                            "head_dim = " + std::to_string(m.nheads));
  // HF's Mamba2Mixer applies the gated norm after the gate, with the checkpoint's epsilon, over all
  // of d_inner (spec §5) or per group (hf_gated_norm_per_group); only that is implemented.
  f.require("rms_norm", true);
  f.require("norm_before_gate", false);
  m.norm_per_group = f.gated_norm_per_group;
  m.norm_eps = c.norm_eps;
}

const HfFamily kFamilies[] = {
    {"mamba", "Mamba1", kMamba1Ssm, {"intermediate_size"}, kMamba1NoEffect, finish_mamba1},
    {"falcon_mamba", "Mamba1", kMamba1Ssm, {"intermediate_size", "mixer_rms_eps"}, kMamba1NoEffect,
     finish_falcon_mamba},
    // time_step_rank: Mamba2Config keeps it; the mixer never reads it.
    {"mamba2", "Mamba2", kMamba2Ssm, {"num_heads", "rms_norm", "norm_before_gate"}, {"time_step_rank"}, finish_mamba2},
};

CheckpointLayout translate(const HfFamily& fam, const json& j, const std::string& source) {
  json ref = {{"pad_vocab_size_multiple", 1}, {"d_intermediate", 0}, {"rms_norm", true},
              {"tie_embeddings", true},  // PretrainedConfig's default for tie_word_embeddings
              {"ssm_cfg", {{"layer", fam.layer}}}};
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (auto m = kTop.find(k); m != kTop.end()) {
      ref[m->second] = *it;
    } else if (auto s = fam.ssm.find(k); s != fam.ssm.end()) {
      ref["ssm_cfg"][s->second] = *it;
    } else {
      check(fam.own.count(k) || kNoEffect.count(k) || fam.no_effect.count(k) || k == "layer_norm_epsilon" ||
                k == "hidden_act",
            source + ": unknown field '" + k + "' for model_type \"" + fam.model_type + "\"");
    }
  }
  const HfFields f(j, source);
  f.require("hidden_act", "silu");
  CheckpointLayout l;
  l.config = parse_model_config(ref, source + " (translated from Hugging Face's \"" + fam.model_type + "\" config)");
  l.config.norm_eps = f.positive("layer_norm_epsilon", 1e-5);
  fam.finish(f, l.config);
  l.renames = {{"backbone.embedding.weight", "backbone.embeddings.weight"}};
  return l;
}

// The hybrid families (io/hf_hybrids.h), translated by their own functions.
const std::map<std::string, CheckpointLayout (*)(const json&, const std::string&)> kHybrids = {
    {"bamba", translate_bamba},
    {"granitemoehybrid", translate_granitemoehybrid},
    {"jamba", translate_jamba},
    {"nemotron_h", translate_nemotron_h},
    {"falcon_h1", translate_falcon_h1},
    {"zamba2", translate_zamba2}};

std::string supported_types() {
  std::string r;
  for (const HfFamily& f : kFamilies) r += std::string(r.empty() ? "" : ", ") + "\"" + f.model_type + "\"";
  for (const auto& [type, fn] : kHybrids) r += ", \"" + type + "\"";
  return "supported: " + r + "; or a reference-format config";
}

}  // namespace

bool hf_gated_norm_per_group(const json& j, const std::string& source) {
  auto v = j.find("transformers_version");
  if (v == j.end() || v->is_null()) return true;
  int major = 0, minor = 0;
  check(v->is_string() && std::sscanf(v->get<std::string>().c_str(), "%d.%d", &major, &minor) == 2,
        source + ": field 'transformers_version': expected a release such as \"5.24.0\", found " + v->dump());
  return major > 5 || (major == 5 && minor >= 23);
}

std::string CheckpointLayout::file_name(const std::string& name) const {
  if (auto it = renames.find(name); it != renames.end()) return it->second;
  const std::pair<const std::string, std::string>* best = nullptr;
  for (const auto& r : prefix_renames)
    if (name.starts_with(r.first) && (!best || r.first.size() > best->first.size())) best = &r;
  return best ? best->second + name.substr(best->first.size()) : name;
}

std::vector<TensorPiece> CheckpointLayout::sources(const std::string& name) const {
  if (auto it = pieces.find(name); it != pieces.end()) return it->second;
  return {TensorPiece{file_name(name)}};
}

CheckpointLayout parse_checkpoint_layout(const json& j, const std::string& source) {
  check(j.is_object(), source + ": expected a JSON object");
  auto type = j.find("model_type");
  if (type == j.end()) return {parse_model_config(j, source), {}, {}, {}};
  for (const HfFamily& f : kFamilies)
    if (*type == f.model_type) return translate(f, j, source);
  if (type->is_string())
    if (auto h = kHybrids.find(type->get<std::string>()); h != kHybrids.end()) return h->second(j, source);
  throw Error(source + ": Hugging Face model_type " + type->dump() + " is not supported (" + supported_types() + ")");
}

CheckpointLayout load_checkpoint_layout(const std::string& path) {
  return parse_checkpoint_layout(read_json_file(path), path);
}

}  // namespace m3
