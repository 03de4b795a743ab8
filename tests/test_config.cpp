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
      {"num_heads_kv not dividing num_heads", [](json& j) { j["attn_cfg"]["num_heads_kv"] = 3; }, {"num_heads_kv"}},
      {"odd rotary_emb_dim", [](json& j) { j["attn_cfg"]["rotary_emb_dim"] = 3; }, {"rotary_emb_dim"}},
      {"rotary_emb_dim past head_dim", [](json& j) { j["attn_cfg"]["rotary_emb_dim"] = 10; }, {"rotary_emb_dim"}},
      {"negative softmax_scale", [](json& j) { j["attn_cfg"]["softmax_scale"] = -1.0; }, {"softmax_scale"}},
      {"zero rotary base", [](json& j) { j["attn_cfg"]["rotary_emb_base"] = 0; }, {"rotary_emb_base"}},
      {"negative mlp_dim", [](json& j) { j["attn_cfg"]["mlp_dim"] = -256; }, {"mlp_dim", "-256"}},
      {"num_heads not dividing d_model", [](json& j) { j["attn_cfg"]["num_heads"] = 3; }, {"num_heads"}},
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

TEST(Config, RoundTripThroughJson) {
  std::vector<json> configs;
  for (const auto& name : preset_names()) configs.push_back(model_config_to_json(preset_config(name)));
  for (const char* g : {"mamba3_siso_hybrid", "mamba3_mimo_hybrid", "mamba2_hybrid", "mamba1_model"})
    configs.push_back(model_config_to_json(load_model_config(test::golden(std::string(g) + "/config.json"))));
  for (const json& j : configs) {
    SCOPED_TRACE(j.dump());
    EXPECT_EQ(model_config_to_json(parse_model_config(j, "round trip")), j);
  }
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
