// Hugging Face's hybrid families (as transformers defines them): "granitemoehybrid" (GraniteMoeHybridForCausalLM,
// Granite 4.0-H), "nemotron_h" (NemotronHForCausalLM), "falcon_h1" (FalconH1ForCausalLM),
// "bamba" (BambaForCausalLM), "jamba" (JambaForCausalLM) and "zamba2" (Zamba2ForCausalLM),
// translated from their config.json as transformers defines it to a ModelConfig and a checkpoint
// layout: tensor names, q/k/v and gate/up fused on load, and every multiplier folded into the
// weights it scales (exact up to float32 rounding).
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "io/hf_config.h"

namespace m3 {

CheckpointLayout translate_granitemoehybrid(const nlohmann::json& j, const std::string& source);
CheckpointLayout translate_nemotron_h(const nlohmann::json& j, const std::string& source);
CheckpointLayout translate_falcon_h1(const nlohmann::json& j, const std::string& source);
CheckpointLayout translate_bamba(const nlohmann::json& j, const std::string& source);
CheckpointLayout translate_jamba(const nlohmann::json& j, const std::string& source);
CheckpointLayout translate_zamba2(const nlohmann::json& j, const std::string& source);

}  // namespace m3
