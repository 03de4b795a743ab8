// The model graph (spec/model.md §2): parameter layout, loading with validation, initialisation,
// and the forward / step passes over the blocks.
#include "m3/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cpu/layers.h"
#include "cpu/ops.h"
#include "io/hf_config.h"
#include "m3/error.h"
#include "model/init.h"
#include "model/specs.h"

namespace m3 {

namespace {

struct ParamGroup {
  std::string prefix;  // checkpoint key prefix, e.g. "backbone.layers.3.mixer."
  std::vector<ParamSpec> specs;
};

std::vector<ParamSpec> norm_specs(const ModelConfig& c) {
  std::vector<ParamSpec> s = {{"weight", {c.d_model}, init::ones()}};
  if (!c.rms_norm) s.push_back({"bias", {c.d_model}, init::zeros()});
  return s;
}

std::vector<ParamSpec> mixer_specs(const ModelConfig& c, int64_t i) {
  switch (c.layer_kind(i)) {
    case MixerKind::Mamba3: return mamba3_param_specs(std::get<Mamba3Config>(c.ssm), c.d_model, c.n_layer);
    case MixerKind::Attention: return attention_param_specs(c.attn, c.d_model, c.n_layer);
    case MixerKind::Mamba1: return mamba1_param_specs(std::get<Mamba1Config>(c.ssm), c.d_model, c.n_layer);
    case MixerKind::Mamba2: return mamba2_param_specs(std::get<Mamba2Config>(c.ssm), c.d_model, c.n_layer);
  }
  throw Error(std::string(mixer_kind_name(c.layer_kind(i))) + " mixers are not implemented yet");
}

// Every parameter of the model, in checkpoint order (spec/model.md §5).
std::vector<ParamGroup> param_layout(const ModelConfig& c) {
  std::vector<ParamGroup> g;
  g.push_back({"backbone.embedding.", {{"weight", {c.vocab_padded(), c.d_model}, init::normal(0.02f)}}});
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    g.push_back({p + "norm.", norm_specs(c)});
    g.push_back({p + "mixer.", mixer_specs(c, i)});
    if (c.d_intermediate > 0) {
      g.push_back({p + "norm2.", norm_specs(c)});
      g.push_back({p + "mlp.", gated_mlp_param_specs(c.d_model, c.mlp_hidden(), c.n_layer)});
    }
  }
  g.push_back({"backbone.norm_f.", norm_specs(c)});
  if (!c.tie_embeddings) g.push_back({"", {{"lm_head.weight", {c.vocab_padded(), c.d_model}, init::linear_uniform(c.d_model)}}});
  return g;
}

std::unique_ptr<Layer> make_mixer(const ModelConfig& c, int64_t i, ParamMap p) {
  switch (c.layer_kind(i)) {
    case MixerKind::Mamba3: return cpu::make_mamba3(std::get<Mamba3Config>(c.ssm), c.d_model, std::move(p));
    case MixerKind::Attention: return cpu::make_attention(c.attn, c.d_model, std::move(p));
    case MixerKind::Mamba1: return cpu::make_mamba1(std::get<Mamba1Config>(c.ssm), c.d_model, std::move(p));
    case MixerKind::Mamba2: return cpu::make_mamba2(std::get<Mamba2Config>(c.ssm), c.d_model, std::move(p));
  }
  throw Error(std::string(mixer_kind_name(c.layer_kind(i))) + " mixers are not implemented yet");
}

struct Block {
  ParamMap norm, norm2;
  std::unique_ptr<Layer> mixer, mlp;
};

}  // namespace

struct Model::Impl {
  ModelConfig cfg;
  NamedTensors params;  // checkpoint name → float32 tensor, in layout order
  Tensor embedding, norm_f_w, norm_f_b, lm_head;
  std::vector<Block> blocks;
  std::vector<float> residual, normed, hidden, last;  // activations, reused across calls

  void build() {
    std::map<std::string, Tensor> by_name(params.begin(), params.end());
    auto group = [&](const std::string& prefix, const std::vector<ParamSpec>& specs) {
      ParamMap m;
      for (const auto& s : specs) m[s.name] = by_name.at(prefix + s.name);
      return m;
    };
    embedding = by_name.at("backbone.embedding.weight");
    norm_f_w = by_name.at("backbone.norm_f.weight");
    if (!cfg.rms_norm) norm_f_b = by_name.at("backbone.norm_f.bias");
    lm_head = cfg.tie_embeddings ? embedding : by_name.at("lm_head.weight");
    blocks.clear();
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
      const std::string p = "backbone.layers." + std::to_string(i) + ".";
      Block b;
      b.norm = group(p + "norm.", norm_specs(cfg));
      b.mixer = make_mixer(cfg, i, group(p + "mixer.", mixer_specs(cfg, i)));
      if (cfg.d_intermediate > 0) {
        b.norm2 = group(p + "norm2.", norm_specs(cfg));
        b.mlp = cpu::make_gated_mlp(cfg.d_model, cfg.mlp_hidden(),
                                    group(p + "mlp.", gated_mlp_param_specs(cfg.d_model, cfg.mlp_hidden(), cfg.n_layer)));
      }
      blocks.push_back(std::move(b));
    }
  }

  void norm(float* y, const float* x, const Tensor& w, const Tensor* b, int64_t T) const {
    if (cfg.rms_norm)
      cpu::rmsnorm_fwd(y, x, w.f32(), T, cfg.d_model, float(cfg.norm_eps));
    else
      cpu::layernorm_fwd(y, x, w.f32(), b->f32(), T, cfg.d_model, float(cfg.norm_eps));
  }
  void block_norm(float* y, const float* x, const ParamMap& p, int64_t T) const {
    norm(y, x, p.at("weight"), cfg.rms_norm ? nullptr : &p.at("bias"), T);
  }

  // Runs the blocks over T rows already embedded in `residual`; `run_layer(layer, in, out, l)`
  // applies one layer in the parallel or recurrent form.
  template <class RunLayer>
  void blocks_pass(int64_t T, RunLayer&& run_layer) {
    const int64_t d = cfg.d_model;
    normed.resize(size_t(T * d));
    hidden.resize(size_t(T * d));
    auto add = [&] {
#pragma omp parallel for if (T * d > cpu::kParallelWork)
      for (int64_t x = 0; x < T * d; ++x) residual[size_t(x)] += hidden[size_t(x)];
    };
    for (size_t l = 0; l < blocks.size(); ++l) {
      Block& b = blocks[l];
      block_norm(normed.data(), residual.data(), b.norm, T);
      run_layer(*b.mixer, normed.data(), hidden.data(), l);
      add();
      if (b.mlp) {
        block_norm(normed.data(), residual.data(), b.norm2, T);
        run_layer(*b.mlp, normed.data(), hidden.data(), l);
        add();
      }
    }
  }

  void embed(std::span<const int32_t> tokens) {
    const int64_t d = cfg.d_model, V = cfg.vocab_padded();
    residual.resize(tokens.size() * size_t(d));
    for (size_t t = 0; t < tokens.size(); ++t) {
      check(tokens[t] >= 0 && tokens[t] < V,
            "token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
                std::to_string(V) + ")");
      std::memcpy(residual.data() + t * size_t(d), embedding.f32() + tokens[t] * d, size_t(d) * sizeof(float));
    }
  }

  // Final norm and lm_head over the given rows of `residual`.
  void head(const std::vector<int64_t>& rows, float* logits) {
    const int64_t d = cfg.d_model, n = int64_t(rows.size());
    last.resize(size_t(n * d));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(last.data() + i * d, residual.data() + rows[size_t(i)] * d, size_t(d) * sizeof(float));
    norm(last.data(), last.data(), norm_f_w, cfg.rms_norm ? nullptr : &norm_f_b, n);
    cpu::linear_fwd(logits, last.data(), lm_head.f32(), nullptr, n, d, cfg.vocab_padded());
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->cfg; }

Model Model::load(const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  const CheckpointLayout layout = load_checkpoint_layout((std::filesystem::path(dir) / "config.json").string());
  impl->cfg = layout.config;
  const ModelConfig& c = impl->cfg;
  CheckpointTensors ck = CheckpointTensors::open_dir(dir);
  // Each block has at least a norm and a mixer tensor: a config naming more layers than the files
  // can hold is refused before its parameter layout (memory in n_layer) is built.
  check(ck.names().size() >= 2 * size_t(c.n_layer), dir + ": the config's " + std::to_string(c.n_layer) +
                                                       " layers need more tensors than the checkpoint's " +
                                                       std::to_string(ck.names().size()));
  std::set<std::string> used;
  for (const auto& g : param_layout(c))
    for (const auto& s : g.specs) {
      const std::string name = layout.file_name(g.prefix + s.name);
      Tensor t = ck.get(name);
      const std::string where = ck.file_of(name) + ": tensor '" + name + "'";
      check(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64,
            where + " has dtype " + dtype_name(t.dtype) + ", expected a float type");
      check(t.shape == s.shape, where + " has shape " + shape_str(t.shape) + ", expected " + shape_str(s.shape) +
                                    " from the config");
      Tensor f = t.to_f32();
      const float* p = f.f32();
      for (int64_t k = 0; k < f.numel(); ++k)
        check(std::isfinite(p[k]), where + " holds a non-finite value (" + std::to_string(p[k]) + ") at flat index " +
                                       std::to_string(k));
      impl->params.emplace_back(g.prefix + s.name, f);
      used.insert(name);
    }
  for (const auto& n : ck.names()) {
    if (used.count(n)) continue;
    // The reference writes lm_head.weight even when it is tied to the embedding.
    if (n == "lm_head.weight" && c.tie_embeddings) {
      check(ck.get(n).shape == Shape{c.vocab_padded(), c.d_model},
            ck.file_of(n) + ": tensor 'lm_head.weight' does not match the embedding's shape");
      continue;
    }
    throw Error(ck.file_of(n) + ": unexpected tensor '" + n + "' (not part of the model the config describes)");
  }
  impl->build();
  return Model(std::move(impl));
}

Model Model::init(const ModelConfig& c, uint64_t seed) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = c;
  std::mt19937_64 rng(seed);
  for (const auto& g : param_layout(c))
    for (const auto& s : g.specs) {
      Tensor t = Tensor::zeros(DType::F32, s.shape);
      s.init(t.f32(), t.numel(), rng);
      impl->params.emplace_back(g.prefix + s.name, t);
    }
  impl->build();
  return Model(std::move(impl));
}

void Model::save(const std::string& dir) const {
  // The config first: a model the reference format cannot describe is refused before any file is written.
  const std::string config = model_config_to_json(impl_->cfg).dump(2) + "\n";
  std::filesystem::create_directories(dir);
  save_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), impl_->params, {{"format", "pt"}});
  write_file_atomic((std::filesystem::path(dir) / "config.json").string(), config);
}

int64_t Model::n_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : impl_->params) n += t.numel();
  return n;
}

NamedTensors Model::parameters() const { return impl_->params; }

std::vector<std::string> Model::describe_layers() const {
  std::vector<std::string> r;
  for (size_t i = 0; i < impl_->blocks.size(); ++i) {
    const Block& b = impl_->blocks[i];
    r.push_back(b.mixer->describe() + (b.mlp ? " + " + b.mlp->describe() : ""));
  }
  return r;
}

SequenceState Model::new_state() const {
  SequenceState s;
  for (const auto& b : impl_->blocks) s.layers.push_back(b.mixer->new_state());
  return s;
}

void Model::forward(std::span<const int32_t> tokens, std::span<const int64_t> cu_seqlens,
                    std::span<SequenceState* const> states, float* logits, bool last_only) {
  Impl& m = *impl_;
  check(cu_seqlens.size() >= 2 && cu_seqlens.front() == 0 && cu_seqlens.back() == int64_t(tokens.size()),
        "cu_seqlens must start at 0 and end at the number of tokens (" + std::to_string(tokens.size()) + ")");
  for (size_t i = 1; i < cu_seqlens.size(); ++i) check(cu_seqlens[i] >= cu_seqlens[i - 1], "cu_seqlens must not decrease");
  Packing pk{std::vector<int64_t>(cu_seqlens.begin(), cu_seqlens.end())};
  check(int64_t(states.size()) == pk.n_seqs(), "forward needs one state per sequence");
  for (auto* s : states) check(s && s->layers.size() == m.blocks.size(), "state does not belong to this model");
  const int64_t T = int64_t(tokens.size());
  m.embed(tokens);
  std::vector<LayerState*> ls(states.size());
  m.blocks_pass(T, [&](Layer& layer, const float* in, float* out, size_t l) {
    for (size_t i = 0; i < states.size(); ++i) ls[i] = &states[i]->layers[l];
    layer.forward(in, out, pk, ls.data());
  });
  for (int64_t i = 0; i < pk.n_seqs(); ++i) states[size_t(i)]->n_tokens += pk.len(i);
  std::vector<int64_t> rows;
  if (last_only) {
    for (int64_t i = 0; i < pk.n_seqs(); ++i) {
      check(pk.len(i) > 0, "last_only logits need every sequence to be non-empty");
      rows.push_back(pk.start(i) + pk.len(i) - 1);
    }
  } else {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
  }
  m.head(rows, logits);
}

void Model::step(std::span<const int32_t> tokens, std::span<SequenceState* const> states, float* logits) {
  Impl& m = *impl_;
  check(tokens.size() == states.size(), "step needs one token per state");
  for (auto* s : states) check(s && s->layers.size() == m.blocks.size(), "state does not belong to this model");
  const int64_t n = int64_t(tokens.size());
  m.embed(tokens);
  std::vector<LayerState*> ls(states.size());
  m.blocks_pass(n, [&](Layer& layer, const float* in, float* out, size_t l) {
    for (size_t i = 0; i < states.size(); ++i) ls[i] = &states[i]->layers[l];
    layer.step(in, out, n, ls.data());
  });
  for (auto* s : states) s->n_tokens += 1;
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
  m.head(rows, logits);
}

}  // namespace m3
