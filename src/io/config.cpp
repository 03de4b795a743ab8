#include "m3/config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/limits.h"
#include "io/files.h"
#include "m3/error.h"

namespace m3 {

using json = nlohmann::json;

const char* mixer_kind_name(MixerKind k) {
  switch (k) {
    case MixerKind::Mamba1: return "Mamba1";
    case MixerKind::Mamba2: return "Mamba2";
    case MixerKind::Mamba3: return "Mamba3";
    case MixerKind::Attention: return "MHA";
    case MixerKind::Mlp: return "MLP";
    case MixerKind::Moe: return "MoE";
    case MixerKind::AttentionMamba2: return "MHA+Mamba2";
    case MixerKind::Zamba2Hybrid: return "Zamba2 hybrid";
  }
  return "?";
}

namespace {

// Reads the fields of one JSON object by name and type; finish() rejects any field not read.
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    check(j.is_object(), where_ + ": expected a JSON object");
  }
  void get(const char* key, int64_t& out) {
    if (const json* v = find(key)) {
      check(v->is_number_integer(), at(key) + ": expected an integer, found " + v->dump());
      out = v->get<int64_t>();
    }
  }
  void get(const char* key, bool& out) {
    if (const json* v = find(key)) {
      check(v->is_boolean(), at(key) + ": expected true or false, found " + v->dump());
      out = v->get<bool>();
    }
  }
  void get(const char* key, double& out) {
    if (const json* v = find(key)) out = number(*v, at(key));
  }
  // A [lo, hi] pair of numbers.
  void get_range(const char* key, double& lo, double& hi) {
    if (const json* v = find(key)) {
      check(v->is_array() && v->size() == 2, at(key) + ": expected [low, high], found " + v->dump());
      lo = number((*v)[0], at(key));
      hi = number((*v)[1], at(key));
    }
  }
  void get(const char* key, std::vector<int64_t>& out) {
    if (const json* v = find(key)) {
      check(v->is_array(), at(key) + ": expected an array of integers");
      out.clear();
      for (const auto& e : *v) {
        check(e.is_number_integer(), at(key) + ": expected integers, found " + e.dump());
        out.push_back(e.get<int64_t>());
      }
    }
  }
  const json* sub(const char* key) { return find(key); }
  void skip(const char* key) { known_.insert(key); }
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      check(known_.count(it.key()) != 0, where_ + ": unknown field '" + it.key() + "'");
  }
  std::string at(const char* key) const { return where_ + ": field '" + key + "'"; }

 private:
  const json* find(const char* key) {
    known_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  // Numbers, and the non-finite spellings real config files use ("inf", {"__float__": "Infinity"}).
  static double number(const json& v, const std::string& where) {
    if (v.is_number()) return v.get<double>();
    std::string s;
    if (v.is_string()) s = v.get<std::string>();
    if (v.is_object() && v.contains("__float__") && v["__float__"].is_string()) s = v["__float__"].get<std::string>();
    if (s == "inf" || s == "Infinity" || s == "+Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
    throw Error(where + ": expected a number, found " + v.dump());
  }
  const json& j_;
  std::string where_;
  std::set<std::string> known_;
};

// Widths become ints in the BLAS interface. Bounding every width, given or derived (derived ones are
// computed in double here, so the check cannot overflow), also keeps the int64 product of any two
// widths (a weight's element count) exact everywhere else.
constexpr double kMaxWidth = 2147483647.0;

void in_range(int64_t v, int64_t lo, const std::string& what) {
  check(v >= lo && double(v) <= kMaxWidth,
        what + " must be in [" + std::to_string(lo) + ", 2^31 - 1], found " + std::to_string(v));
}
void positive(int64_t v, const std::string& what) { in_range(v, 1, what); }
// chunk_size sets the CPU scans' per-thread scratch (limits::kChunkSize).
void chunk_size(int64_t v, const std::string& what) {
  positive(v, what);
  check(v <= limits::kChunkSize, what + " " + std::to_string(v) + " exceeds the limit of " +
                                     std::to_string(limits::kChunkSize) + " (kChunkSize, src/core/limits.h)");
}
void derived_width(double v, const std::string& what) {
  check(v <= kMaxWidth, what + " would be " + std::to_string(v) + ", more than 2^31 - 1");
}
// A number as config.json spells it (0.3, not 0.300000; inf as "inf").
std::string num(double v) { return std::isfinite(v) ? json(v).dump() : std::to_string(v); }
void finite(double v, const std::string& what) { check(std::isfinite(v), what + " must be finite, found " + num(v)); }

Mamba3Config parse_mamba3(Fields& f, int64_t d_model, const std::string& w) {
  Mamba3Config c;
  f.get("d_state", c.d_state);
  f.get("expand", c.expand);
  f.get("headdim", c.headdim);
  f.get("ngroups", c.ngroups);
  f.get("rope_fraction", c.rope_fraction);
  f.get("dt_min", c.dt_min);
  f.get("dt_max", c.dt_max);
  f.get("dt_init_floor", c.dt_init_floor);
  f.get("A_floor", c.A_floor);
  f.get("is_outproj_norm", c.is_outproj_norm);
  f.get("is_mimo", c.is_mimo);
  f.get("mimo_rank", c.mimo_rank);
  f.get("chunk_size", c.chunk_size);
  positive(c.d_state, w + ".d_state");
  positive(c.expand, w + ".expand");
  positive(c.headdim, w + ".headdim");
  positive(c.ngroups, w + ".ngroups");
  chunk_size(c.chunk_size, w + ".chunk_size");
  if (c.is_mimo) positive(c.mimo_rank, w + ".mimo_rank");
  check(c.rope_fraction == 0.5 || c.rope_fraction == 1.0,
        w + ".rope_fraction must be 0.5 or 1.0, found " + num(c.rope_fraction));
  for (auto [v, n] : {std::pair{c.dt_min, "dt_min"}, {c.dt_max, "dt_max"}, {c.dt_init_floor, "dt_init_floor"},
                      {c.A_floor, "A_floor"}})
    finite(v, w + "." + n);
  derived_width(double(c.expand) * double(d_model), w + ": d_inner");
  c.d_inner = c.expand * d_model;
  check(c.d_inner % c.headdim == 0, w + ": headdim " + std::to_string(c.headdim) + " does not divide d_inner " +
                                        std::to_string(c.d_inner));
  c.nheads = c.d_inner / c.headdim;
  check(c.nheads % c.ngroups == 0, w + ": ngroups " + std::to_string(c.ngroups) + " does not divide nheads " +
                                       std::to_string(c.nheads));
  int64_t m = int64_t(std::floor(double(c.d_state) * c.rope_fraction));
  if (m % 2) m -= 1;
  c.n_angles = m / 2;
  check(c.n_angles >= 1, w + ": d_state " + std::to_string(c.d_state) + " leaves no rotary angle");
  if (c.is_mimo) check(c.d_state % 2 == 0, w + ": MIMO needs an even d_state (halves rotary pairing)");
  derived_width(2.0 * double(c.d_inner) + 2.0 * double(c.d_state) * double(c.ngroups) * double(c.rank()) +
                    3.0 * double(c.nheads) + double(c.n_angles),
                w + ": the in_proj width");
  check(c.A_floor >= 0, w + ".A_floor must be >= 0, found " + num(c.A_floor));
  check(c.dt_min > 0, w + ".dt_min must be > 0, found " + num(c.dt_min));
  check(c.dt_max >= c.dt_min, w + ".dt_max " + num(c.dt_max) + " must be >= dt_min " + num(c.dt_min));
  return c;
}

Mamba2Config parse_mamba2(Fields& f, int64_t d_model, const std::string& w) {
  Mamba2Config c;
  f.get("d_state", c.d_state);
  f.get("d_conv", c.d_conv);
  f.get("expand", c.expand);
  f.get("headdim", c.headdim);
  f.get("d_ssm", c.d_ssm);
  f.get("ngroups", c.ngroups);
  f.get_range("A_init_range", c.A_init_min, c.A_init_max);
  f.get("D_has_hdim", c.D_has_hdim);
  f.get("rmsnorm", c.rmsnorm);
  f.get("norm_before_gate", c.norm_before_gate);
  f.get("dt_min", c.dt_min);
  f.get("dt_max", c.dt_max);
  f.get("dt_init_floor", c.dt_init_floor);
  f.get_range("dt_limit", c.dt_limit_min, c.dt_limit_max);
  f.get("bias", c.bias);
  f.get("conv_bias", c.conv_bias);
  f.get("chunk_size", c.chunk_size);
  for (auto [v, n] : {std::pair{c.d_state, "d_state"}, {c.d_conv, "d_conv"}, {c.expand, "expand"},
                      {c.headdim, "headdim"}, {c.ngroups, "ngroups"}})
    positive(v, w + "." + n);
  chunk_size(c.chunk_size, w + ".chunk_size");
  derived_width(double(c.expand) * double(d_model), w + ": d_inner");
  c.d_inner = c.expand * d_model;
  if (c.d_ssm < 0) c.d_ssm = c.d_inner;
  check(c.d_ssm > 0 && c.d_ssm <= c.d_inner, w + ".d_ssm must be in (0, d_inner]");
  check(c.d_ssm % c.headdim == 0, w + ": headdim " + std::to_string(c.headdim) + " does not divide d_ssm " +
                                      std::to_string(c.d_ssm));
  check((c.d_inner - c.d_ssm) % 2 == 0, w + ": d_inner - d_ssm must be even");
  c.nheads = c.d_ssm / c.headdim;
  check(c.nheads % c.ngroups == 0, w + ": ngroups does not divide nheads");
  derived_width(2.0 * double(c.d_inner) + 2.0 * double(c.ngroups) * double(c.d_state) + double(c.nheads),
                w + ": the in_proj width");
  check(c.A_init_min > 0 && c.A_init_max >= c.A_init_min, w + ".A_init_range must be 0 < low <= high");
  check(c.dt_limit_min >= 0 && c.dt_limit_max > c.dt_limit_min, w + ".dt_limit must be 0 <= low < high");
  return c;
}

Mamba1Config parse_mamba1(Fields& f, int64_t d_model, const std::string& w) {
  Mamba1Config c;
  f.get("d_state", c.d_state);
  f.get("d_conv", c.d_conv);
  f.get("expand", c.expand);
  if (const json* r = f.sub("dt_rank")) {
    if (r->is_string()) {
      check(r->get<std::string>() == "auto", f.at("dt_rank") + ": expected an integer or \"auto\"");
    } else {
      check(r->is_number_integer(), f.at("dt_rank") + ": expected an integer or \"auto\"");
      c.dt_rank = r->get<int64_t>();
      positive(c.dt_rank, w + ".dt_rank");
    }
  }
  if (const json* r = f.sub("dt_init")) {
    check(r->is_string() && (*r == "random" || *r == "constant"), f.at("dt_init") + ": expected \"random\" or \"constant\"");
    c.dt_init_random = *r == "random";
  }
  f.get("dt_min", c.dt_min);
  f.get("dt_max", c.dt_max);
  f.get("dt_init_floor", c.dt_init_floor);
  f.get("dt_scale", c.dt_scale);
  f.get("conv_bias", c.conv_bias);
  f.get("bias", c.bias);
  for (auto [v, n] : {std::pair{c.d_state, "d_state"}, {c.d_conv, "d_conv"}, {c.expand, "expand"}})
    positive(v, w + "." + n);
  if (c.dt_rank < 0) c.dt_rank = (d_model + 15) / 16;
  derived_width(2.0 * double(c.expand) * double(d_model), w + ": the in_proj width");
  derived_width(double(c.dt_rank) + 2.0 * double(c.d_state), w + ": the x_proj width");
  c.d_inner = c.expand * d_model;
  return c;
}

// `used`: some layer is MHA. The reference ignores attn_cfg otherwise; its fields are still checked
// (names, types), and its values too when it names num_heads.
AttnConfig parse_attn(const json& j, int64_t d_model, const std::string& w, bool used) {
  Fields f(j, w);
  AttnConfig c;
  f.get("num_heads", c.num_heads);
  f.get("num_heads_kv", c.num_heads_kv);
  f.get("head_dim", c.head_dim);
  f.get("mlp_dim", c.mlp_dim);
  f.get("qkv_proj_bias", c.qkv_proj_bias);
  f.get("out_proj_bias", c.out_proj_bias);
  f.get("softmax_scale", c.softmax_scale);
  f.get("causal", c.causal);
  f.get("d_conv", c.d_conv);
  f.get("rotary_emb_dim", c.rotary_emb_dim);
  f.get("rotary_emb_base", c.rotary_emb_base);
  f.get("rotary_emb_interleaved", c.rotary_emb_interleaved);
  f.finish();
  if (!used && c.num_heads == 0) return AttnConfig{};
  positive(c.num_heads, w + ".num_heads");
  if (c.num_heads_kv == 0) c.num_heads_kv = c.num_heads;
  positive(c.num_heads_kv, w + ".num_heads_kv");
  check(c.num_heads % c.num_heads_kv == 0, w + ": num_heads_kv " + std::to_string(c.num_heads_kv) +
                                               " does not divide num_heads " + std::to_string(c.num_heads));
  if (c.head_dim == 0) {
    check(d_model % c.num_heads == 0, w + ": num_heads " + std::to_string(c.num_heads) + " does not divide d_model " +
                                          std::to_string(d_model) + " (set head_dim)");
    c.head_dim = d_model / c.num_heads;
  }
  positive(c.head_dim, w + ".head_dim");
  in_range(c.mlp_dim, 0, w + ".mlp_dim");
  in_range(c.d_conv, 0, w + ".d_conv");
  c.mlp_dim = (c.mlp_dim + 255) / 256 * 256;
  derived_width(double(c.head_dim) * double(c.num_heads + 2 * c.num_heads_kv) + double(c.mlp_dim),
                w + ": the in_proj width");
  check(c.rotary_emb_dim >= 0 && c.rotary_emb_dim % 2 == 0 && c.rotary_emb_dim <= c.head_dim,
        w + ".rotary_emb_dim must be even and in [0, head_dim " + std::to_string(c.head_dim) + "], found " +
            std::to_string(c.rotary_emb_dim));
  check(c.softmax_scale >= 0 && std::isfinite(c.softmax_scale),
        w + ".softmax_scale must be finite and positive (or 0 for 1/sqrt(head_dim)), found " +
            num(c.softmax_scale));
  check(c.rotary_emb_base > 0 && std::isfinite(c.rotary_emb_base),
        w + ".rotary_emb_base must be finite and positive, found " + num(c.rotary_emb_base));
  return c;
}

}  // namespace

MixerKind ModelConfig::layer_kind(int64_t i) const {
  if (!layer_kinds.empty()) return layer_kinds[size_t(i)];
  for (int64_t a : attn_layer_idx)
    if (a == i) return MixerKind::Attention;
  return ssm_kind;
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  Fields f(j, source);
  ModelConfig c;
  f.get("d_model", c.d_model);
  f.get("d_intermediate", c.d_intermediate);
  f.get("n_layer", c.n_layer);
  f.get("vocab_size", c.vocab_size);
  f.get("pad_vocab_size_multiple", c.pad_vocab_size_multiple);
  f.get("rms_norm", c.rms_norm);
  f.get("residual_in_fp32", c.residual_in_fp32);
  f.get("fused_add_norm", c.fused_add_norm);
  f.get("tie_embeddings", c.tie_embeddings);
  f.get("attn_layer_idx", c.attn_layer_idx);
  positive(c.d_model, source + ": d_model");
  positive(c.n_layer, source + ": n_layer");
  positive(c.vocab_size, source + ": vocab_size");
  positive(c.pad_vocab_size_multiple, source + ": pad_vocab_size_multiple");
  in_range(c.d_intermediate, 0, source + ": d_intermediate");
  derived_width(double(c.vocab_size) + double(c.pad_vocab_size_multiple), source + ": the padded vocabulary");
  derived_width(2.0 * double(c.mlp_hidden()), source + ": the MLP's fc1 width");
  for (int64_t a : c.attn_layer_idx)
    check(a >= 0 && a < c.n_layer, source + ": attn_layer_idx entry " + std::to_string(a) + " is not a layer index");

  json ssm = json::object();
  if (const json* s = f.sub("ssm_cfg")) ssm = *s;
  std::string sw = source + ": ssm_cfg";
  Fields sf(ssm, sw);
  std::string layer = "Mamba1";
  if (const json* l = sf.sub("layer")) {
    check(l->is_string(), sw + ".layer must be a string");
    layer = l->get<std::string>();
  }
  if (layer == "Mamba3") {
    c.ssm_kind = MixerKind::Mamba3;
    c.ssm = parse_mamba3(sf, c.d_model, sw);
  } else if (layer == "Mamba2") {
    c.ssm_kind = MixerKind::Mamba2;
    c.ssm = parse_mamba2(sf, c.d_model, sw);
  } else if (layer == "Mamba1") {
    c.ssm_kind = MixerKind::Mamba1;
    c.ssm = parse_mamba1(sf, c.d_model, sw);
  } else {
    throw Error(sw + ".layer: unknown mixer '" + layer + "' (expected Mamba1, Mamba2 or Mamba3)");
  }
  sf.finish();

  if (const json* a = f.sub("attn_cfg"))
    c.attn = parse_attn(*a, c.d_model, source + ": attn_cfg", !c.attn_layer_idx.empty());
  check(c.attn_layer_idx.empty() || c.attn.num_heads > 0,
        source + ": attn_layer_idx names attention layers but attn_cfg has no num_heads");
  f.finish();
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return parse_model_config(read_json_file(path), path);
}

json model_config_to_json(const ModelConfig& c) {
  check(c.layer_kinds.empty() && !c.block_moe && c.block_moe_layers.empty() && c.gated_mlp_hidden == 0,
        "this model's layers (a Hugging Face hybrid's: MLP or MoE layers, parallel attention and Mamba-2, an MLP "
        "width not rounded to 128) have no reference-format config");
  json j;
  j["d_model"] = c.d_model;
  j["d_intermediate"] = c.d_intermediate;
  j["n_layer"] = c.n_layer;
  j["vocab_size"] = c.vocab_size;
  json s;
  s["layer"] = mixer_kind_name(c.ssm_kind);
  if (auto* m = std::get_if<Mamba3Config>(&c.ssm)) {
    s.update({{"d_state", m->d_state}, {"expand", m->expand}, {"headdim", m->headdim}, {"ngroups", m->ngroups},
              {"rope_fraction", m->rope_fraction}, {"dt_min", m->dt_min}, {"dt_max", m->dt_max},
              {"dt_init_floor", m->dt_init_floor}, {"A_floor", m->A_floor}, {"is_outproj_norm", m->is_outproj_norm},
              {"is_mimo", m->is_mimo}, {"mimo_rank", m->mimo_rank}, {"chunk_size", m->chunk_size}});
  } else if (auto* m2 = std::get_if<Mamba2Config>(&c.ssm)) {
    check((m2->norm_per_group || m2->ngroups == 1) && m2->norm_eps == 1e-5 && c.norm_eps == 1e-5,
          "this Mamba2 model's norms (Hugging Face's: over all groups, or eps != 1e-5) have no reference-format config");
    s.update({{"d_state", m2->d_state}, {"d_conv", m2->d_conv}, {"expand", m2->expand}, {"headdim", m2->headdim},
              {"d_ssm", m2->d_ssm}, {"ngroups", m2->ngroups}, {"A_init_range", {m2->A_init_min, m2->A_init_max}},
              {"D_has_hdim", m2->D_has_hdim}, {"rmsnorm", m2->rmsnorm}, {"norm_before_gate", m2->norm_before_gate},
              {"dt_min", m2->dt_min}, {"dt_max", m2->dt_max}, {"dt_init_floor", m2->dt_init_floor},
              {"bias", m2->bias}, {"conv_bias", m2->conv_bias}, {"chunk_size", m2->chunk_size}});
    if (std::isfinite(m2->dt_limit_max) || m2->dt_limit_min > 0)
      s["dt_limit"] = {m2->dt_limit_min, std::isfinite(m2->dt_limit_max) ? json(m2->dt_limit_max) : json("inf")};
  } else if (auto* m1 = std::get_if<Mamba1Config>(&c.ssm)) {
    check(!m1->bcdt_rmsnorm && c.norm_eps == 1e-5,
          "this Mamba1 model's norms (FalconMamba's on dt, B and C, or eps != 1e-5) have no reference-format config");
    s.update({{"d_state", m1->d_state}, {"d_conv", m1->d_conv}, {"expand", m1->expand}, {"dt_rank", m1->dt_rank},
              {"dt_min", m1->dt_min}, {"dt_max", m1->dt_max}, {"dt_init_floor", m1->dt_init_floor},
              {"dt_scale", m1->dt_scale}, {"dt_init", m1->dt_init_random ? "random" : "constant"},
              {"conv_bias", m1->conv_bias}, {"bias", m1->bias}});
  }
  j["ssm_cfg"] = s;
  check(c.norm_eps == 1e-5, "this model's norm epsilon " + num(c.norm_eps) +
                                " has no reference-format config (its norms always use 1e-5, spec/model.md §1)");
  j["attn_layer_idx"] = c.attn_layer_idx;
  json a = json::object();
  if (c.attn.num_heads > 0) {
    a = {{"num_heads", c.attn.num_heads}, {"num_heads_kv", c.attn.num_heads_kv}, {"head_dim", c.attn.head_dim},
         {"mlp_dim", c.attn.mlp_dim}, {"qkv_proj_bias", c.attn.qkv_proj_bias},
         {"out_proj_bias", c.attn.out_proj_bias}, {"causal", c.attn.causal}, {"d_conv", c.attn.d_conv},
         {"rotary_emb_dim", c.attn.rotary_emb_dim}, {"rotary_emb_base", c.attn.rotary_emb_base},
         {"rotary_emb_interleaved", c.attn.rotary_emb_interleaved}};
    if (c.attn.softmax_scale > 0) a["softmax_scale"] = c.attn.softmax_scale;
  }
  j["attn_cfg"] = a;
  j["rms_norm"] = c.rms_norm;
  j["residual_in_fp32"] = c.residual_in_fp32;
  j["fused_add_norm"] = c.fused_add_norm;
  j["pad_vocab_size_multiple"] = c.pad_vocab_size_multiple;
  j["tie_embeddings"] = c.tie_embeddings;
  return j;
}

}  // namespace m3
