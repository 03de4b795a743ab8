// The model graph (spec/model.md §2): parameter layout, loading with validation, initialisation,
// and the forward / step passes over the blocks.
#include "m3/model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>
#include <span>

#include "core/finite.h"
#include "core/lazy_check.h"
#include "io/hf_config.h"
#include "m3/error.h"
#include "model/backend.h"
#include "model/init.h"
#include "model/layer_parts.h"
#include "model/specs.h"
#include "model/state_pool.h"

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

// Part specs under a name prefix (the parts of a parallel layer).
std::vector<ParamSpec> prefixed(const std::string& prefix, std::vector<ParamSpec> specs) {
  for (auto& s : specs) s.name = prefix + s.name;
  return specs;
}

std::vector<ParamSpec> mixer_specs(const ModelConfig& c, int64_t i) {
  switch (c.layer_kind(i)) {
    case MixerKind::Mamba3: return mamba3_param_specs(std::get<Mamba3Config>(c.ssm), c.d_model, c.n_layer);
    case MixerKind::Attention: return attention_param_specs(c.attn, c.d_model, c.n_layer);
    case MixerKind::Mamba1: return mamba1_param_specs(std::get<Mamba1Config>(c.ssm), c.d_model, c.n_layer);
    case MixerKind::Mamba2: return mamba2_param_specs(std::get<Mamba2Config>(c.ssm), c.d_model, c.n_layer);
    case MixerKind::Mlp: return mlp_param_specs(c.mlp, c.d_model, c.n_layer);
    case MixerKind::Moe: return moe_param_specs(c.moe, c.d_model, c.n_layer);
    case MixerKind::AttentionMamba2: {
      auto s = prefixed("attn.", attention_param_specs(c.attn, c.d_model, c.n_layer));
      auto m = prefixed("ssm.", mamba2_param_specs(std::get<Mamba2Config>(c.ssm), c.d_model, c.n_layer));
      s.insert(s.end(), m.begin(), m.end());
      return s;
    }
    case MixerKind::Zamba2Hybrid: return zamba2_hybrid_param_specs(c);
  }
  throw Error(std::string(mixer_kind_name(c.layer_kind(i))) + " mixers are not implemented yet");
}

// What ends block i after its second norm (has_block_ffn).
std::vector<ParamSpec> block_ffn_specs(const ModelConfig& c, int64_t i) {
  return c.block_is_moe(i) ? moe_param_specs(c.moe, c.d_model, c.n_layer)
                           : gated_mlp_param_specs(c.d_model, c.mlp_hidden(), c.n_layer);
}

// Every parameter of the model, in checkpoint order (spec/model.md §5).
std::vector<ParamGroup> param_layout(const ModelConfig& c) {
  std::vector<ParamGroup> g;
  g.push_back({"backbone.embedding.", {{"weight", {c.vocab_padded(), c.d_model}, init::normal(0.02f)}}});
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    g.push_back({p + "norm.", norm_specs(c)});
    g.push_back({p + "mixer.", mixer_specs(c, i)});
    if (c.has_block_ffn()) {
      g.push_back({p + "norm2.", norm_specs(c)});
      g.push_back({p + "mlp.", block_ffn_specs(c, i)});
    }
  }
  g.push_back({"backbone.norm_f.", norm_specs(c)});
  if (!c.tie_embeddings) g.push_back({"", {{"lm_head.weight", {c.vocab_padded(), c.d_model}, init::linear_uniform(c.d_model)}}});
  return g;
}

// sum (rows [pc.begin, end) of the piece's tensor W, shape w_shape) += (B·A)[those rows], in
// float64, for Zamba2's adapters: A = pc.lora_a [r, in], B = pc.lora_b [out, r], W [out, in]
// (TensorPiece).
void add_low_rank(std::vector<double>& sum, const CheckpointTensors& ck, const TensorPiece& pc,
                  const Shape& w_shape, std::set<std::string>& used) {
  const Tensor a = ck.get(pc.lora_a).convert(DType::F32), b = ck.get(pc.lora_b).convert(DType::F32);
  const std::string where =
      ck.file_of(pc.lora_a) + ": adapter tensors '" + pc.lora_a + "' and '" + pc.lora_b + "'";
  check(w_shape.size() == 2 && a.shape.size() == 2 && b.shape.size() == 2 && a.shape[1] == w_shape[1] &&
            b.shape[0] == w_shape[0] && b.shape[1] == a.shape[0],
        where + " have shapes " + shape_str(a.shape) + " and " + shape_str(b.shape) + ", which do not form a " +
            shape_str(w_shape) + " low-rank term for '" + pc.file + "'");
  check(pc.lora_rank <= 0 || a.shape[0] == pc.lora_rank,
        where + " have rank " + std::to_string(a.shape[0]) + ", but the config's adapter_rank is " +
            std::to_string(pc.lora_rank));
  for (const Tensor* x : {&a, &b})
    if (const int64_t k = first_non_finite(x->f32(), x->numel()); k < x->numel())
      throw Error(where + " hold a non-finite value at flat index " + std::to_string(k));
  const int64_t in = a.shape[1], r = a.shape[0], end = pc.end < 0 ? w_shape[0] : pc.end;
  for (int64_t i = pc.begin; i < end; ++i)
    for (int64_t k = 0; k < r; ++k) {
      const double bik = b.f32()[i * r + k];
      for (int64_t j = 0; j < in; ++j) sum[size_t((i - pc.begin) * in + j)] += bik * double(a.f32()[k * in + j]);
    }
  used.insert(pc.lora_a);
  used.insert(pc.lora_b);
}

// p: the mixer's parameters by relative name (mixer_specs).
std::unique_ptr<Layer> make_mixer(Backend& be, const ModelConfig& c, int64_t i, ParamMap p) {
  switch (c.layer_kind(i)) {
    case MixerKind::Mamba3: return be.make_mamba3(std::get<Mamba3Config>(c.ssm), c.d_model, std::move(p));
    case MixerKind::Attention: return be.make_attention(c.attn, c.d_model, std::move(p));
    case MixerKind::Mamba1: return be.make_mamba1(std::get<Mamba1Config>(c.ssm), c.d_model, std::move(p));
    case MixerKind::Mamba2: return be.make_mamba2(std::get<Mamba2Config>(c.ssm), c.d_model, std::move(p));
    case MixerKind::Mlp: return be.make_mlp(c.mlp, c.d_model, std::move(p));
    case MixerKind::Moe: return be.make_moe(c.moe, c.d_model, std::move(p));
    case MixerKind::AttentionMamba2: {
      std::vector<std::unique_ptr<Layer>> parts;
      parts.push_back(be.make_attention(c.attn, c.d_model, params_under(p, "attn.")));
      parts.push_back(be.make_mamba2(std::get<Mamba2Config>(c.ssm), c.d_model, params_under(p, "ssm.")));
      return be.make_parallel(std::move(parts), c.d_model);
    }
    case MixerKind::Zamba2Hybrid: break;  // built with its block's norm (Model::Impl::build)
  }
  throw Error(std::string(mixer_kind_name(c.layer_kind(i))) + " mixers are not implemented yet");
}

// norm is null for a Zamba2 hybrid block, whose mixer holds its norm and reads [h | e] rows.
struct Block {
  std::unique_ptr<BlockNorm> norm, norm2;
  std::unique_ptr<Layer> mixer, mlp;
};

// A growable array in the backend's memory (activations and per-call index arrays).
template <class T>
struct DeviceArray {
  std::shared_ptr<void> mem;
  size_t cap = 0;
  T* get(Backend& be, size_t n) {
    if (n > cap) {
      mem = be.alloc(std::max<size_t>(n, 1) * sizeof(T));
      cap = n;
    }
    return static_cast<T*>(mem.get());
  }
  // The host array's copy in the backend's memory.
  T* upload(Backend& be, const T* host, size_t n) {
    T* d = get(be, n);
    if (n) be.upload(d, host, n * sizeof(T));
    return d;
  }
};

}  // namespace

struct Model::Impl {
  std::shared_ptr<Backend> be;  // first: destroyed after everything built on it
  ModelConfig cfg;
  NamedTensors params;  // checkpoint name → float32 host tensor, in layout order
  std::unique_ptr<ModelEnds> ends;
  std::vector<Block> blocks;
  std::shared_ptr<StatePool> pool;
  int64_t max_tokens_per_pass = 16384;
  DeviceArray<float> residual, normed, hidden, logits;
  DeviceArray<float> embedded, zamba2_in;  // Zamba2: the embeddings, and a hybrid layer's [h | e] rows
  bool zamba2 = false;
  DeviceArray<int32_t> tokens_dev, slots_dev;
  DeviceArray<int64_t> cu_dev, pos_dev, rows_dev;

  void build(const DeviceSpec& device) {
    be = open_backend(device);
    std::map<std::string, Tensor> by_name(params.begin(), params.end());
    auto group = [&](const std::string& prefix, const std::vector<ParamSpec>& specs) {
      ParamMap m;
      for (const auto& s : specs) m[s.name] = by_name.at(prefix + s.name);
      return m;
    };
    const Tensor& embedding = by_name.at("backbone.embedding.weight");
    ends = be->make_ends(cfg, embedding, group("backbone.norm_f.", norm_specs(cfg)),
                         cfg.tie_embeddings ? embedding : by_name.at("lm_head.weight"));
    blocks.clear();
    std::vector<LayerStateSpec> specs;
    const float eps = float(cfg.norm_eps);
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
      const std::string p = "backbone.layers." + std::to_string(i) + ".";
      Block b;
      ParamMap norm = group(p + "norm.", norm_specs(cfg)), mixer = group(p + "mixer.", mixer_specs(cfg, i));
      if (cfg.layer_kind(i) == MixerKind::Zamba2Hybrid) {
        zamba2 = true;
        b.mixer = be->make_zamba2_hybrid(cfg, std::move(mixer), std::move(norm));
      } else {
        b.norm = be->make_norm(cfg.d_model, cfg.rms_norm, eps, std::move(norm));
        b.mixer = make_mixer(*be, cfg, i, std::move(mixer));
      }
      if (cfg.has_block_ffn()) {
        b.norm2 = be->make_norm(cfg.d_model, cfg.rms_norm, eps, group(p + "norm2.", norm_specs(cfg)));
        ParamMap ffn = group(p + "mlp.", block_ffn_specs(cfg, i));
        b.mlp = cfg.block_is_moe(i) ? be->make_moe(cfg.moe, cfg.d_model, std::move(ffn))
                                    : be->make_gated_mlp(cfg.d_model, cfg.mlp_hidden(), std::move(ffn));
      }
      specs.push_back(b.mixer->state_spec());
      blocks.push_back(std::move(b));
    }
    pool = std::make_shared<StatePool>(be, std::move(specs), 1, 0, /*growable=*/true);
    recordable_steps = std::getenv("M3_NO_GRAPHS") == nullptr;
    // Attention's launch shapes follow the KV lengths; a MoE's follow the routing.
    for (int64_t i = 0; i < cfg.n_layer; ++i)
      if (cfg.layer_kind(i) == MixerKind::Attention || cfg.layer_kind(i) == MixerKind::AttentionMamba2 ||
          cfg.layer_kind(i) == MixerKind::Zamba2Hybrid ||
          cfg.layer_kind(i) == MixerKind::Moe || cfg.block_is_moe(i))
        recordable_steps = false;
  }

  void check_states(std::span<SequenceState* const> states) const {
    for (size_t i = 0; i < states.size(); ++i) {
      check(states[i] && states[i]->pool() == pool.get(), "state does not belong to this model");
      for (size_t j = 0; j < i; ++j) check(states[j] != states[i], "the same state is given twice in one call");
    }
  }

  void check_tokens(std::span<const int32_t> tokens) const {
    const int64_t V = cfg.vocab_padded();
    for (size_t t = 0; t < tokens.size(); ++t)
      check(tokens[t] >= 0 && tokens[t] < V, [&] {
        return "token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
               " is outside the vocabulary [0, " + std::to_string(V) + ")";
      });
  }

  // Runs embedding, blocks and head over T packed rows; `run_layer(layer, in, out, batch)` applies
  // one layer in the parallel or recurrent form. Each block's norm adds the previous layer's output
  // into the float32 residual first (spec/model.md §2).
  // Decode steps replayed from a recording (a CUDA graph): the work of a step is fixed by the batch
  // size and the slots, so the second step with the same ones is recorded and later ones replay
  // it. Models with attention step eagerly: their kernels' launch shapes follow the KV lengths.
  struct StepRecording {
    int64_t n = -1;
    std::vector<int32_t> slots;
    bool seen = false;          // one eager step with this key: every scratch array has its size
    bool unrecordable = false;  // the backend could not record it: step eagerly
    std::unique_ptr<Recording> rec;
  } step_rec;
  bool recordable_steps = false;

  template <class RunLayer>
  void run(std::span<const int32_t> tokens, std::span<SequenceState* const> states, int64_t kv_needed,
           const std::vector<int64_t>& rows, float* out, bool record, RunLayer&& run_layer) {
    const int64_t T = int64_t(tokens.size()), d = cfg.d_model, V = cfg.vocab_padded(), n = int64_t(states.size());
    pool->reserve_kv(kv_needed);
    std::vector<int32_t> slots(static_cast<size_t>(n));
    std::vector<int64_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) slots[size_t(i)] = states[size_t(i)]->slot(), pos[size_t(i)] = states[size_t(i)]->n_tokens;
    // Inputs go to the same device arrays every call (they only grow), so a recording made over
    // them reads each call's values.
    const int32_t* slot_d = slots_dev.upload(*be, slots.data(), slots.size());
    const int64_t* pos_d = pos_dev.upload(*be, pos.data(), pos.size());
    const int32_t* tok_d = tokens_dev.upload(*be, tokens.data(), tokens.size());
    const int64_t* rows_d = rows_dev.upload(*be, rows.data(), rows.size());
    float* res = residual.get(*be, size_t(T * d));
    float* nrm = normed.get(*be, size_t(T * d));
    float* hid = hidden.get(*be, size_t(T * d));
    const bool host = be->device().kind == DeviceKind::CPU;
    const size_t n_out = rows.size() * size_t(V);
    float* lg = host ? out : logits.get(*be, n_out);
    float* emb = zamba2 ? embedded.get(*be, size_t(T * d)) : nullptr;
    float* zin = zamba2 ? zamba2_in.get(*be, size_t(2 * T * d)) : nullptr;
    auto work = [&] {
      ends->embed(res, tok_d, T);
      if (emb) be->copy(emb, res, size_t(T * d) * sizeof(float));
      const float* pending = nullptr;  // the last layer's output, not yet in the residual
      for (size_t l = 0; l < blocks.size(); ++l) {
        Block& b = blocks[l];
        const float* in = nrm;
        if (b.norm) {
          b.norm->forward(res, pending, nrm, T);
        } else {
          be->zamba2_rows(zin, res, pending, emb, T, d);
          in = zin;
        }
        run_layer(*b.mixer, in, hid, pool->batch(l, n, slots.data(), slot_d, pos.data(), pos_d));
        pending = hid;
        if (b.mlp) {
          b.norm2->forward(res, pending, nrm, T);
          run_layer(*b.mlp, nrm, hid, StateBatch{});
        }
      }
      ends->logits(lg, res, pending, rows_d, int64_t(rows.size()));
    };
    if (!record || !recordable_steps) {
      work();
    } else {
      StepRecording& r = step_rec;
      if (r.n != n || r.slots != slots) r = StepRecording{n, slots, false, false, nullptr};
      // A recording holds device addresses: one made before an allocation may be stale.
      if (r.rec && !r.rec->replay()) r.rec.reset();
      if (!r.rec) {
        if (r.seen && !r.unrecordable) {
          r.rec = be->record(work);
          r.unrecordable = r.rec == nullptr;
        }
        if (!r.rec || !r.rec->replay()) {
          r.rec.reset();
          work();
        }
        r.seen = true;
      }
    }
    if (!host && n_out) be->download(out, lg, n_out * sizeof(float));
  }

  // One pass of the parallel form over the packed batch pk (tokens already checked); logits of the
  // local rows `rows` into out [rows.size(), vocab_padded].
  void forward_pass(std::span<const int32_t> tokens, Packing& pk, std::span<SequenceState* const> states,
                    int64_t kv_needed, const std::vector<int64_t>& rows, float* out) {
    pk.cu_dev = cu_dev.upload(*be, pk.cu_seqlens.data(), pk.cu_seqlens.size());
    run(tokens, states, kv_needed, rows, out, false,
        [&](Layer& layer, const float* in, float* o, const StateBatch& s) { layer.forward(in, o, pk, s); });
    for (int64_t i = 0; i < pk.n_seqs(); ++i) states[size_t(i)]->n_tokens += pk.len(i);
  }

  // A batch larger than the token budget, in passes windowed by position (model.h): every pass
  // takes up to W = max(1, budget / unfinished) next tokens of each unfinished sequence in order
  // until the budget is used. Logits go through a per-pass host array to their rows in `result`.
  void forward_in_passes(std::span<const int32_t> tokens, const Packing& pk, std::span<SequenceState* const> states,
                         int64_t kv_needed, float* result, bool last_only) {
    const int64_t V = cfg.vocab_padded(), budget = max_tokens_per_pass;
    std::vector<int64_t> done(size_t(pk.n_seqs()), 0);
    std::vector<float> out;
    for (;;) {
      std::vector<int64_t> unfinished;
      for (int64_t i = 0; i < pk.n_seqs(); ++i)
        if (done[size_t(i)] < pk.len(i)) unfinished.push_back(i);
      if (unfinished.empty()) break;
      const int64_t W = std::max<int64_t>(1, budget / int64_t(unfinished.size()));
      Packing part{{0}};
      std::vector<int32_t> part_tokens;
      std::vector<SequenceState*> part_states;
      std::vector<int64_t> rows, dest;  // local rows that get logits, and their offsets in `result`
      int64_t left = budget;
      for (int64_t i : unfinished) {
        if (left == 0) break;
        const int64_t from = done[size_t(i)], w = std::min({W, pk.len(i) - from, left});
        const int64_t local = part.n_tokens(), global = pk.start(i) + from;
        part_tokens.insert(part_tokens.end(), tokens.begin() + global, tokens.begin() + global + w);
        part.cu_seqlens.push_back(local + w);
        part_states.push_back(states[size_t(i)]);
        if (!last_only) {
          for (int64_t t = 0; t < w; ++t) rows.push_back(local + t), dest.push_back((global + t) * V);
        } else if (from + w == pk.len(i)) {
          rows.push_back(local + w - 1), dest.push_back(i * V);
        }
        done[size_t(i)] += w;
        left -= w;
      }
      out.resize(rows.size() * size_t(V));
      forward_pass(part_tokens, part, part_states, kv_needed, rows, out.data());
      for (size_t r = 0; r < rows.size(); ++r)
        std::memcpy(result + dest[r], out.data() + r * size_t(V), size_t(V) * sizeof(float));
    }
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->cfg; }

Model Model::load(const std::string& dir, const DeviceSpec& device) {
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
      const std::vector<TensorPiece> pieces = layout.sources(g.prefix + s.name);
      std::vector<Tensor> parts;
      int64_t rows = 0;
      for (const TensorPiece& pc : pieces) {
        Tensor t = ck.get(pc.file);
        const std::string where = ck.file_of(pc.file) + ": tensor '" + pc.file + "'";
        check(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64,
              where + " has dtype " + dtype_name(t.dtype) + ", expected a float type");
        if (pieces.size() == 1 && pc.whole())
          check(t.shape == s.shape, where + " has shape " + shape_str(t.shape) + ", expected " + shape_str(s.shape) +
                                        " from the config");
        // A piece is whole rows of its tensor: every axis but the first as the parameter's.
        check(!t.shape.empty() && t.shape.size() == s.shape.size() &&
                  std::equal(t.shape.begin() + 1, t.shape.end(), s.shape.begin() + 1),
              where + " has shape " + shape_str(t.shape) + ", which cannot form " + shape_str(s.shape) + " ('" +
                  g.prefix + s.name + "')");
        const int64_t end = pc.end < 0 ? t.shape[0] : pc.end;
        check(pc.begin >= 0 && pc.begin <= end && end <= t.shape[0],
              where + " has " + std::to_string(t.shape[0]) + " rows, fewer than the config needs");
        Tensor f = pc.whole() ? t.to_f32() : t.convert(DType::F32);
        const float* p = f.f32();
        // Validation costs one vectorised pass over good data (the message only for a bad value).
        if (const int64_t k = first_non_finite(p, f.numel()); k < f.numel())
          throw Error(where + " holds a non-finite value (" + std::to_string(p[k]) + ") at flat index " +
                      std::to_string(k));
        if (!pc.whole()) {
          const int64_t row = f.numel() / std::max<int64_t>(f.shape[0], 1);
          Shape sh = f.shape;
          sh[0] = end - pc.begin;
          Tensor r = Tensor::zeros(DType::F32, sh);
          if (pc.lora_a.empty()) {
            for (int64_t k = 0; k < r.numel(); ++k) r.f32()[k] = float(double(p[pc.begin * row + k]) * pc.scale);
          } else {  // W + B·A summed in float64 before the one rounding
            std::vector<double> sum(p + pc.begin * row, p + pc.begin * row + r.numel());
            add_low_rank(sum, ck, pc, t.shape, used);
            for (int64_t k = 0; k < r.numel(); ++k) r.f32()[k] = float(sum[size_t(k)] * pc.scale);
          }
          f = r;
        }
        rows += f.shape[0];
        parts.push_back(f);
        used.insert(pc.file);
      }
      check(rows == s.shape[0], "the checkpoint's tensors for '" + g.prefix + s.name + "' hold " +
                                    std::to_string(rows) + " rows, expected " + shape_str(s.shape) + " from the config");
      Tensor f = parts[0];
      if (parts.size() > 1) {
        f = Tensor::zeros(DType::F32, s.shape);
        int64_t at = 0;
        for (const Tensor& part : parts) {
          std::copy_n(part.f32(), part.numel(), f.f32() + at);
          at += part.numel();
        }
      }
      impl->params.emplace_back(g.prefix + s.name, f);
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
  impl->build(device);
  return Model(std::move(impl));
}

Model Model::init(const ModelConfig& c, uint64_t seed, const DeviceSpec& device) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = c;
  std::mt19937_64 rng(seed);
  for (const auto& g : param_layout(c))
    for (const auto& s : g.specs) {
      Tensor t = Tensor::zeros(DType::F32, s.shape);
      s.init(t.f32(), t.numel(), rng);
      impl->params.emplace_back(g.prefix + s.name, t);
    }
  impl->build(device);
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

SequenceState Model::new_state() const { return SequenceState(impl_->pool, impl_->pool->acquire()); }

std::vector<LayerStateSpec> Model::state_specs() const {
  std::vector<LayerStateSpec> r;
  for (size_t l = 0; l < impl_->pool->n_layers(); ++l) r.push_back(impl_->pool->spec(l));
  return r;
}

size_t Model::state_bytes(int64_t positions) const { return impl_->pool->bytes_per_sequence(positions); }

void Model::fix_state_pool(int64_t n_slots, int64_t kv_positions) {
  check(impl_->pool->slots_in_use() == 0, "the state pool can only be fixed while no state is alive");
  std::vector<LayerStateSpec> specs = state_specs();
  impl_->pool = std::make_shared<StatePool>(impl_->be, std::move(specs), n_slots, kv_positions, /*growable=*/false);
  impl_->step_rec = {};  // recordings name the old pool's addresses
}

const DeviceSpec& Model::device() const { return impl_->be->device(); }
std::string Model::device_description() const { return impl_->be->describe(); }
size_t Model::device_weight_bytes() const { return impl_->be->weight_bytes(); }

void Model::forward(std::span<const int32_t> tokens, std::span<const int64_t> cu_seqlens,
                    std::span<SequenceState* const> states, float* logits, bool last_only) {
  Impl& m = *impl_;
  check(cu_seqlens.size() >= 2 && cu_seqlens.front() == 0 && cu_seqlens.back() == int64_t(tokens.size()),
        "cu_seqlens must start at 0 and end at the number of tokens (" + std::to_string(tokens.size()) + ")");
  for (size_t i = 1; i < cu_seqlens.size(); ++i) check(cu_seqlens[i] >= cu_seqlens[i - 1], "cu_seqlens must not decrease");
  Packing pk{std::vector<int64_t>(cu_seqlens.begin(), cu_seqlens.end())};
  check(int64_t(states.size()) == pk.n_seqs(), "forward needs one state per sequence");
  m.check_states(states);
  m.check_tokens(tokens);
  if (last_only)
    for (int64_t i = 0; i < pk.n_seqs(); ++i)
      check(pk.len(i) > 0, "last_only logits need every sequence to be non-empty");
  // Every pass reserves the KV rows of the whole call: one growth of the cache, not one per pass.
  int64_t kv_needed = 0;
  for (int64_t i = 0; i < pk.n_seqs(); ++i) kv_needed = std::max(kv_needed, states[size_t(i)]->n_tokens + pk.len(i));
  if (pk.n_tokens() > m.max_tokens_per_pass) {
    m.forward_in_passes(tokens, pk, states, kv_needed, logits, last_only);
    return;
  }
  std::vector<int64_t> rows;
  if (last_only) {
    for (int64_t i = 0; i < pk.n_seqs(); ++i) rows.push_back(pk.start(i) + pk.len(i) - 1);
  } else {
    for (int64_t t = 0; t < pk.n_tokens(); ++t) rows.push_back(t);
  }
  m.forward_pass(tokens, pk, states, kv_needed, rows, logits);
}

void Model::set_max_tokens_per_pass(int64_t n) {
  check(n >= 1, "the token budget of a forward pass must be at least 1 (got " + std::to_string(n) + ")");
  impl_->max_tokens_per_pass = n;
}

int64_t Model::max_tokens_per_pass() const { return impl_->max_tokens_per_pass; }

void Model::step(std::span<const int32_t> tokens, std::span<SequenceState* const> states, float* logits) {
  Impl& m = *impl_;
  check(tokens.size() == states.size(), "step needs one token per state");
  m.check_states(states);
  m.check_tokens(tokens);
  const int64_t n = int64_t(tokens.size());
  int64_t kv_needed = 0;
  for (auto* s : states) kv_needed = std::max(kv_needed, s->n_tokens + 1);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
  m.run(tokens, states, kv_needed, rows, logits, true,
        [&](Layer& layer, const float* in, float* out, const StateBatch& s) { layer.step(in, out, n, s); });
  for (auto* s : states) s->n_tokens += 1;
}

}  // namespace m3
