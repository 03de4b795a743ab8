// The Hugging Face hybrids of ../shared/golden (GraniteMoeHybrid, NemotronH, FalconH1) and of
// tests/data (Bamba, Jamba, Zamba2: tiny random models transformers built and ran,
// scripts/gen_hf_hybrid_testdata.py), as transformers defines them: logits within 1e-4 relative of
// transformers' own, greedy generation through the recurrent path token for token,
// prefill-then-step and packed batches equal to the whole forward; and the config translation's
// errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "golden_model.h"
#include "io/hf_config.h"
#include "m3/model.h"
#include "m3/safetensors.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

using test::GoldenRun;
using test::rel_err;

// A golden folder: ../shared/golden/NAME, or tests/data/NAME for a name starting "data/".
std::string folder(const std::string& name) {
  return name.starts_with("data/") ? std::string(M3_TESTDATA_DIR) + "/" + name.substr(5) : test::golden(name);
}

nlohmann::json golden_config(const std::string& name) {
  std::ifstream in(folder(name) + "/config.json");
  return nlohmann::json::parse(in);
}

class HfHybrid : public ::testing::TestWithParam<const char*> {};

TEST_P(HfHybrid, LogitsMatchTransformers) {
  GoldenRun g = test::load_golden_at(folder(GetParam()));
  const double err = rel_err(test::packed_logits(g), g.ref);
  std::printf("%s: logits relative error %.3g\n", GetParam(), err);
  EXPECT_LT(err, 1e-4);
}

TEST_P(HfHybrid, GreedyThroughTheRecurrentPathMatches) {
  Model m = Model::load(folder(GetParam()));
  auto [got, want] = test::golden_greedy_at(m, folder(GetParam()));
  EXPECT_EQ(got, want);
}

TEST_P(HfHybrid, PrefillThenStepEqualsForward) {
  GoldenRun g = test::load_golden_at(folder(GetParam()));
  const std::vector<float> full = test::packed_logits(g);
  for (int64_t k : {1, 16, 17, 44}) {
    const std::vector<float> ps = test::prefill_then_step(g, 1, k);
    const std::vector<float> ref(full.begin() + g.L * g.V, full.end());
    EXPECT_LT(rel_err(ps, ref), 1e-5) << "k = " << k;
  }
}

TEST_P(HfHybrid, PackedVarlenEqualsSeparate) {
  GoldenRun g = test::load_golden_at(folder(GetParam()));
  test::expect_packed_equals_separate(g, {5, 40, 23}, 7);
}

INSTANTIATE_TEST_SUITE_P(Golden, HfHybrid, ::testing::Values("hf_granitemoehybrid", "hf_nemotronh", "hf_falconh1"));
INSTANTIATE_TEST_SUITE_P(TestData, HfHybrid, ::testing::Values("data/hf_bamba", "data/hf_jamba", "data/hf_zamba2"));

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

TEST(HfHybridConfig, BambaAndJambaAsTransformersDefinesThem) {
  const ModelConfig b = parse_checkpoint_layout(golden_config("data/hf_bamba"), "b").config;
  EXPECT_EQ(b.layer_kinds, (std::vector<MixerKind>{MixerKind::Mamba2, MixerKind::Attention, MixerKind::Mamba2,
                                                   MixerKind::Attention}));
  EXPECT_EQ(b.attn.rotary_emb_dim, 4);  // partial_rotary_factor 0.5 of head_dim 8
  EXPECT_EQ(b.attn.rotary_emb_base, 500.0);
  EXPECT_EQ(b.mlp_hidden(), 48);
  // BambaRMSNormGated: per group from transformers 5.23 on (this file: 5.24), over all of d_inner before.
  EXPECT_TRUE(std::get<Mamba2Config>(b.ssm).norm_per_group);
  nlohmann::json older = golden_config("data/hf_bamba");
  older["transformers_version"] = "5.22.2";
  EXPECT_FALSE(std::get<Mamba2Config>(parse_checkpoint_layout(older, "b").config.ssm).norm_per_group);
  older["transformers_version"] = "4.57.1";
  EXPECT_FALSE(std::get<Mamba2Config>(parse_checkpoint_layout(older, "b").config.ssm).norm_per_group);
  older["transformers_version"] = "5.23.0";
  EXPECT_TRUE(std::get<Mamba2Config>(parse_checkpoint_layout(older, "b").config.ssm).norm_per_group);
  // IBM's configs record the rotary width, which BambaConfig does not read.
  older = golden_config("data/hf_bamba");
  older["attn_rotary_emb"] = 4;
  EXPECT_EQ(parse_checkpoint_layout(older, "b").config, b);
  older["transformers_version"] = "five";
  test::expect_error([&] { parse_checkpoint_layout(older, "cfg"); }, {"cfg", "transformers_version", "five"});

  const ModelConfig j = parse_checkpoint_layout(golden_config("data/hf_jamba"), "j").config;
  EXPECT_EQ(j.layer_kinds, (std::vector<MixerKind>{MixerKind::Mamba1, MixerKind::Attention, MixerKind::Mamba1,
                                                   MixerKind::Mamba1, MixerKind::Attention}));
  EXPECT_EQ(j.block_moe_layers, (std::vector<bool>{false, true, false, true, false}));
  EXPECT_EQ(j.moe.family, MoeConfig::Family::Jamba);
  EXPECT_EQ(j.attn.rotary_emb_dim, 0);  // Jamba's attention has no positional encoding
  const Mamba1Config& m = std::get<Mamba1Config>(j.ssm);
  EXPECT_TRUE(m.bcdt_rmsnorm && m.bcdt_norm_weight);
  EXPECT_EQ(m.bcdt_rms_eps, 1e-6);
  EXPECT_EQ(m.dt_rank, 4);

  // JambaConfig's defaults: attention every 8th layer from 4, experts every 2nd from 1, dt_rank auto.
  nlohmann::json d = {{"model_type", "jamba"}, {"hidden_size", 64}, {"vocab_size", 32}, {"num_hidden_layers", 9},
                      {"num_attention_heads", 8}, {"intermediate_size", 16}};
  const ModelConfig jd = parse_checkpoint_layout(d, "d").config;
  EXPECT_EQ(jd.layer_kind(4), MixerKind::Attention);
  EXPECT_EQ(jd.layer_kind(3), MixerKind::Mamba1);
  EXPECT_EQ(jd.block_moe_layers, (std::vector<bool>{false, true, false, true, false, true, false, true, false}));
  EXPECT_EQ(jd.moe.n_experts, 16);
  EXPECT_EQ(jd.attn.num_heads_kv, 8);
  EXPECT_EQ(std::get<Mamba1Config>(jd.ssm).dt_rank, 4);  // ceil(64 / 16)
  d["auto_map"] = {{"AutoModelForCausalLM", "modeling_jamba.JambaForCausalLM"}};  // remote code's: no effect
  EXPECT_EQ(parse_checkpoint_layout(d, "d").config, jd);
  d["num_experts"] = 1;  // every block a JambaMLP
  EXPECT_TRUE(parse_checkpoint_layout(d, "d").config.block_moe_layers.empty());
}

TEST(HfHybridConfig, BambaAndJambaErrorsNameTheField) {
  nlohmann::json j = golden_config("data/hf_bamba");
  j["attn_layer_indices"] = {1, 4};
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "attn_layer_indices", "4"});
  j = golden_config("data/hf_bamba");
  j["rope_parameters"]["partial_rotary_factor"] = 1.0;
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "partial_rotary_factor", "0.5"});
  j = golden_config("data/hf_jamba");
  j["sliding_window"] = 16;
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "sliding_window"});
  j = golden_config("data/hf_jamba");
  j["attn_layer_offset"] = 3;
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "attn_layer_offset", "attn_layer_period"});
  j = golden_config("data/hf_jamba");
  j["mamba_dt_rank"] = "full";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "mamba_dt_rank", "auto"});
}

TEST(HfHybridConfig, Zamba2AsTransformersDefinesIt) {
  const CheckpointLayout z = parse_checkpoint_layout(golden_config("data/hf_zamba2"), "z");
  const ModelConfig& c = z.config;
  EXPECT_EQ(c.layer_kinds, (std::vector<MixerKind>{MixerKind::Mamba2, MixerKind::Zamba2Hybrid, MixerKind::Mamba2,
                                                   MixerKind::Zamba2Hybrid, MixerKind::Zamba2Hybrid}));
  EXPECT_FALSE(c.has_block_ffn());
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.attn.head_dim, 16);                          // 2 · hidden_size / heads
  EXPECT_DOUBLE_EQ(c.attn.softmax_scale, 1 / std::sqrt(8.0));  // (head_dim / 2)^−½
  EXPECT_EQ(c.attn.rotary_emb_dim, 16);                    // use_mem_rope: the whole head
  EXPECT_EQ(c.attn.rotary_emb_base, 500.0);
  EXPECT_EQ(c.zamba2_mlp_hidden, 48);
  const Mamba2Config& m = std::get<Mamba2Config>(c.ssm);
  EXPECT_EQ(m.ngroups, 2);
  EXPECT_EQ(m.headdim, 16);
  EXPECT_TRUE(m.norm_per_group);
  EXPECT_EQ(m.norm_eps, 1e-5);
  EXPECT_EQ(m.dt_limit_min, 0.001);  // Zamba2MambaMixer's time_step_limit: (time_step_min, ∞)
  EXPECT_EQ(m.d_mlp(), 0);
  // Hybrid layers 1, 3, 4 use blocks 0, 1, 0, kept under their first uses (layers 1 and 3), each use
  // with its own adapters (index 0, 1, 2 of the block's lists).
  const auto& in4 = z.pieces.at("backbone.layers.4.mixer.attn.in_proj.weight");
  ASSERT_EQ(in4.size(), 3u);
  EXPECT_EQ(in4[1].file, "model.layers.1.shared_transformer.self_attn.k_proj.weight");
  EXPECT_EQ(in4[1].lora_a, "model.layers.1.shared_transformer.self_attn.linear_k_adapter_list.2.0.weight");
  EXPECT_EQ(in4[1].lora_b, "model.layers.1.shared_transformer.self_attn.linear_k_adapter_list.2.1.weight");
  EXPECT_EQ(z.pieces.at("backbone.layers.3.mixer.mlp.fc1.weight")[0].lora_a,
            "model.layers.3.shared_transformer.feed_forward.gate_up_proj_adapter_list.1.0.weight");
  EXPECT_EQ(z.file_name("backbone.layers.4.mixer.ff_norm.weight"),
            "model.layers.1.shared_transformer.pre_ff_layernorm.weight");
  EXPECT_EQ(z.file_name("backbone.layers.4.mixer.linear.weight"), "model.layers.4.linear.weight");
  EXPECT_EQ(z.file_name("backbone.layers.4.norm.weight"), "model.layers.4.mamba_decoder.input_layernorm.weight");
  EXPECT_EQ(z.file_name("backbone.layers.2.mixer.in_proj.weight"), "model.layers.2.mamba.in_proj.weight");

  // Without the attention adapters q/k/v are the shared weights as they are; without rotary, none.
  nlohmann::json j = golden_config("data/hf_zamba2");
  j["use_shared_attention_adapter"] = false;
  j["use_mem_rope"] = false;
  const CheckpointLayout plain = parse_checkpoint_layout(j, "z");
  EXPECT_TRUE(plain.pieces.at("backbone.layers.4.mixer.attn.in_proj.weight")[0].lora_a.empty());
  EXPECT_EQ(plain.config.attn.rotary_emb_dim, 0);

  // layer_types: Zamba2Config's alias of layers_block_type.
  j = golden_config("data/hf_zamba2");
  j["layer_types"] = j["layers_block_type"];
  j.erase("layers_block_type");
  EXPECT_EQ(parse_checkpoint_layout(j, "z").config, c);
  // Neither: Zamba2Config's default, 54 layers with hybrid layers 6, 12, …, 42, 47, 51.
  j.erase("layer_types");
  j.erase("num_hidden_layers");
  const ModelConfig d = parse_checkpoint_layout(j, "z").config;
  std::vector<int64_t> hybrid;
  for (int64_t i = 0; i < d.n_layer; ++i)
    if (d.layer_kind(i) == MixerKind::Zamba2Hybrid) hybrid.push_back(i);
  EXPECT_EQ(d.n_layer, 54);
  EXPECT_EQ(hybrid, (std::vector<int64_t>{6, 12, 18, 24, 30, 36, 42, 47, 51}));
}

TEST(HfHybridConfig, Zamba2ErrorsNameTheField) {
  auto refused = [](const std::function<void(nlohmann::json&)>& edit, std::vector<std::string> words) {
    nlohmann::json j = golden_config("data/hf_zamba2");
    edit(j);
    test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, words);
  };
  refused([](nlohmann::json& j) { j["layers_block_type"][2] = "attention"; },
          {"cfg", "layers_block_type", "attention"});
  refused([](nlohmann::json& j) { j.erase("layers_block_type"); }, {"cfg", "layers_block_type"});
  refused([](nlohmann::json& j) { j["num_hidden_layers"] = 6; }, {"cfg", "num_hidden_layers", "6"});
  refused([](nlohmann::json& j) { j["hidden_act"] = "silu"; }, {"cfg", "hidden_act", "gelu"});
  refused([](nlohmann::json& j) { j["use_shared_mlp_adapter"] = false; }, {"cfg", "use_shared_mlp_adapter"});
  refused([](nlohmann::json& j) { j["num_key_value_heads"] = 2; }, {"cfg", "num_key_value_heads", "adapters"});
  refused([](nlohmann::json& j) { j["n_mamba_heads"] = 3; }, {"cfg", "n_mamba_heads", "64"});
  refused([](nlohmann::json& j) { j["use_long_context"] = true; }, {"cfg", "use_long_context"});
  refused([](nlohmann::json& j) { j["mamba_rope"] = true; }, {"cfg", "unknown field 'mamba_rope'", "\"zamba2\""});
}

// A checkpoint whose adapter tensors cannot form the low-rank term is refused, naming them.
TEST(HfHybridConfig, Zamba2AdapterShapesAreChecked) {
  test::TempDir tmp;
  std::filesystem::copy_file(folder("data/hf_zamba2") + "/config.json", tmp.file("config.json"));
  const CheckpointTensors ck = CheckpointTensors::open_dir(folder("data/hf_zamba2"));
  NamedTensors t;
  for (const std::string& n : ck.names())
    t.emplace_back(n, n == "model.layers.3.shared_transformer.self_attn.linear_v_adapter_list.1.0.weight"
                          ? Tensor::zeros(DType::F32, {4, 32})
                          : ck.get(n));
  save_safetensors(tmp.file("model.safetensors"), t);
  test::expect_error([&] { Model::load(tmp.path()); },
                     {"linear_v_adapter_list.1.0.weight", "[4, 32]", "v_proj.weight"});
}

// adapter_rank must be the adapter tensors' rank (4 in the test data).
TEST(HfHybridConfig, Zamba2AdapterRankMustMatchTheTensors) {
  test::TempDir tmp;
  nlohmann::json j = golden_config("data/hf_zamba2");
  ASSERT_EQ(j.at("adapter_rank"), 4);
  j["adapter_rank"] = 8;
  std::ofstream(tmp.file("config.json")) << j.dump();
  std::filesystem::copy_file(folder("data/hf_zamba2") + "/model.safetensors", tmp.file("model.safetensors"));
  test::expect_error([&] { Model::load(tmp.path()); }, {"adapter tensors", "rank 4", "adapter_rank is 8"});
  j["adapter_rank"] = -1;
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); }, {"cfg", "adapter_rank", "positive integer"});
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
  j["model_type"] = "zamba";
  test::expect_error([&] { parse_checkpoint_layout(j, "cfg"); },
                     {"cfg", "model_type \"zamba\" is not supported",
                      "supported: \"mamba\", \"falcon_mamba\", \"mamba2\", \"bamba\", \"falcon_h1\", "
                      "\"granitemoehybrid\", \"jamba\", \"nemotron_h\", \"zamba2\"; or a reference-format "
                      "config"});
}

}  // namespace
}  // namespace m3
