// Checkpoints in either layout: the reference's (spec/model.md) or one saved by Hugging Face
// transformers (a config.json with "model_type"), whose config is translated to a ModelConfig and
// whose tensor names are mapped onto the reference layout's. Supported Hugging Face types:
// "mamba" (MambaForCausalLM) and "falcon_mamba" (FalconMambaForCausalLM, spec/mamba1.md §5),
// "mamba2" (Mamba2ForCausalLM, spec/mamba2.md §5), and the hybrids "bamba", "granitemoehybrid",
// "jamba", "nemotron_h", "falcon_h1", "zamba2" (io/hf_hybrids.h). Any other model_type is refused with
// the list of supported ones.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "m3/config.h"

namespace m3 {

// Rows [begin, end) of the first axis of a checkpoint tensor (end −1: through the last row),
// multiplied by scale: how the hybrids' fused projections and folded multipliers are read. With
// lora_a and lora_b (Zamba2's adapters, a Linear(in, r) then a Linear(r, out)), the piece is
// scale · (W + B·A)[begin, end) for W the tensor, A = lora_a [r, in] and B = lora_b [out, r].
struct TensorPiece {
  std::string file;
  int64_t begin = 0, end = -1;
  double scale = 1;
  std::string lora_a = {}, lora_b = {};
  int64_t lora_rank = 0;  // the rank the config declares for lora_a/lora_b (Zamba2's adapter_rank)
  bool whole() const { return begin == 0 && end < 0 && scale == 1 && lora_a.empty(); }
};

struct CheckpointLayout {
  ModelConfig config;
  // Reference-layout tensor name → the checkpoint's, where they differ: exact names first, then
  // the longest matching name prefix.
  std::map<std::string, std::string> renames;
  std::map<std::string, std::string> prefix_renames;
  // Parameters read as pieces concatenated along their first axis (Hugging Face q/k/v → in_proj;
  // up and gate → fc1; muP and Granite multipliers folded into the weights that follow them).
  std::map<std::string, std::vector<TensorPiece>> pieces;
  std::string file_name(const std::string& name) const;
  std::vector<TensorPiece> sources(const std::string& name) const;
};

// Whether transformers normalises the gated RMSNorm of Mamba2ForCausalLM, BambaForCausalLM and
// GraniteMoeHybridForCausalLM per group of d_inner / n_groups channels (as mamba_ssm does), which
// it does from release 5.23 on; earlier releases normalise over all of d_inner. The two agree when
// n_groups is 1. Decided by the config's transformers_version, the release that saved the
// checkpoint (and whose outputs it was checked against); a config without one follows the current
// release.
bool hf_gated_norm_per_group(const nlohmann::json& j, const std::string& source);

// The config object of a checkpoint in either layout; `source` names it in errors.
CheckpointLayout parse_checkpoint_layout(const nlohmann::json& j, const std::string& source);
// Reads and parses the config.json at `path`.
CheckpointLayout load_checkpoint_layout(const std::string& path);

}  // namespace m3
