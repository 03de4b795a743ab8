// The Hugging Face hybrids of ../shared/golden (GraniteMoeHybrid, NemotronH, FalconH1; as transformers defines them):
// logits within 1e-4 relative of transformers' own, greedy generation through the recurrent path
// token for token, prefill-then-step and packed batches equal to the whole forward; and the config
// translation's errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "golden_model.h"
#include "io/hf_config.h"
#include "m3/model.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

using test::GoldenRun;
using test::rel_err;

nlohmann::json golden_config(const std::string& name) {
  std::ifstream in(test::golden(name + "/config.json"));
  return nlohmann::json::parse(in);
}

class HfHybrid : public ::testing::TestWithParam<const char*> {};

TEST_P(HfHybrid, LogitsMatchTransformers) {
  GoldenRun g = test::load_golden(GetParam());
  const double err = rel_err(test::packed_logits(g), g.ref);
  std::printf("%s: logits relative error %.3g\n", GetParam(), err);
  EXPECT_LT(err, 1e-4);
}

TEST_P(HfHybrid, GreedyThroughTheRecurrentPathMatches) {
  Model m = Model::load(test::golden(GetParam()));
  auto [got, want] = test::golden_greedy(m, GetParam());
  EXPECT_EQ(got, want);
}

TEST_P(HfHybrid, PrefillThenStepEqualsForward) {
  GoldenRun g = test::load_golden(GetParam());
  const std::vector<float> full = test::packed_logits(g);
  for (int64_t k : {1, 16, 17, 44}) {
    const std::vector<float> ps = test::prefill_then_step(g, 1, k);
    const std::vector<float> ref(full.begin() + g.L * g.V, full.end());
    EXPECT_LT(rel_err(ps, ref), 1e-5) << "k = " << k;
  }
}

TEST_P(HfHybrid, PackedVarlenEqualsSeparate) {
  GoldenRun g = test::load_golden(GetParam());
  test::expect_packed_equals_separate(g, {5, 40, 23}, 7);
}

INSTANTIATE_TEST_SUITE_P(Golden, HfHybrid, ::testing::Values("hf_granitemoehybrid", "hf_nemotronh", "hf_falconh1"));

TEST(HfHybridConfig, LayersAndOptionsAsTransformersDefinesThem) {
  const ModelConfig g = parse_checkpoint_layout(golden_config("hf_granitemoehybrid"), "g").config;
  EXPECT_EQ(g.layer_kinds, (std::vector<MixerKind>{MixerKind::Mamba2, MixerKind::Attention, MixerKind::Mamba2,
                                                   MixerKind::Mamba2}));
  EXPECT_TRUE(g.block_moe);
  EXPECT_EQ(g.moe.n_experts, 8);
  EXPECT_EQ(g.moe.shared_hidden, 128);
  EXPECT_EQ(g.attn.rotary_emb_dim, 16);
  EXPECT_EQ(g.attn.softmax_scale, 1.0);  // attention_multiplier is the softmax scale itself
  EXPECT_FALSE(std::get<Mamba2Config>(g.ssm).norm_per_group);

  const ModelConfig n = parse_checkpoint_layout(golden_config("hf_nemotronh"), "n").config;
  EXPECT_EQ(n.layer_kinds, (std::vector<MixerKind>{MixerKind::Mamba2, MixerKind::Attention, MixerKind::Mlp,
                                                   MixerKind::Mamba2, MixerKind::Moe}));
  EXPECT_EQ(n.attn.rotary_emb_dim, 0);  // NemotronH's attention has no positional encoding
  EXPECT_TRUE(std::get<Mamba2Config>(n.ssm).norm_per_group);
  EXPECT_EQ(n.moe.family, MoeConfig::Family::NemotronH);
  // The older spelling of the layout.
  nlohmann::json j = golden_config("hf_nemotronh");
  j.erase("layers_block_type");
  j["hybrid_override_pattern"] = "M*-ME";
  EXPECT_EQ(parse_checkpoint_layout(j, "n").config.layer_kinds, n.layer_kinds);

  const CheckpointLayout f = parse_checkpoint_layout(golden_config("hf_falconh1"), "f");
  EXPECT_EQ(f.config.layer_kinds, std::vector<MixerKind>(3, MixerKind::AttentionMamba2));
  EXPECT_EQ(f.config.mlp_hidden(), 96);  // not rounded to 128 as the reference's d_intermediate is
  // muP multipliers folded: in_proj's five row blocks each with its ssm_multipliers entry × ssm_in_multiplier.
  const auto& in = f.pieces.at("backbone.layers.0.mixer.ssm.in_proj.weight");
  ASSERT_EQ(in.size(), 5u);
  EXPECT_EQ(in[0].end, 128);
  EXPECT_DOUBLE_EQ(in[4].scale, 1.3 * 0.95);
  EXPECT_DOUBLE_EQ(f.pieces.at("backbone.layers.2.mixer.attn.in_proj.weight")[1].scale, 0.8 * 0.9);
}

// logits_scaling divides the logits (folded into lm_head): the golden checkpoint with 4 gives the
// reference's logits / 4.
TEST(HfHybridConfig, GraniteLogitsScalingDividesTheLogits) {
  test::TempDir tmp;
  nlohmann::json j = golden_config("hf_granitemoehybrid");
  j["logits_scaling"] = 4.0;
  std::ofstream(tmp.file("config.json")) << j.dump();
  std::filesystem::copy_file(test::golden("hf_granitemoehybrid/model.safetensors"), tmp.file("model.safetensors"));
  GoldenRun g = test::load_golden("hf_granitemoehybrid");
  g.model = Model::load(tmp.path());
  std::vector<double> want = g.ref;
  for (double& v : want) v /= 4;
  EXPECT_LT(rel_err(test::packed_logits(g), want), 1e-4);
}

TEST(HfHybridConfig, ErrorsNameTheFieldAndTheSupportedTypes) {
  nlohmann::json j = golden_config("hf_nemotronh");
  j["mlp_hidden_act"] = "gelu";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "mlp_hidden_act", "relu2"});
  j = golden_config("hf_falconh1");
  j["mamba_rope"] = true;
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); },
                     {"cfg", "unknown field 'mamba_rope'", "model_type \"falcon_h1\""});
  j = golden_config("hf_granitemoehybrid");
  j["layer_types"][1] = "cross_attention";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "layer_types", "cross_attention"});
  j = golden_config("hf_mamba1");
  j["model_type"] = "jamba";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); },
                     {"cfg", "model_type \"jamba\" is not supported",
                      "supported: \"mamba\", \"falcon_mamba\", \"mamba2\", \"falcon_h1\", \"granitemoehybrid\", "
                      "\"nemotron_h\"; or a reference-format config"});
}

}  // namespace
}  // namespace m3
