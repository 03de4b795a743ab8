// Config parsing (spec/model.md §1, spec/mamba3.md §1) and checkpoint loading against bad input:
// every defect must be an m3::Error naming the file, and the field or tensor. Also the config
// round trip, sharded checkpoints, and a mutation loop over a small checkpoint's config.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "temp_dir.h"
#include "testing.h"

namespace m3 {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using json = nlohmann::json;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

// A small hybrid: a Mamba-3 block and an MHA block, both with MLPs (d_inner 32, 4 heads of 8).
json small_config() {
  return {{"d_model", 16},
          {"n_layer", 2},
          {"vocab_size", 40},
          {"d_intermediate", 32},
          {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 8}, {"headdim", 8}, {"chunk_size", 4}}},
          {"attn_layer_idx", {1}},
          {"attn_cfg", {{"num_heads", 2}, {"causal", true}}}};
}

// Parses `j` and expects an error naming the source and holding `parts`.
void expect_config_error(const json& j, const std::vector<std::string>& parts) {
  std::vector<std::string> all = parts;
  all.push_back("cfg.json");
  expect_error([&] { parse_model_config(j, "cfg.json"); }, all);
}

TEST(ConfigErrors, BadFieldsAndValues) {
  struct Case {
    std::string what;
    std::function<void(json&)> edit;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"unknown top-level field", [](json& j) { j["d_modle"] = 16; }, {"unknown field 'd_modle'"}},
      {"unknown ssm_cfg field", [](json& j) { j["ssm_cfg"]["d_conv"] = 4; }, {"ssm_cfg", "unknown field 'd_conv'"}},
      {"unknown attn_cfg field", [](json& j) { j["attn_cfg"]["window"] = 4; }, {"attn_cfg", "unknown field 'window'"}},
      {"unknown attn_cfg field without attention layers",
       [](json& j) {
         j["attn_layer_idx"] = json::array();
         j["attn_cfg"] = {{"window", 4}};
       },
       {"attn_cfg", "unknown field 'window'"}},
      {"attn_cfg not an object without attention layers",
       [](json& j) {
         j["attn_layer_idx"] = json::array();
         j["attn_cfg"] = 5;
       },
       {"attn_cfg", "expected a JSON object"}},
      {"ssm_cfg not an object", [](json& j) { j["ssm_cfg"] = json::array(); }, {"ssm_cfg", "expected a JSON object"}},
      {"unknown mixer", [](json& j) { j["ssm_cfg"]["layer"] = "Mamba4"; }, {"unknown mixer 'Mamba4'"}},
      {"mixer name not a string", [](json& j) { j["ssm_cfg"]["layer"] = 3; }, {"layer must be a string"}},
      {"headdim not dividing d_inner", [](json& j) { j["ssm_cfg"]["headdim"] = 12; }, {"headdim 12", "d_inner 32"}},
      {"rope_fraction 0.3", [](json& j) { j["ssm_cfg"]["rope_fraction"] = 0.3; }, {"rope_fraction", "0.3"}},
      {"mimo_rank 0 with is_mimo",
       [](json& j) {
         j["ssm_cfg"]["is_mimo"] = true;
         j["ssm_cfg"]["mimo_rank"] = 0;
       },
       {"mimo_rank", "found 0"}},
      {"MIMO with an odd d_state",
       [](json& j) {
         j["ssm_cfg"]["is_mimo"] = true;
         j["ssm_cfg"]["d_state"] = 9;
       },
       {"even d_state"}},
      {"d_state without a rotary angle",
       [](json& j) { j["ssm_cfg"]["d_state"] = 1; },
       {"d_state 1", "no rotary angle"}},
      {"ngroups not dividing heads", [](json& j) { j["ssm_cfg"]["ngroups"] = 3; }, {"ngroups 3", "nheads 4"}},
      {"attn_layer_idx past the last layer", [](json& j) { j["attn_layer_idx"] = {2}; }, {"attn_layer_idx", "2"}},
      {"negative attn_layer_idx", [](json& j) { j["attn_layer_idx"] = {-1}; }, {"attn_layer_idx", "-1"}},
      {"attention layers without num_heads", [](json& j) { j["attn_cfg"] = json::object(); }, {"num_heads"}},
      {"num_heads_kv not dividing num_heads", [](json& j) { j["attn_cfg"]["num_heads_kv"] = 3; },
       {"num_heads_kv 3", "num_heads 2"}},
      {"odd rotary_emb_dim", [](json& j) { j["attn_cfg"]["rotary_emb_dim"] = 3; }, {"rotary_emb_dim", "found 3"}},
      {"rotary_emb_dim past head_dim", [](json& j) { j["attn_cfg"]["rotary_emb_dim"] = 10; },
       {"rotary_emb_dim", "head_dim 8", "found 10"}},
      {"negative softmax_scale", [](json& j) { j["attn_cfg"]["softmax_scale"] = -1.0; }, {"softmax_scale", "found -1"}},
      {"zero rotary base", [](json& j) { j["attn_cfg"]["rotary_emb_base"] = 0; }, {"rotary_emb_base", "found 0"}},
      {"negative mlp_dim", [](json& j) { j["attn_cfg"]["mlp_dim"] = -256; }, {"mlp_dim", "-256"}},
      {"num_heads not dividing d_model", [](json& j) { j["attn_cfg"]["num_heads"] = 3; },
       {"num_heads 3", "d_model 16", "head_dim"}},
      {"zero d_model", [](json& j) { j["d_model"] = 0; }, {"d_model", "found 0"}},
      {"negative n_layer", [](json& j) { j["n_layer"] = -2; }, {"n_layer", "-2"}},
      {"negative d_intermediate", [](json& j) { j["d_intermediate"] = -1; }, {"d_intermediate"}},
      {"string for an integer", [](json& j) { j["d_model"] = "16"; }, {"'d_model'", "expected an integer"}},
      {"float for an integer", [](json& j) { j["d_model"] = 16.5; }, {"'d_model'", "expected an integer"}},
      {"string for a bool", [](json& j) { j["ssm_cfg"]["is_mimo"] = "yes"; }, {"'is_mimo'", "true or false"}},
      {"string for a number", [](json& j) { j["ssm_cfg"]["dt_min"] = "small"; }, {"'dt_min'", "expected a number"}},
      {"infinite dt_max", [](json& j) { j["ssm_cfg"]["dt_max"] = "inf"; }, {"dt_max", "finite"}},
      {"non-integer attn_layer_idx", [](json& j) { j["attn_layer_idx"] = {1.5}; }, {"attn_layer_idx", "integers"}},
      {"attn_layer_idx not an array", [](json& j) { j["attn_layer_idx"] = 1; }, {"attn_layer_idx", "array"}},
      // Sizes whose products would overflow int64 (undefined behaviour) are refused first.
      {"huge d_model", [](json& j) { j["d_model"] = int64_t(1) << 62; }, {"d_model", "2^31"}},
      {"huge expand", [](json& j) { j["ssm_cfg"]["expand"] = int64_t(1) << 40; }, {"expand", "2^31"}},
      {"d_inner past 2^31",
       [](json& j) {
         j["d_model"] = 1 << 30;
         j["ssm_cfg"]["expand"] = 4;
       },
       {"d_inner", "2^31"}},
      {"in_proj past 2^31",
       [](json& j) {
         j["ssm_cfg"]["d_state"] = 1 << 30;
         j["ssm_cfg"]["is_mimo"] = true;
         j["ssm_cfg"]["mimo_rank"] = 1 << 30;
       },
       {"in_proj", "2^31"}},
      {"huge vocabulary", [](json& j) { j["vocab_size"] = int64_t(1) << 62; }, {"vocab_size", "2^31"}},
      {"huge head count",
       [](json& j) {
         j["attn_cfg"]["num_heads"] = 1 << 30;
         j["attn_cfg"]["head_dim"] = 1 << 30;
       },
       {"in_proj", "2^31"}},
      {"unsigned beyond int64", [](json& j) { j["d_model"] = uint64_t(18446744073709551615ull); }, {"d_model"}},
      // Every Mamba-3 size and option (spec/mamba3.md §1), zero, negative or out of its domain.
      {"zero d_state", [](json& j) { j["ssm_cfg"]["d_state"] = 0; }, {"d_state", "found 0"}},
      {"negative d_state", [](json& j) { j["ssm_cfg"]["d_state"] = -8; }, {"d_state", "found -8"}},
      {"zero headdim", [](json& j) { j["ssm_cfg"]["headdim"] = 0; }, {"headdim", "found 0"}},
      {"negative headdim", [](json& j) { j["ssm_cfg"]["headdim"] = -8; }, {"headdim", "found -8"}},
      {"zero expand", [](json& j) { j["ssm_cfg"]["expand"] = 0; }, {"expand", "found 0"}},
      {"zero ngroups", [](json& j) { j["ssm_cfg"]["ngroups"] = 0; }, {"ngroups", "found 0"}},
      {"zero chunk_size", [](json& j) { j["ssm_cfg"]["chunk_size"] = 0; }, {"chunk_size", "found 0"}},
      {"negative mimo_rank with is_mimo",
       [](json& j) {
         j["ssm_cfg"]["is_mimo"] = true;
         j["ssm_cfg"]["mimo_rank"] = -2;
       },
       {"mimo_rank", "found -2"}},
      {"rope_fraction 0", [](json& j) { j["ssm_cfg"]["rope_fraction"] = 0; }, {"rope_fraction", "0.5 or 1.0", "found 0"}},
      {"rope_fraction 0.25", [](json& j) { j["ssm_cfg"]["rope_fraction"] = 0.25; }, {"rope_fraction", "found 0.25"}},
      {"rope_fraction as a string", [](json& j) { j["ssm_cfg"]["rope_fraction"] = "0.5"; },
       {"'rope_fraction'", "expected a number"}},
      {"negative A_floor", [](json& j) { j["ssm_cfg"]["A_floor"] = -0.5; }, {"A_floor", "found -0.5"}},
      {"zero dt_min", [](json& j) { j["ssm_cfg"]["dt_min"] = 0; }, {"dt_min", "found 0"}},
      {"dt_max below dt_min", [](json& j) { j["ssm_cfg"]["dt_max"] = 0.0001; }, {"dt_max 0.0001", "dt_min 0.001"}},
      {"infinite dt_init_floor", [](json& j) { j["ssm_cfg"]["dt_init_floor"] = "inf"; }, {"dt_init_floor", "finite"}},
      {"string for is_outproj_norm", [](json& j) { j["ssm_cfg"]["is_outproj_norm"] = 1; },
       {"'is_outproj_norm'", "true or false"}},
      {"a Mamba-2 field in a Mamba-3 config", [](json& j) { j["ssm_cfg"]["A_init_range"] = {1, 16}; },
       {"ssm_cfg", "unknown field 'A_init_range'"}},
      // Every MHA option (spec/model.md §4).
      {"zero num_heads", [](json& j) { j["attn_cfg"]["num_heads"] = 0; }, {"num_heads", "found 0"}},
      {"negative num_heads", [](json& j) { j["attn_cfg"]["num_heads"] = -2; }, {"num_heads", "found -2"}},
      {"negative num_heads_kv", [](json& j) { j["attn_cfg"]["num_heads_kv"] = -1; }, {"num_heads_kv", "found -1"}},
      {"num_heads_kv past num_heads", [](json& j) { j["attn_cfg"]["num_heads_kv"] = 4; },
       {"num_heads_kv 4", "does not divide num_heads 2"}},
      {"negative head_dim", [](json& j) { j["attn_cfg"]["head_dim"] = -8; }, {"head_dim", "found -8"}},
      {"negative attention d_conv", [](json& j) { j["attn_cfg"]["d_conv"] = -1; }, {"attn_cfg.d_conv", "found -1"}},
      {"negative rotary_emb_dim", [](json& j) { j["attn_cfg"]["rotary_emb_dim"] = -2; },
       {"rotary_emb_dim", "found -2"}},
      {"infinite softmax_scale", [](json& j) { j["attn_cfg"]["softmax_scale"] = "inf"; },
       {"softmax_scale", "found inf"}},
      {"negative rotary base", [](json& j) { j["attn_cfg"]["rotary_emb_base"] = -10000; },
       {"rotary_emb_base", "found -10000"}},
      {"string for rotary_emb_interleaved", [](json& j) { j["attn_cfg"]["rotary_emb_interleaved"] = "yes"; },
       {"'rotary_emb_interleaved'", "true or false"}},
      {"float for d_conv", [](json& j) { j["attn_cfg"]["d_conv"] = 2.5; }, {"'d_conv'", "expected an integer"}},
      {"zero vocab_size", [](json& j) { j["vocab_size"] = 0; }, {"vocab_size", "found 0"}},
      {"zero pad_vocab_size_multiple", [](json& j) { j["pad_vocab_size_multiple"] = 0; },
       {"pad_vocab_size_multiple", "found 0"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    json j = small_config();
    c.edit(j);
    expect_config_error(j, c.message);
  }
  expect_config_error(json::array(), {"expected a JSON object"});
}

TEST(Config, DefaultsAndDerivedSizes) {
  json j = small_config();
  j["attn_cfg"]["mlp_dim"] = 100;  // rounded up to a multiple of 256 (spec/model.md §4)
  ModelConfig c = parse_model_config(j, "cfg.json");
  const auto& m = std::get<Mamba3Config>(c.ssm);
  EXPECT_EQ(m.d_inner, 32);
  EXPECT_EQ(m.nheads, 4);
  EXPECT_EQ(m.n_angles, 2);  // floor(8 · 0.5) = 4 → 2 angles
  EXPECT_EQ(m.expand, 2);
  EXPECT_EQ(c.attn.head_dim, 8);
  EXPECT_EQ(c.attn.num_heads_kv, 2);
  EXPECT_EQ(c.attn.mlp_dim, 256);
  EXPECT_TRUE(c.attn.qkv_proj_bias);
  EXPECT_EQ(c.vocab_padded(), 40);
  EXPECT_EQ(c.mlp_hidden(), 128);
  EXPECT_EQ(c.layer_kind(0), MixerKind::Mamba3);
  EXPECT_EQ(c.layer_kind(1), MixerKind::Attention);
  // The examples of spec/mamba3.md §1, and an odd count rounded down to even.
  for (auto [n, frac, s] : {std::tuple{32, 0.5, 8}, {128, 0.5, 32}, {64, 1.0, 32}, {21, 1.0, 10}, {14, 0.5, 3}}) {
    j = small_config();
    j["ssm_cfg"]["d_state"] = n;
    j["ssm_cfg"]["rope_fraction"] = frac;
    EXPECT_EQ(std::get<Mamba3Config>(parse_model_config(j, "cfg.json").ssm).n_angles, s) << n << " " << frac;
  }
  // No attention layers: attn_cfg is checked for its fields only.
  j = small_config();
  j["attn_layer_idx"] = json::array();
  j["attn_cfg"] = {{"causal", true}};
  EXPECT_EQ(parse_model_config(j, "cfg.json").attn.num_heads, 0);
}

// parse(to_json(c)) == c field by field (given and derived; ModelConfig's defaulted ==), and
// to_json is a fixed point on its own output.
void expect_round_trip(const ModelConfig& c, const std::string& what) {
  SCOPED_TRACE(what);
  const json j = model_config_to_json(c);
  const ModelConfig back = parse_model_config(j, "round trip");
  EXPECT_TRUE(back == c) << j.dump();
  EXPECT_EQ(model_config_to_json(back), j);
}

TEST(Config, RoundTripOfPresetsAndGoldenConfigs) {
  for (const auto& name : preset_names()) expect_round_trip(preset_config(name), "preset " + name);
  for (const char* g : {"mamba3_siso_hybrid", "mamba3_mimo_hybrid", "mamba2_hybrid", "mamba1_model"})
    expect_round_trip(load_model_config(test::golden(std::string(g) + "/config.json")), g);
}

// Random reference-format configs, valid by construction, over every field of every mixer and of
// attn_cfg (non-default values included: MIMO, out-proj norm, A_floor, dt ranges, dt_limit, d_ssm,
// dt_rank, rotary, conv, MLP branch, softmax scale, norms, untied embeddings).
TEST(Config, RoundTripOfRandomConfigs) {
  std::mt19937_64 rng(17);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto coin = [&] { return pick(0, 1) == 1; };
  auto real = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  for (int iter = 0; iter < 300; ++iter) {
    const int64_t d_model = 8 * pick(1, 8), n_layer = pick(1, 6);
    json j = {{"d_model", d_model}, {"n_layer", n_layer}, {"vocab_size", pick(1, 1000)},
              {"d_intermediate", pick(0, 2) * 64}, {"pad_vocab_size_multiple", pick(1, 16)}, {"rms_norm", coin()},
              {"residual_in_fp32", coin()}, {"fused_add_norm", coin()}, {"tie_embeddings", coin()}};
    const double dt_min = real(1e-4, 1e-2), dt_max = dt_min * real(1, 100);
    switch (pick(0, 2)) {
      case 0:
        j["ssm_cfg"] = {{"layer", "Mamba3"}, {"d_state", 2 * pick(2, 32)}, {"expand", pick(1, 3)},
                        {"headdim", 8}, {"ngroups", std::vector<int64_t>{1, d_model / 8}[size_t(pick(0, 1))]},
                        {"rope_fraction", coin() ? 0.5 : 1.0}, {"dt_min", dt_min}, {"dt_max", dt_max},
                        {"dt_init_floor", real(0, 1e-3)}, {"A_floor", real(0, 1)}, {"is_outproj_norm", coin()},
                        {"is_mimo", coin()}, {"mimo_rank", pick(1, 8)}, {"chunk_size", pick(1, 128)}};
        break;
      case 1:
        j["ssm_cfg"] = {{"layer", "Mamba2"}, {"d_state", pick(1, 64)}, {"d_conv", pick(1, 4)}, {"expand", 2},
                        {"headdim", 8}, {"d_ssm", coin() ? 2 * d_model : d_model}, {"ngroups", 1},
                        {"A_init_range", {real(0.5, 2), real(2, 20)}}, {"D_has_hdim", coin()}, {"rmsnorm", coin()},
                        {"norm_before_gate", coin()}, {"dt_min", dt_min}, {"dt_max", dt_max},
                        {"dt_init_floor", real(0, 1e-3)}, {"bias", coin()}, {"conv_bias", coin()},
                        {"chunk_size", pick(1, 256)}};
        if (coin()) j["ssm_cfg"]["dt_limit"] = {real(0, 0.01), coin() ? json(real(0.1, 10)) : json("inf")};
        break;
      default:
        j["ssm_cfg"] = {{"layer", "Mamba1"}, {"d_state", pick(1, 32)}, {"d_conv", pick(1, 4)}, {"expand", pick(1, 3)},
                        {"dt_rank", coin() ? json("auto") : json(pick(1, 16))}, {"dt_min", dt_min},
                        {"dt_max", dt_max}, {"dt_init_floor", real(0, 1e-3)}, {"dt_scale", real(0.5, 2)},
                        {"dt_init", coin() ? "random" : "constant"}, {"conv_bias", coin()}, {"bias", coin()}};
    }
    if (coin()) {
      const int64_t heads = std::vector<int64_t>{1, 2, 4, 8}[size_t(pick(0, 3))], head_dim = 2 * pick(1, 16);
      j["attn_layer_idx"] = {pick(0, n_layer - 1)};
      j["attn_cfg"] = {{"num_heads", heads}, {"num_heads_kv", heads / std::vector<int64_t>{1, 2}[size_t(pick(0, heads > 1))]},
                       {"head_dim", head_dim}, {"mlp_dim", pick(0, 600)}, {"qkv_proj_bias", coin()},
                       {"out_proj_bias", coin()}, {"causal", coin()}, {"d_conv", pick(0, 4)},
                       {"rotary_emb_dim", 2 * pick(0, head_dim / 2)}, {"rotary_emb_base", real(10, 1e6)},
                       {"rotary_emb_interleaved", coin()}};
      if (coin()) j["attn_cfg"]["softmax_scale"] = real(0.01, 1);
    }
    expect_round_trip(parse_model_config(j, "random config"), j.dump());
  }
}

// What the reference format cannot say is refused, not dropped (the Hugging Face loaders set these).
TEST(Config, ToJsonRefusesWhatTheFormatCannotExpress) {
  ModelConfig c = parse_model_config(small_config(), "cfg.json");
  c.norm_eps = 1e-6;
  expect_error([&] { model_config_to_json(c); }, {"norm epsilon 1e-06", "no reference-format config"});
  json j = small_config();
  j["ssm_cfg"] = {{"layer", "Mamba2"}, {"d_state", 8}, {"headdim", 8}, {"ngroups", 2}};
  c = parse_model_config(j, "cfg.json");
  std::get<Mamba2Config>(c.ssm).norm_per_group = false;
  expect_error([&] { model_config_to_json(c); }, {"Mamba2", "no reference-format config"});
}

// A saved small model whose files the tests then damage.
struct SmallCheckpoint {
  test::TempDir dir;
  std::string weights = dir.file("model.safetensors");
  SmallCheckpoint() { Model::init(parse_model_config(small_config(), "small"), 3).save(dir.path()); }
  NamedTensors tensors() const {
    SafetensorsFile f = SafetensorsFile::open(weights);
    NamedTensors r;
    for (const auto& n : f.names()) r.emplace_back(n, f.get(n).convert(DType::F32));
    return r;
  }
  // Rewrites the weights after `edit`.
  template <class Edit>
  void rewrite(Edit&& edit) {
    NamedTensors t = tensors();
    edit(t);
    save_safetensors(weights, t);
  }
};

Tensor& find(NamedTensors& t, const std::string& name) {
  for (auto& [n, x] : t)
    if (n == name) return x;
  throw std::runtime_error("test: no tensor " + name);
}

TEST(CheckpointErrors, BadTensorsNameTheFileAndTensor) {
  const std::string D = "backbone.layers.0.mixer.D", W = "backbone.layers.0.mixer.in_proj.weight";
  struct Case {
    std::string what;
    std::function<void(NamedTensors&)> edit;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"missing tensor",
       [&](NamedTensors& t) { std::erase_if(t, [&](auto& p) { return p.first == D; }); },
       {"missing tensor '" + D + "'"}},
      {"wrong shape",
       [&](NamedTensors& t) { find(t, D) = Tensor::zeros(DType::F32, {5}); },
       {"'" + D + "'", "shape [5]", "expected [4]"}},
      {"wrong rank",
       [&](NamedTensors& t) {
         find(t, D) = Tensor::zeros(DType::F32, {4, 1});
       },
       {"'" + D + "'", "[4, 1]"}},
      {"integer weight", [&](NamedTensors& t) { find(t, D) = Tensor::zeros(DType::I64, {4}); }, {"'" + D + "'", "I64"}},
      {"NaN in a weight", [&](NamedTensors& t) { find(t, W).f32()[37] = NAN; }, {"'" + W + "'", "non-finite", "37"}},
      {"Inf in a weight", [&](NamedTensors& t) { find(t, D).f32()[3] = -INFINITY; }, {"'" + D + "'", "non-finite"}},
      {"F64 weight beyond float range",
       [&](NamedTensors& t) {
         Tensor d = find(t, D).convert(DType::F64);
         d.ptr<double>()[1] = 1e300;
         find(t, D) = d;
       },
       {"'" + D + "'", "non-finite"}},
      {"unexpected extra tensor",
       [&](NamedTensors& t) { t.emplace_back("backbone.layers.0.mixer.extra", Tensor::zeros(DType::F32, {2})); },
       {"unexpected tensor 'backbone.layers.0.mixer.extra'"}},
      {"tied lm_head of the wrong shape",
       [&](NamedTensors& t) {
         t.emplace_back("lm_head.weight", Tensor::zeros(DType::F32, {40, 8}));
       },
       {"lm_head.weight"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    SmallCheckpoint ck;
    ck.rewrite(c.edit);
    std::vector<std::string> parts = c.message;
    parts.push_back(ck.weights);
    expect_error([&] { Model::load(ck.dir.path()); }, parts);
  }
}

TEST(CheckpointErrors, MissingOrMalformedFiles) {
  test::TempDir empty;
  expect_error([&] { Model::load(empty.file("nowhere")); }, {"config.json", "cannot open"});
  {
    SmallCheckpoint ck;
    write_text(ck.dir.file("config.json"), "{\"d_model\": 16,");
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.dir.file("config.json"), "malformed JSON"});
    write_text(ck.dir.file("config.json"), "[16]");
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.dir.file("config.json"), "JSON object"});
  }
  {
    SmallCheckpoint ck;
    json j = small_config();
    j["ssm_cfg"]["headdim"] = 4;  // a valid config that the weights do not match
    write_text(ck.dir.file("config.json"), j.dump());
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.weights, "in_proj.weight", "expected"});
  }
  {
    // A valid config with far more layers than the file holds is refused before the parameter
    // layout (memory in n_layer) is built.
    SmallCheckpoint ck;
    json j = small_config();
    j["n_layer"] = 2000000000;
    write_text(ck.dir.file("config.json"), j.dump());
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.dir.path(), "2000000000 layers"});
  }
  {
    SmallCheckpoint ck;
    fs::remove(ck.weights);
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.dir.path(), "no model.safetensors"});
  }
  {
    SmallCheckpoint ck;
    std::ofstream(ck.weights, std::ios::trunc) << "short";
    expect_error([&] { Model::load(ck.dir.path()); }, {ck.weights, "truncated"});
  }
}

// A checkpoint split over two shards and an index loads to the same parameters; a bad index or
// a tensor in two shards is refused.
TEST(Checkpoint, ShardedIndex) {
  SmallCheckpoint ck;
  NamedTensors all = ck.tensors();
  NamedTensors a(all.begin(), all.begin() + long(all.size() / 2)), b(all.begin() + long(all.size() / 2), all.end());
  fs::remove(ck.weights);
  save_safetensors(ck.dir.file("model-00001-of-00002.safetensors"), a);
  save_safetensors(ck.dir.file("model-00002-of-00002.safetensors"), b);
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (const auto& [n, t] : a) index["weight_map"][n] = "model-00001-of-00002.safetensors";
  for (const auto& [n, t] : b) index["weight_map"][n] = "model-00002-of-00002.safetensors";
  const std::string index_path = ck.dir.file("model.safetensors.index.json");
  write_text(index_path, index.dump());
  Model m = Model::load(ck.dir.path());
  const NamedTensors loaded = m.parameters();
  ASSERT_EQ(loaded.size(), all.size());
  for (const auto& [n, t] : loaded) {
    const Tensor& want = find(all, n);
    EXPECT_EQ(test::to_f32v(t), test::to_f32v(want)) << n;
  }

  json bad = index;
  bad["weight_map"][a.front().first] = "../elsewhere.safetensors";
  write_text(index_path, bad.dump());
  expect_error([&] { Model::load(ck.dir.path()); }, {index_path, "plain file name"});
  write_text(index_path, "{\"weight_map\": ");
  expect_error([&] { Model::load(ck.dir.path()); }, {index_path, "malformed JSON"});
  write_text(index_path, "{\"weight_map\": [1]}");
  expect_error([&] { Model::load(ck.dir.path()); }, {index_path, "weight_map"});
  // The first shard also holds a tensor of the second.
  NamedTensors a2 = a;
  a2.push_back(b.front());
  save_safetensors(ck.dir.file("model-00001-of-00002.safetensors"), a2);
  write_text(index_path, index.dump());
  expect_error([&] { Model::load(ck.dir.path()); }, {"'" + b.front().first + "'", "also appears in"});
}

// Random damage to config.json: loading may only fail with m3::Error (or succeed).
TEST(Checkpoint, ConfigMutationsNeverCrash) {
  SmallCheckpoint ck;
  const std::string base = small_config().dump();
  std::mt19937_64 rng(5);
  auto pick = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
  int refused = 0;
  for (int iter = 0; iter < 150; ++iter) {
    std::string s = base;
    switch (pick(0, 3)) {
      case 0:
        s[pick(0, s.size() - 1)] = char(pick(32, 126));
        break;
      case 1:
        s.resize(pick(0, s.size()));
        break;
      case 2: {  // a digit changed or grown: sizes that do not fit the weights, or absurd ones
        std::vector<size_t> digits;
        for (size_t i = 0; i < s.size(); ++i)
          if (std::isdigit(static_cast<unsigned char>(s[i]))) digits.push_back(i);
        s.insert(digits[pick(0, digits.size() - 1)], std::string(pick(1, 19), char('0' + pick(0, 9))));
        break;
      }
      case 3:
        s.erase(pick(0, s.size() - 1), pick(1, 4));
        break;
    }
    write_text(ck.dir.file("config.json"), s);
    try {
      Model::load(ck.dir.path());
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace m3
