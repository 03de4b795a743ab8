// Checkpoints in either layout: the reference's (spec/model.md) or one saved by Hugging Face
// transformers (a config.json with "model_type"), whose config is translated to a ModelConfig and
// whose tensor names are mapped onto the reference layout's. Supported Hugging Face types:
// "mamba" (MambaForCausalLM) and "falcon_mamba" (FalconMambaForCausalLM, spec/mamba1.md §5),
// "mamba2" (Mamba2ForCausalLM, spec/mamba2.md §5). Known hybrid families this engine does not
// implement ("nemotron_h", "falcon_h1", "granitemoehybrid") are refused naming what they need.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "m3/config.h"

namespace m3 {

struct CheckpointLayout {
  ModelConfig config;
  // Reference-layout tensor name → the checkpoint's, where they differ.
  std::map<std::string, std::string> renames;
  const std::string& file_name(const std::string& name) const;
};

// The config object of a checkpoint in either layout; `source` names it in errors.
CheckpointLayout parse_checkpoint_layout(const nlohmann::json& j, const std::string& source);
// Reads and parses the config.json at `path`.
CheckpointLayout load_checkpoint_layout(const std::string& path);

}  // namespace m3
