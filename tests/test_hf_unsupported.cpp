// Hugging Face families this engine recognises but does not run (the hybrids of ../shared/golden:
// NemotronH, FalconH1, GraniteMoeHybrid): loading one is refused with a message naming the file,
// the model_type and what in its config is not implemented, before any tensor is read.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "io/hf_config.h"
#include "m3/model.h"
#include "testing.h"

namespace m3 {
namespace {

nlohmann::json golden_config(const std::string& name) {
  std::ifstream in(test::golden(name + "/config.json"));
  return nlohmann::json::parse(in);
}

TEST(HfUnsupported, NemotronHNamesMoeAndMlpBlocks) {
  test::expect_error([] { Model::load(test::golden("hf_nemotronh")); },
                     {"hf_nemotronh/config.json", "model_type \"nemotron_h\" is not supported",
                      "mixture-of-experts (MoE) blocks (4 routed experts, top-2, plus shared experts",
                      "MLP blocks standing alone as layers (activation relu2)", "supported: \"mamba\""});
  // Older configs spell the layout as a pattern (E: MoE, -: MLP).
  nlohmann::json j = golden_config("hf_nemotronh");
  j.erase("layers_block_type");
  j["hybrid_override_pattern"] = "M*-ME";
  test::expect_error([&] { parse_checkpoint_layout(j, "nemotron"); }, {"nemotron", "(MoE) blocks", "MLP blocks"});
}

TEST(HfUnsupported, FalconH1NamesParallelHybridAndMultipliers) {
  test::expect_error([] { Model::load(test::golden("hf_falconh1")); },
                     {"hf_falconh1/config.json", "model_type \"falcon_h1\" is not supported",
                      "parallel hybrid layers (attention and Mamba-2 side by side", "muP multipliers",
                      "embedding_multiplier 2.0", "key_multiplier 0.8", "ssm_multipliers [1.1,0.9,1.2,0.8,1.3]"});
}

TEST(HfUnsupported, GraniteMoeHybridNamesMoe) {
  test::expect_error([] { Model::load(test::golden("hf_granitemoehybrid")); },
                     {"hf_granitemoehybrid/config.json", "model_type \"granitemoehybrid\" is not supported",
                      "mixture-of-experts (MoE) MLPs in every layer (8 routed experts, top-2, plus a shared MLP)"});
  // Its multipliers are all 1 in the golden config; one that is not is named too.
  nlohmann::json j = golden_config("hf_granitemoehybrid");
  j["residual_multiplier"] = 0.22;
  test::expect_error([&] { parse_checkpoint_layout(j, "granite"); },
                     {"granite", "Granite's scaling multipliers (residual_multiplier 0.22)"});
}

TEST(HfUnsupported, UnknownModelTypeListsSupportedOnes) {
  nlohmann::json j = golden_config("hf_mamba1");
  j["model_type"] = "jamba";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); },
                     {"cfg", "model_type \"jamba\" is not supported",
                      "supported: \"mamba\", \"falcon_mamba\", \"mamba2\"; or a reference-format config"});
}

}  // namespace
}  // namespace m3
