#include "io/hf_hybrids.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "m3/error.h"

namespace m3 {

namespace {

using json = nlohmann::json;

// Reads a hybrid config's fields by name and type with transformers' defaults; finish() refuses any
// field neither read nor listed as having no effect on inference.
class HybridFields {
 public:
  HybridFields(const json& j, const std::string& source, const std::string& type)
      : j_(j), source_(source), type_(type) {}
  std::string at(const std::string& key) const { return source_ + ": field '" + key + "'"; }
  bool has(const std::string& key) { return find(key) != nullptr; }
  int64_t integer(const std::string& key) {
    const json* v = find(key);
    check(v != nullptr, at(key) + " is missing");
    check(v->is_number_integer() && v->get<int64_t>() > 0 && v->get<int64_t>() < (int64_t(1) << 31),
          at(key) + ": expected a positive integer, found " + v->dump());
    return v->get<int64_t>();
  }
  int64_t integer(const std::string& key, int64_t fallback) { return has(key) ? integer(key) : fallback; }
  // An integer >= 0 (a layer offset).
  int64_t index(const std::string& key, int64_t fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    check(v->is_number_integer() && v->get<int64_t>() >= 0 && v->get<int64_t>() < (int64_t(1) << 31),
          at(key) + ": expected an integer >= 0, found " + v->dump());
    return v->get<int64_t>();
  }
  double number(const std::string& key, double fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    check(v->is_number() && std::isfinite(v->get<double>()), at(key) + ": expected a number, found " + v->dump());
    return v->get<double>();
  }
  double positive(const std::string& key, double fallback) {
    const double x = number(key, fallback);
    check(x > 0, at(key) + ": expected a positive number, found " + std::to_string(x));
    return x;
  }
  bool boolean(const std::string& key, bool fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    check(v->is_boolean(), at(key) + ": expected true or false, found " + v->dump());
    return v->get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    check(v->is_string(), at(key) + ": expected a string, found " + v->dump());
    return v->get<std::string>();
  }
  // A field that, when present, must hold the one value this engine implements (null counts as absent).
  void require(const std::string& key, const json& value) {
    const json* v = find(key);
    check(!v || *v == value, at(key) + ": only " + value.dump() + " is implemented, found " + (v ? v->dump() : ""));
  }
  // A field that must be absent or null.
  void require_null(const std::string& key) {
    const json* v = find(key);
    check(!v, at(key) + ": only null is implemented, found " + (v ? v->dump() : ""));
  }
  // [low, high] with the non-finite spellings of real files ({"__float__": "Infinity"}, "inf").
  std::pair<double, double> range(const std::string& key, double lo, double hi) {
    const json* v = find(key);
    if (!v) return {lo, hi};
    check(v->is_array() && v->size() == 2, at(key) + ": expected [low, high], found " + v->dump());
    auto num = [&](const json& x) {
      if (x.is_number()) return x.get<double>();
      std::string s = x.is_string() ? x.get<std::string>() : "";
      if (x.is_object() && x.contains("__float__") && x["__float__"].is_string()) s = x["__float__"].get<std::string>();
      if (s == "inf" || s == "Infinity" || s == "+Infinity") return std::numeric_limits<double>::infinity();
      throw Error(at(key) + ": expected numbers, found " + v->dump());
    };
    const double a = num((*v)[0]), b = num((*v)[1]);
    check(a >= 0 && b > a, at(key) + ": expected 0 <= low < high, found " + v->dump());
    return {a, b};
  }
  std::vector<double> numbers(const std::string& key, size_t n, double fallback) {
    const json* v = find(key);
    std::vector<double> r(n, fallback);
    if (!v) return r;
    check(v->is_array() && v->size() == n, at(key) + ": expected " + std::to_string(n) + " numbers, found " + v->dump());
    for (size_t i = 0; i < n; ++i) {
      check((*v)[i].is_number(), at(key) + ": expected numbers, found " + v->dump());
      r[i] = (*v)[i].get<double>();
    }
    return r;
  }
  const json* raw(const std::string& key) { return find(key); }
  void finish(const std::set<std::string>& no_effect) const {
    // Fields that describe the file, generation or training, not the network's math.
    static const std::set<std::string> common = {
        "architectures",  "model_type",         "transformers_version", "dtype",        "torch_dtype",
        "_name_or_path",  "bos_token_id",       "eos_token_id",         "pad_token_id", "use_cache",
        "initializer_range", "attention_dropout", "output_router_logits", "router_aux_loss_coef",
        "max_position_embeddings", "num_logits_to_keep", "tie_word_embeddings", "time_step_min", "time_step_max",
        "time_step_floor", "rescale_prenorm_residual", "hidden_dropout", "use_mamba_kernels",
        "auto_map"};  // auto_map: where remote code would load the classes from
    for (auto it = j_.begin(); it != j_.end(); ++it)
      check(read_.count(it.key()) || common.count(it.key()) || no_effect.count(it.key()),
            source_ + ": unknown field '" + it.key() + "' for model_type \"" + type_ + "\"");
  }

 private:
  const json* find(const std::string& key) {
    read_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& j_;
  const std::string& source_;
  std::string type_;
  std::set<std::string> read_;
};

// The layer kinds of a hybrid: layer_types / layers_block_type entries, as transformers spells them
// (and its older spellings).
MixerKind block_kind(const json& v, const std::string& where) {
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (s == "mamba" || s == "linear_attention" || s == "M") return MixerKind::Mamba2;
  if (s == "attention" || s == "full_attention" || s == "*") return MixerKind::Attention;
  if (s == "mlp" || s == "-") return MixerKind::Mlp;
  if (s == "moe" || s == "E") return MixerKind::Moe;
  throw Error(where + ": unknown layer type " + v.dump());
}

std::vector<MixerKind> layer_kinds(HybridFields& f, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    const json* v = f.raw(k);
    if (!v) continue;
    std::vector<MixerKind> r;
    if (v->is_string()) {  // hybrid_override_pattern: one character per layer
      for (char ch : v->get<std::string>()) r.push_back(block_kind(json(std::string(1, ch)), f.at(k)));
    } else {
      check(v->is_array(), f.at(k) + ": expected a list of layer types");
      for (const json& e : *v) r.push_back(block_kind(e, f.at(k)));
    }
    check(!r.empty(), f.at(k) + " names no layers");
    return r;
  }
  throw Error(f.at(*keys.begin()) + " is missing");
}

// One Hugging Face Mamba-2 mixer as this engine's Mamba2Config (spec/mamba2.md §5).
struct HfMamba2 {
  int64_t nheads, headdim, d_state, ngroups, d_conv, chunk;
  bool conv_bias, proj_bias;
  std::pair<double, double> dt_limit;
};

Mamba2Config mamba2_config(const HfMamba2& h, int64_t d_model, double eps, bool per_group, const std::string& where) {
  Mamba2Config m;
  check(h.nheads % h.ngroups == 0, where + ": the Mamba-2 groups (" + std::to_string(h.ngroups) +
                                       ") do not divide its heads (" + std::to_string(h.nheads) + ")");
  m.d_state = h.d_state;
  m.d_conv = h.d_conv;
  m.headdim = h.headdim;
  m.ngroups = h.ngroups;
  m.nheads = h.nheads;
  m.d_inner = m.d_ssm = h.nheads * h.headdim;
  m.expand = std::max<int64_t>(1, m.d_inner / d_model);
  m.chunk_size = h.chunk;
  m.conv_bias = h.conv_bias;
  m.bias = h.proj_bias;
  m.dt_limit_min = h.dt_limit.first;
  m.dt_limit_max = h.dt_limit.second;
  m.norm_per_group = per_group;
  m.norm_eps = eps;
  return m;
}

AttnConfig attn_config(int64_t heads, int64_t kv_heads, int64_t head_dim, bool bias, const std::string& where) {
  check(heads % kv_heads == 0, where + ": num_key_value_heads " + std::to_string(kv_heads) +
                                   " does not divide num_attention_heads " + std::to_string(heads));
  AttnConfig a;
  a.num_heads = heads;
  a.num_heads_kv = kv_heads;
  a.head_dim = head_dim;
  a.qkv_proj_bias = a.out_proj_bias = bias;
  a.causal = true;
  return a;
}

// Rotary embedding of a Llama-style config: rope_parameters (or the older rope_theta), default type,
// rotate-half pairing over the first head_dim · `partial` dims (the family's partial_rotary_factor;
// a rope_parameters entry must agree with it).
void rope(HybridFields& f, AttnConfig& a, double partial = 1.0) {
  double theta = f.positive("rope_theta", 10000.0);
  if (const json* r = f.raw("rope_parameters")) {
    check(r->is_object(), f.at("rope_parameters") + ": expected an object");
    for (auto it = r->begin(); it != r->end(); ++it) {
      if (it.key() == "rope_theta") {
        check(it->is_number() && it->get<double>() > 0, f.at("rope_parameters") + ".rope_theta: expected a positive number");
        theta = it->get<double>();
      } else if (it.key() == "rope_type") {
        check(*it == "default", f.at("rope_parameters") + ".rope_type: only \"default\" is implemented, found " +
                                    it->dump());
      } else if (it.key() == "partial_rotary_factor") {
        check(it->is_number() && it->get<double>() == partial, f.at("rope_parameters") +
                                                                   ".partial_rotary_factor: only " +
                                                                   json(partial).dump() + " is implemented here");
      } else {
        throw Error(f.at("rope_parameters") + ": unknown field '" + it.key() + "'");
      }
    }
  }
  f.require_null("rope_scaling");
  // transformers: dim = int(head_dim · partial_rotary_factor), frequencies theta^(−2j/dim).
  a.rotary_emb_dim = int64_t(double(a.head_dim) * partial);
  check(a.rotary_emb_dim % 2 == 0, f.at("rope_parameters") + ": the rotary dimension " +
                                       std::to_string(a.rotary_emb_dim) + " is odd");
  a.rotary_emb_base = theta;
}

// The Mamba-2 mixer of Bamba and GraniteMoeHybrid (BambaMixer, gated norm over all of d_inner or
// per group by the release, hf_gated_norm_per_group): its mamba_* fields with their defaults.
HfMamba2 bamba_mixer(HybridFields& f, int64_t d_model) {
  const int64_t heads = f.integer("mamba_n_heads", 128);
  int64_t head_dim = 0;
  if (const json* d = f.raw("mamba_d_head"); !d || d->is_string()) {
    check(!d || *d == "auto", f.at("mamba_d_head") + ": expected an integer or \"auto\"");
    const int64_t inner = f.integer("mamba_expand", 2) * d_model;
    check(inner % heads == 0, f.at("mamba_d_head") + ": mamba_n_heads does not divide mamba_expand · hidden_size");
    head_dim = inner / heads;
  } else {
    head_dim = f.integer("mamba_d_head");
    check(f.integer("mamba_expand", 2) * d_model == heads * head_dim,
          f.at("mamba_expand") + ": mamba_expand · hidden_size must equal mamba_n_heads · mamba_d_head");
  }
  return {heads, head_dim, f.integer("mamba_d_state", 256), f.integer("mamba_n_groups", 1),
          f.integer("mamba_d_conv", 4), f.integer("mamba_chunk_size", 256),
          f.boolean("mamba_conv_bias", true), f.boolean("mamba_proj_bias", false),
          f.range("time_step_limit", 0.0, std::numeric_limits<double>::infinity())};
}

// num_key_value_heads: absent, the family's default; null, one per query head (transformers'
// "for backward compatibility").
int64_t kv_heads(HybridFields& f, const json& j, int64_t q_heads, int64_t fallback) {
  return f.integer("num_key_value_heads", j.contains("num_key_value_heads") ? q_heads : fallback);
}

std::string layer(int64_t i) { return "backbone.layers." + std::to_string(i) + "."; }

// Attention's fused in_proj from q/k/v (scales: each part's weight; biases take the output scale
// only, bias_scale), out_proj from o_proj.
void attention_pieces(CheckpointLayout& l, const std::string& ref, const std::string& file, bool bias, double q_scale,
                      double k_scale, double v_scale, double in_scale, double out_scale) {
  l.pieces[ref + "in_proj.weight"] = {{file + "q_proj.weight", 0, -1, q_scale * in_scale},
                                      {file + "k_proj.weight", 0, -1, k_scale * in_scale},
                                      {file + "v_proj.weight", 0, -1, v_scale * in_scale}};
  l.pieces[ref + "out_proj.weight"] = {{file + "o_proj.weight", 0, -1, out_scale}};
  if (bias) {
    l.pieces[ref + "in_proj.bias"] = {{file + "q_proj.bias", 0, -1, q_scale},
                                      {file + "k_proj.bias", 0, -1, k_scale},
                                      {file + "v_proj.bias", 0, -1, v_scale}};
    l.pieces[ref + "out_proj.bias"] = {{file + "o_proj.bias", 0, -1, out_scale}};
  }
}

// A weight (and its bias when there is one) read from `file` times `scale`.
void scaled(CheckpointLayout& l, const std::string& ref, const std::string& file, double scale, bool bias) {
  l.pieces[ref + "weight"] = {{file + "weight", 0, -1, scale}};
  if (bias) l.pieces[ref + "bias"] = {{file + "bias", 0, -1, scale}};
}

// Embedding times `embed_scale`; lm_head (or, tied, the embedding again) times `head_scale`. The
// model is untied when either scale is not 1 (the two then differ).
void ends(CheckpointLayout& l, bool tied, const std::string& embedding, double embed_scale, double head_scale) {
  ModelConfig& c = l.config;
  c.tie_embeddings = tied && embed_scale == 1 && head_scale == 1;
  l.pieces["backbone.embedding.weight"] = {{embedding, 0, -1, embed_scale}};
  if (!c.tie_embeddings) l.pieces["lm_head.weight"] = {{tied ? embedding : "lm_head.weight", 0, -1, head_scale}};
}

// A Llama-style decoder block of Bamba and Jamba, model.layers.{i}.: input_layernorm and
// pre_ff_layernorm, the SSM mixer under mamba. or attention from self_attn's q/k/v/o. Returns the
// block's checkpoint prefix.
std::string llama_style_block(CheckpointLayout& l, int64_t i, bool ssm, bool attn_bias) {
  const std::string r = layer(i), fl = "model.layers." + std::to_string(i) + ".";
  l.prefix_renames[r + "norm."] = fl + "input_layernorm.";
  l.prefix_renames[r + "norm2."] = fl + "pre_ff_layernorm.";
  if (ssm)
    l.prefix_renames[r + "mixer."] = fl + "mamba.";
  else
    attention_pieces(l, r + "mixer.", fl + "self_attn.", attn_bias, 1, 1, 1, 1, 1);
  return fl;
}

// GatedMLP from a SwiGLU feed_forward: fc1 = [up; gate], fc2 = down.
void swiglu_pieces(CheckpointLayout& l, const std::string& ref, const std::string& file) {
  l.pieces[ref + "fc1.weight"] = {{file + "up_proj.weight"}, {file + "gate_proj.weight"}};
  l.renames[ref + "fc2.weight"] = file + "down_proj.weight";
}

ModelConfig base_config(HybridFields& f, int64_t n_layer, double eps) {
  ModelConfig c;
  c.d_model = f.integer("hidden_size");
  c.vocab_size = f.integer("vocab_size");
  c.n_layer = n_layer;
  c.pad_vocab_size_multiple = 1;
  c.rms_norm = true;
  c.norm_eps = eps;
  c.ssm_kind = MixerKind::Mamba2;
  return c;
}

}  // namespace

// GraniteMoeHybridForCausalLM (transformers' modeling_granitemoehybrid.py).
CheckpointLayout translate_granitemoehybrid(const json& j, const std::string& source) {
  HybridFields f(j, source, "granitemoehybrid");
  CheckpointLayout l;
  const std::vector<MixerKind> kinds = layer_kinds(f, {"layer_types", "layers_block_type"});
  const int64_t n_layer = f.integer("num_hidden_layers", int64_t(kinds.size()));
  check(n_layer == int64_t(kinds.size()), f.at("num_hidden_layers") + ": " + std::to_string(n_layer) +
                                              " layers, but layer_types names " + std::to_string(kinds.size()));
  for (MixerKind k : kinds)
    check(k == MixerKind::Mamba2 || k == MixerKind::Attention,
          f.at("layer_types") + ": only mamba and attention layers are GraniteMoeHybrid's");
  const double eps = f.positive("rms_norm_eps", 1e-6);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.layer_kinds = kinds;
  f.require("hidden_act", "silu");
  const double emb = f.number("embedding_multiplier", 1.0), res = f.number("residual_multiplier", 1.0);
  const double logits_scaling = f.positive("logits_scaling", 1.0);

  const HfMamba2 hm = bamba_mixer(f, c.d_model);
  c.ssm = mamba2_config(hm, c.d_model, eps, hf_gated_norm_per_group(j, source), source);

  // Attention: softmax scale attention_multiplier, RoPE when position_embedding_type is "rope".
  const int64_t q_heads = f.integer("num_attention_heads");
  check(c.d_model % q_heads == 0, f.at("num_attention_heads") + " does not divide hidden_size");
  c.attn = attn_config(q_heads, f.integer("num_key_value_heads", q_heads), c.d_model / q_heads,
                       f.boolean("attention_bias", false), source);
  c.attn.softmax_scale = f.positive("attention_multiplier", 1.0);
  const std::string pos = f.string("position_embedding_type", "nope");
  check(pos == "rope" || pos == "nope", f.at("position_embedding_type") + ": expected \"rope\" or \"nope\"");
  if (pos == "rope") rope(f, c.attn);

  // Feed-forward: the MoE plus the shared MLP, or the shared MLP alone when there are no experts.
  int64_t experts = 8;
  if (const json* e = f.raw("num_local_experts")) {
    check(e->is_number_integer() && e->get<int64_t>() >= 0 && e->get<int64_t>() < (int64_t(1) << 31),
          f.at("num_local_experts") + ": expected an integer >= 0, found " + e->dump());
    experts = e->get<int64_t>();
  }
  const int64_t shared = f.integer("shared_intermediate_size", 1024);
  const int64_t expert_hidden = f.integer("intermediate_size");
  if (experts > 0) {
    c.block_moe = true;
    c.moe = {MoeConfig::Family::Granite, experts, f.integer("num_experts_per_tok"), expert_hidden, shared};
    check(c.moe.top_k <= experts, f.at("num_experts_per_tok") + " exceeds num_local_experts");
  } else {
    c.gated_mlp_hidden = shared;
  }

  ends(l, f.boolean("tie_word_embeddings", false), "model.embed_tokens.weight", emb, 1.0 / logits_scaling);
  l.prefix_renames["backbone.norm_f."] = "model.norm.";
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string r = layer(i), m = "model.layers." + std::to_string(i) + ".";
    l.prefix_renames[r + "norm."] = m + "input_layernorm.";
    l.prefix_renames[r + "norm2."] = m + "post_attention_layernorm.";
    if (kinds[size_t(i)] == MixerKind::Mamba2) {
      l.prefix_renames[r + "mixer."] = m + "mamba.";
      scaled(l, r + "mixer.out_proj.", m + "mamba.out_proj.", res, hm.proj_bias);
    } else {
      attention_pieces(l, r + "mixer.", m + "self_attn.", c.attn.qkv_proj_bias, 1, 1, 1, 1, res);
    }
    if (experts > 0) {
      l.prefix_renames[r + "mlp."] = m + "block_sparse_moe.";
      l.prefix_renames[r + "mlp.shared_mlp."] = m + "shared_mlp.";
      l.pieces[r + "mlp.output_linear.weight"] = {{m + "block_sparse_moe.output_linear.weight", 0, -1, res}};
      l.pieces[r + "mlp.shared_mlp.output_linear.weight"] = {{m + "shared_mlp.output_linear.weight", 0, -1, res}};
    } else {
      // GatedMLP's fc1 is [up; gate]; Granite's input_linear is [gate; up].
      l.pieces[r + "mlp.fc1.weight"] = {{m + "shared_mlp.input_linear.weight", shared, 2 * shared, 1},
                                        {m + "shared_mlp.input_linear.weight", 0, shared, 1}};
      l.pieces[r + "mlp.fc2.weight"] = {{m + "shared_mlp.output_linear.weight", 0, -1, res}};
    }
  }
  // Without RoPE the rotary fields change nothing.
  f.finish({"rope_parameters", "rope_theta"});
  return l;
}

// NemotronHForCausalLM (transformers' modeling_nemotron_h.py).
CheckpointLayout translate_nemotron_h(const json& j, const std::string& source) {
  HybridFields f(j, source, "nemotron_h");
  CheckpointLayout l;
  const std::vector<MixerKind> kinds = layer_kinds(f, {"layers_block_type", "hybrid_override_pattern"});
  const int64_t n_layer = f.integer("num_hidden_layers", int64_t(kinds.size()));
  check(n_layer == int64_t(kinds.size()), f.at("num_hidden_layers") + ": " + std::to_string(n_layer) +
                                              " layers, but the block types name " + std::to_string(kinds.size()));
  const double eps = f.positive("layer_norm_epsilon", 1e-5);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.layer_kinds = kinds;
  f.require("mamba_hidden_act", "silu");
  f.require("mlp_hidden_act", "relu2");
  f.require_null("sliding_window");
  f.require_null("moe_latent_size");

  // Mamba-2 (Zamba2's mixer: gated norm per group, spec/mamba2.md §5). Its projections' bias is
  // use_bias; newer configs also spell it mamba_proj_bias.
  const bool proj_bias = f.boolean("use_bias", false);
  check(f.boolean("mamba_proj_bias", proj_bias) == proj_bias,
        f.at("mamba_proj_bias") + ": differs from use_bias, which the Mamba-2 projections read");
  const HfMamba2 hm{f.integer("mamba_num_heads"), f.integer("mamba_head_dim"), f.integer("ssm_state_size"),
                    f.integer("n_groups", 1), f.integer("conv_kernel", 4), f.integer("chunk_size", 256),
                    f.boolean("use_conv_bias", true), proj_bias,
                    f.range("time_step_limit", 0.0, std::numeric_limits<double>::infinity())};
  c.ssm = mamba2_config(hm, c.d_model, eps, /*per_group=*/true, source);

  // Attention without positional encoding.
  const int64_t q_heads = f.integer("num_attention_heads");
  const int64_t head_dim = f.has("head_dim") ? f.integer("head_dim") : c.d_model / q_heads;
  c.attn = attn_config(q_heads, f.integer("num_key_value_heads", q_heads), head_dim, f.boolean("attention_bias", false),
                       source);

  const bool mlp_bias = f.boolean("mlp_bias", false);
  c.mlp = {f.integer("intermediate_size"), mlp_bias};
  bool any_moe = false;
  for (MixerKind k : kinds) any_moe = any_moe || k == MixerKind::Moe;
  if (any_moe) {
    check(!mlp_bias, f.at("mlp_bias") + ": experts with biases are not implemented");
    c.moe = {MoeConfig::Family::NemotronH,
             f.integer("n_routed_experts"),
             f.integer("num_experts_per_tok"),
             f.integer("moe_intermediate_size"),
             f.integer("moe_shared_expert_intermediate_size"),
             f.integer("n_group", 1),
             f.integer("topk_group", 1),
             f.boolean("norm_topk_prob", true),
             f.positive("routed_scaling_factor", 1.0)};
    check(c.moe.n_experts % c.moe.n_group == 0, f.at("n_group") + " does not divide n_routed_experts");
    check(c.moe.topk_group <= c.moe.n_group, f.at("topk_group") + " exceeds n_group");
    check(c.moe.top_k <= c.moe.n_experts * c.moe.topk_group / c.moe.n_group,
          f.at("num_experts_per_tok") + " exceeds the experts of the chosen groups");
  }

  ends(l, f.boolean("tie_word_embeddings", false), "backbone.embeddings.weight", 1, 1);
  for (int64_t i = 0; i < n_layer; ++i)
    if (kinds[size_t(i)] == MixerKind::Attention)
      attention_pieces(l, layer(i) + "mixer.", layer(i) + "mixer.", c.attn.qkv_proj_bias, 1, 1, 1, 1, 1);
  // expand: the Mamba-2 width is mamba_num_heads · mamba_head_dim; n_shared_experts: the shared
  // MLP's width is moe_shared_expert_intermediate_size; the multi-token-prediction layers are not
  // part of the causal LM's forward; residual_in_fp32 and the cache dtype change nothing in float32.
  f.finish({"expand", "n_shared_experts", "moe_shared_expert_overlap", "mtp_layers_block_type",
            "num_nextn_predict_layers", "mamba_ssm_cache_dtype", "residual_in_fp32"});
  return l;
}

// FalconH1ForCausalLM (transformers' modeling_falcon_h1.py).
CheckpointLayout translate_falcon_h1(const json& j, const std::string& source) {
  HybridFields f(j, source, "falcon_h1");
  CheckpointLayout l;
  const int64_t n_layer = f.integer("num_hidden_layers");
  const double eps = f.positive("rms_norm_eps", 1e-5);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.layer_kinds.assign(size_t(n_layer), MixerKind::AttentionMamba2);
  f.require("hidden_act", "silu");
  f.require("mamba_rms_norm", true);
  f.require("mlp_bias", false);

  const int64_t heads = f.integer("mamba_n_heads"), d_head = f.integer("mamba_d_head");
  const int64_t d_ssm = f.integer("mamba_d_ssm", f.integer("mamba_expand", 2) * c.d_model);
  check(heads * d_head == d_ssm, f.at("mamba_d_ssm") + ": " + std::to_string(d_ssm) +
                                     " is not mamba_n_heads · mamba_d_head = " + std::to_string(heads * d_head));
  const bool proj_bias = f.boolean("mamba_proj_bias", false);
  check(f.boolean("projectors_bias", false) == proj_bias,
        f.at("projectors_bias") + ": only the value of mamba_proj_bias is implemented (one bias flag for in_proj "
                                  "and out_proj)");
  const HfMamba2 hm{heads, d_head, f.integer("mamba_d_state"), f.integer("mamba_n_groups", 1),
                    f.integer("mamba_d_conv", 4), f.integer("mamba_chunk_size", 256),
                    f.boolean("mamba_conv_bias", true), proj_bias,
                    f.range("time_step_limit", 0.0, std::numeric_limits<double>::infinity())};
  Mamba2Config m = mamba2_config(hm, c.d_model, eps, /*per_group=*/true, source);
  m.norm_before_gate = f.boolean("mamba_norm_before_gate", true);
  c.ssm = m;

  const int64_t q_heads = f.integer("num_attention_heads");
  const int64_t head_dim = f.has("head_dim") ? f.integer("head_dim") : c.d_model / q_heads;
  c.attn = attn_config(q_heads, f.integer("num_key_value_heads", q_heads), head_dim, f.boolean("attention_bias", false),
                       source);
  rope(f, c.attn);
  c.gated_mlp_hidden = f.integer("intermediate_size");

  // muP multipliers, folded into the weights they scale.
  const double a_in = f.number("attention_in_multiplier", 1.0), a_out = f.number("attention_out_multiplier", 1.0);
  const double key = f.number("key_multiplier", 1.0), s_in = f.number("ssm_in_multiplier", 1.0);
  const double s_out = f.number("ssm_out_multiplier", 1.0);
  const std::vector<double> mlp = f.numbers("mlp_multipliers", 2, 1.0), ssm = f.numbers("ssm_multipliers", 5, 1.0);
  ends(l, f.boolean("tie_word_embeddings", false), "model.embed_tokens.weight", f.number("embedding_multiplier", 1.0),
       f.number("lm_head_multiplier", 1.0));
  l.prefix_renames["backbone.norm_f."] = "model.final_layernorm.";
  // in_proj rows: z [d_ssm], x [d_ssm], B [G·N], C [G·N], dt [H], each with its ssm_multipliers entry.
  const int64_t gn = m.ngroups * m.d_state;
  const int64_t bounds[6] = {0, d_ssm, 2 * d_ssm, 2 * d_ssm + gn, 2 * d_ssm + 2 * gn, 2 * d_ssm + 2 * gn + heads};
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string r = layer(i), fl = "model.layers." + std::to_string(i) + ".";
    l.prefix_renames[r + "norm."] = fl + "input_layernorm.";
    l.prefix_renames[r + "norm2."] = fl + "pre_ff_layernorm.";
    attention_pieces(l, r + "mixer.attn.", fl + "self_attn.", c.attn.qkv_proj_bias, 1, key, 1, a_in, a_out);
    l.prefix_renames[r + "mixer.ssm."] = fl + "mamba.";
    for (const char* part : {"weight", "bias"}) {
      if (std::string(part) == "bias" && !proj_bias) continue;
      std::vector<TensorPiece>& p = l.pieces[r + "mixer.ssm.in_proj." + part];
      const double in = std::string(part) == "weight" ? s_in : 1.0;
      for (int k = 0; k < 5; ++k) p.push_back({fl + "mamba.in_proj." + part, bounds[k], bounds[k + 1], ssm[size_t(k)] * in});
    }
    scaled(l, r + "mixer.ssm.out_proj.", fl + "mamba.out_proj.", s_out, proj_bias);
    // GatedMLP: fc1 = [up; gate · gate_multiplier], fc2 = down · down_multiplier.
    l.pieces[r + "mlp.fc1.weight"] = {{fl + "feed_forward.up_proj.weight", 0, -1, 1},
                                      {fl + "feed_forward.gate_proj.weight", 0, -1, mlp[0]}};
    l.pieces[r + "mlp.fc2.weight"] = {{fl + "feed_forward.down_proj.weight", 0, -1, mlp[1]}};
  }
  f.finish({});
  return l;
}

// BambaForCausalLM (transformers' modeling_bamba.py): Mamba-2 layers (BambaMixer) and attention at
// attn_layer_indices, every block ending in a SwiGLU MLP; partial rotary 0.5, which BambaConfig
// sets whatever the file says.
CheckpointLayout translate_bamba(const json& j, const std::string& source) {
  HybridFields f(j, source, "bamba");
  CheckpointLayout l;
  const int64_t n_layer = f.integer("num_hidden_layers", 32);
  std::vector<MixerKind> kinds(size_t(n_layer), MixerKind::Mamba2);
  if (const json* a = f.raw("attn_layer_indices")) {
    check(a->is_array(), f.at("attn_layer_indices") + ": expected a list of layer indices, found " + a->dump());
    for (const json& i : *a) {
      check(i.is_number_integer() && i.get<int64_t>() >= 0 && i.get<int64_t>() < n_layer,
            f.at("attn_layer_indices") + ": " + i.dump() + " is not a layer index below num_hidden_layers " +
                std::to_string(n_layer));
      kinds[i.get<size_t>()] = MixerKind::Attention;
    }
  }
  const double eps = f.positive("rms_norm_eps", 1e-5);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.layer_kinds = kinds;
  f.require("hidden_act", "silu");
  f.require("mlp_bias", false);
  f.require("partial_rotary_factor", 0.5);

  const HfMamba2 hm = bamba_mixer(f, c.d_model);
  c.ssm = mamba2_config(hm, c.d_model, eps, hf_gated_norm_per_group(j, source), source);

  const int64_t q_heads = f.integer("num_attention_heads", 32);
  const int64_t head_dim = f.has("head_dim") ? f.integer("head_dim") : c.d_model / q_heads;
  c.attn = attn_config(q_heads, kv_heads(f, j, q_heads, 8), head_dim, f.boolean("attention_bias", false), source);
  rope(f, c.attn, 0.5);
  c.gated_mlp_hidden = f.integer("intermediate_size", 14336);

  ends(l, f.boolean("tie_word_embeddings", false), "model.embed_tokens.weight", 1, 1);
  l.prefix_renames["backbone.norm_f."] = "model.final_layernorm.";
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string m = llama_style_block(l, i, kinds[size_t(i)] == MixerKind::Mamba2, c.attn.qkv_proj_bias);
    swiglu_pieces(l, layer(i) + "mlp.", m + "feed_forward.");
  }
  // z_loss_coefficient: a training loss term; attn_rotary_emb: the rotary width IBM's own configs
  // record, which BambaConfig does not read (its partial_rotary_factor of 0.5 sets the width).
  f.finish({"z_loss_coefficient", "attn_rotary_emb"});
  return l;
}

// JambaForCausalLM (transformers' modeling_jamba.py): Mamba-1 layers whose δ, B and C pass through
// RMSNorms with weights (spec/mamba1.md §5), attention without positional encoding every
// attn_layer_period-th layer from attn_layer_offset, and each block ending in a SwiGLU MLP, or in
// the MoE (softmax, top-k, no renormalisation) every expert_layer_period-th block from
// expert_layer_offset.
CheckpointLayout translate_jamba(const json& j, const std::string& source) {
  HybridFields f(j, source, "jamba");
  CheckpointLayout l;
  const int64_t n_layer = f.integer("num_hidden_layers", 32);
  const int64_t a_period = f.integer("attn_layer_period", 8), a_offset = f.index("attn_layer_offset", 4);
  const int64_t e_period = f.integer("expert_layer_period", 2), e_offset = f.index("expert_layer_offset", 1);
  check(a_offset < a_period, f.at("attn_layer_offset") + " must be below attn_layer_period");
  check(e_offset < e_period, f.at("expert_layer_offset") + " must be below expert_layer_period");
  // num_local_experts: JambaConfig's alias of num_experts.
  const int64_t experts = f.has("num_experts") ? f.integer("num_experts") : f.integer("num_local_experts", 16);
  const double eps = f.positive("rms_norm_eps", 1e-6);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.ssm_kind = MixerKind::Mamba1;
  std::vector<bool> moe(size_t(n_layer), false);
  for (int64_t i = 0; i < n_layer; ++i) {
    c.layer_kinds.push_back(i % a_period == a_offset ? MixerKind::Attention : MixerKind::Mamba1);
    moe[size_t(i)] = experts > 1 && i % e_period == e_offset;  // one expert: JambaMLP
  }
  f.require("hidden_act", "silu");
  f.require_null("sliding_window");

  Mamba1Config m;
  m.d_state = f.integer("mamba_d_state", 16);
  m.d_conv = f.integer("mamba_d_conv", 4);
  m.expand = f.integer("mamba_expand", 2);
  m.d_inner = m.expand * c.d_model;
  const json* rank = f.raw("mamba_dt_rank");
  check(!rank || !rank->is_string() || *rank == "auto", f.at("mamba_dt_rank") + ": expected an integer or \"auto\"");
  m.dt_rank = rank && !rank->is_string() ? f.integer("mamba_dt_rank") : (c.d_model + 15) / 16;  // ceil(hidden / 16)
  m.conv_bias = f.boolean("mamba_conv_bias", true);
  m.bias = f.boolean("mamba_proj_bias", false);
  m.bcdt_rmsnorm = m.bcdt_norm_weight = true;
  m.bcdt_rms_eps = eps;
  c.ssm = m;

  const int64_t q_heads = f.integer("num_attention_heads", 32);
  const int64_t head_dim = f.has("head_dim") ? f.integer("head_dim") : c.d_model / q_heads;
  c.attn = attn_config(q_heads, kv_heads(f, j, q_heads, 8), head_dim, false, source);
  c.gated_mlp_hidden = f.integer("intermediate_size", 14336);
  bool any_moe = false;
  for (bool b : moe) any_moe = any_moe || b;
  if (any_moe) {
    c.block_moe_layers = moe;
    c.moe = {MoeConfig::Family::Jamba, experts, f.integer("num_experts_per_tok", 2), c.gated_mlp_hidden, 0};
    check(c.moe.top_k <= experts, f.at("num_experts_per_tok") + " exceeds num_experts");
  }

  ends(l, f.boolean("tie_word_embeddings", false), "model.embed_tokens.weight", 1, 1);
  l.prefix_renames["backbone.norm_f."] = "model.final_layernorm.";
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string r = layer(i);
    const std::string ff =
        llama_style_block(l, i, c.layer_kinds[size_t(i)] == MixerKind::Mamba1, false) + "feed_forward.";
    if (moe[size_t(i)]) {
      l.prefix_renames[r + "mlp."] = ff;
      for (int64_t e = 0; e < experts; ++e) {
        const std::string x = "experts." + std::to_string(e) + ".";
        l.pieces[r + "mlp." + x + "gate_up_proj.weight"] = {{ff + x + "gate_proj.weight"}, {ff + x + "up_proj.weight"}};
      }
    } else {
      swiglu_pieces(l, r + "mlp.", ff);
    }
  }
  // Which implementation of the same scan transformers runs.
  f.finish({"use_mambapy", "use_associative_scan"});
  return l;
}

// Zamba2ForCausalLM (transformers' modeling_zamba2.py): Mamba-2 layers (Zamba2MambaMixer) and
// hybrid layers, each a Mamba-2 layer whose input gets the output of a shared transformer block
// run on [h | embeddings] and a per-layer linear map (MixerKind::Zamba2Hybrid). The hybrid layers
// use num_mem_blocks blocks round-robin; use j of block j mod num_mem_blocks keeps that block's
// weights under the block's first use, model.layers.{hybrid_layer_ids[j mod num_mem_blocks]}.
// shared_transformer., and its adapters (q, k, v and gate_up; a Linear(in, r) then a Linear(r, out))
// at index j of the block's adapter lists: each use's weights are W + B·A, folded on load.
CheckpointLayout translate_zamba2(const json& j, const std::string& source) {
  HybridFields f(j, source, "zamba2");
  CheckpointLayout l;
  // layers_block_type (or its alias layer_types); absent, Zamba2Config's default: 54 layers, hybrid
  // every 6th from layer 6 through 42, then at 47 and 51.
  const char* types_key = f.has("layers_block_type") || !f.has("layer_types") ? "layers_block_type" : "layer_types";
  json types = json::array();
  if (const json* t = f.raw(types_key)) {
    check(t->is_array() && !t->empty(), f.at(types_key) + ": expected a list of layer types, found " + t->dump());
    types = *t;
  } else {
    for (int i = 0; i < 54; ++i)
      types.push_back((i % 6 == 0 && i > 0 && i <= 42) || i == 47 || i == 51 ? "hybrid" : "mamba");
  }
  std::vector<MixerKind> kinds;
  std::vector<int64_t> hybrid;  // the hybrid layers, in order
  for (const json& t : types) {
    if (t == "hybrid") {
      hybrid.push_back(int64_t(kinds.size()));
      kinds.push_back(MixerKind::Zamba2Hybrid);
    } else {
      check(block_kind(t, f.at(types_key)) == MixerKind::Mamba2,
            f.at(types_key) + ": expected \"mamba\" or \"hybrid\" layers, found " + t.dump());
      kinds.push_back(MixerKind::Mamba2);
    }
  }
  const int64_t n_layer = f.integer("num_hidden_layers", 54);
  check(n_layer == int64_t(kinds.size()), f.at("num_hidden_layers") + ": " + std::to_string(n_layer) +
                                              " layers, but " + types_key + " names " + std::to_string(kinds.size()));
  const double eps = f.positive("rms_norm_eps", 1e-5);
  ModelConfig& c = l.config = base_config(f, n_layer, eps);
  c.layer_kinds = kinds;
  const int64_t d = c.d_model;
  f.require("hidden_act", "gelu");
  f.require("add_bias_linear", false);
  f.require("use_long_context", false);
  // transformers 5.24 builds the MLP adapters whatever older configs say.
  f.require("use_shared_mlp_adapter", true);

  // Zamba2MambaMixer: in_proj [z; x, B, C; dt] without Mamba-2's extra MLP rows, a conv bias
  // whatever use_conv_bias says (conv1d is built with bias=True), the gated norm per group with
  // epsilon 1e-5, and δ clamped from below at time_step_min in the chunked form (transformers'
  // single-token form skips that clamp; the two differ only where softplus(δ) < time_step_min).
  const int64_t heads = f.integer("n_mamba_heads", 8), inner = f.integer("mamba_expand", 2) * d;
  check(inner % heads == 0, f.at("n_mamba_heads") + ": " + std::to_string(heads) +
                                " does not divide mamba_expand · hidden_size = " + std::to_string(inner));
  const HfMamba2 hm{heads, inner / heads, f.integer("mamba_d_state", 64), f.integer("mamba_ngroups", 1),
                    f.integer("mamba_d_conv", 4), f.integer("chunk_size", 256), true, false,
                    {f.positive("time_step_min", 0.001), std::numeric_limits<double>::infinity()}};
  c.ssm = mamba2_config(hm, d, 1e-5, /*per_group=*/true, source);

  // Zamba2Attention: input 2·d, head_dim 2·d / heads, softmax scale (head_dim / 2)^−½, rotary over
  // the whole head when use_mem_rope.
  const int64_t q_heads = f.integer("num_attention_heads", 32);
  check((2 * d) % q_heads == 0, f.at("num_attention_heads") + " does not divide 2 · hidden_size");
  const int64_t head_dim = 2 * d / q_heads;
  c.attn = attn_config(q_heads, kv_heads(f, j, q_heads, q_heads), head_dim, false, source);
  c.attn.softmax_scale = 1.0 / std::sqrt(double(head_dim) / 2);
  rope(f, c.attn);
  if (!f.boolean("use_mem_rope", false)) c.attn.rotary_emb_dim = 0;
  c.zamba2_mlp_hidden = f.integer("intermediate_size", 4 * d);
  const int64_t blocks = f.integer("num_mem_blocks", 1);
  // Zamba2Config's default; the adapter tensors must have this rank (model.cpp checks on load).
  const int64_t rank = f.integer("adapter_rank", 128);
  const bool attn_adapters = f.boolean("use_shared_attention_adapter", false);
  // The k and v adapters' outputs are 2·d wide (transformers adds them to k and v).
  check(!attn_adapters || c.attn.num_heads_kv == q_heads,
        f.at("num_key_value_heads") + ": the attention adapters need as many key/value heads as query heads");

  ends(l, f.boolean("tie_word_embeddings", true), "model.embed_tokens.weight", 1, 1);
  l.prefix_renames["backbone.norm_f."] = "model.final_layernorm.";
  size_t use = 0;
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string r = layer(i), fl = "model.layers." + std::to_string(i) + ".";
    if (kinds[size_t(i)] == MixerKind::Mamba2) {
      l.prefix_renames[r + "norm."] = fl + "input_layernorm.";
      l.prefix_renames[r + "mixer."] = fl + "mamba.";
      continue;
    }
    const std::string k = std::to_string(use);
    const std::string b = "model.layers." + std::to_string(hybrid[use % size_t(blocks)]) + ".shared_transformer.";
    ++use;
    l.prefix_renames[r + "norm."] = fl + "mamba_decoder.input_layernorm.";
    l.prefix_renames[r + "mixer.ssm."] = fl + "mamba_decoder.mamba.";
    l.renames[r + "mixer.linear.weight"] = fl + "linear.weight";
    l.renames[r + "mixer.shared_norm.weight"] = b + "input_layernorm.weight";
    l.renames[r + "mixer.ff_norm.weight"] = b + "pre_ff_layernorm.weight";
    const std::string a = b + "self_attn.";
    std::vector<TensorPiece>& in = l.pieces[r + "mixer.attn.in_proj.weight"];
    for (const char* p : {"q", "k", "v"}) {
      const std::string list = a + "linear_" + p + "_adapter_list." + k + ".";
      in.push_back(attn_adapters
                       ? TensorPiece{a + p + "_proj.weight", 0, -1, 1, list + "0.weight", list + "1.weight", rank}
                                 : TensorPiece{a + p + "_proj.weight"});
    }
    l.renames[r + "mixer.attn.out_proj.weight"] = a + "o_proj.weight";
    const std::string ff = b + "feed_forward.", list = ff + "gate_up_proj_adapter_list." + k + ".";
    l.pieces[r + "mixer.mlp.fc1.weight"] = {
        {ff + "gate_up_proj.weight", 0, -1, 1, list + "0.weight", list + "1.weight", rank}};
    l.renames[r + "mixer.mlp.fc2.weight"] = ff + "down_proj.weight";
  }
  // Derived fields Zamba2Config recomputes from the ones above (attention_hidden_size,
  // attention_head_dim, mamba_headdim, hybrid_layer_ids) or that the model never reads
  // (kv_channels, num_query_groups, time_step_limit, use_conv_bias: the conv always has a bias);
  // use_mem_eff_path picks a kernel.
  f.finish({"attention_hidden_size", "attention_head_dim", "mamba_headdim", "hybrid_layer_ids", "kv_channels",
            "num_query_groups", "time_step_limit", "use_conv_bias", "use_mem_eff_path"});
  return l;
}

}  // namespace m3
