// The model graph for training (spec/model.md §2) with the residual stream written as
//   r ← r + mixer(Norm(r)); r ← r + MLP(Norm2(r)) per block; logits = lm_head(NormF(r)),
// the same sums as the reference's (h, residual) form. Backward walks it in reverse with dL/dr.
#include "train/grad_model.h"

#include <cstring>
#include <map>

#include "core/lazy_check.h"
#include "m3/error.h"
#include "train/grad_layer.h"
#include "train/grad_ops.h"
#include "train/mamba3_grad.h"

namespace m3::train {

namespace {

// RMSNorm or LayerNorm (spec/model.md §1) with what its backward needs.
template <class T>
struct Norm {
  bool rms = true;
  T eps = T(1e-5);
  T *w = nullptr, *b = nullptr, *gw = nullptr, *gb = nullptr;
  std::vector<T> x, mean, rstd;
  void forward(T* y, const T* in, int64_t n, int64_t D) {
    x.assign(in, in + n * D);
    rstd.resize(size_t(n)), mean.resize(size_t(n));
    if (rms) rmsnorm_forward<T>(y, rstd.data(), in, w, n, D, eps);
    else layernorm_forward<T>(y, mean.data(), rstd.data(), in, w, b, n, D, eps);
  }
  // dx += the input gradient (the residual stream's).
  void backward(T* dx, const T* dy, int64_t n, int64_t D) {
    if (rms) rmsnorm_backward<T>(dx, gw, dy, x.data(), w, rstd.data(), n, D, true);
    else layernorm_backward<T>(dx, gw, gb, dy, x.data(), w, mean.data(), rstd.data(), n, D, true);
  }
};

}  // namespace

template <class T>
struct GradModel<T>::Impl {
  ModelConfig cfg;
  struct Block {
    Norm<T> norm, norm2;
    std::unique_ptr<GradLayer<T>> mixer, mlp;
  };
  std::vector<Block> blocks;
  Norm<T> norm_f;
  T *emb = nullptr, *g_emb = nullptr, *head = nullptr, *g_head = nullptr;
  std::vector<T> logits, nf;
  std::vector<int32_t> tok;
};

template <class T>
GradModel<T>::GradModel(const ModelConfig& c, const NamedTensors& params) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = c;
  for (const auto& [name, t] : params) {
    if (name == "lm_head.weight" && c.tie_embeddings) continue;
    check(t.dtype == DType::F32, "training: parameter " + name + " must be float32");
    names.push_back(name);
    shapes.push_back(t.shape);
    const float* src = static_cast<const float*>(t.data);
    values.emplace_back(src, src + t.numel());
    grads.emplace_back(size_t(t.numel()), T(0));
  }
  std::map<std::string, size_t> idx;
  for (size_t i = 0; i < names.size(); ++i) idx[names[i]] = i;
  auto at = [&](const std::string& name) -> size_t {
    auto it = idx.find(name);
    check(it != idx.end(), "training: the model has no parameter " + name);
    return it->second;
  };
  // Every parameter under a key prefix, by its name relative to the prefix.
  auto group = [&](const std::string& prefix) {
    ParamRefs<T> r;
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i].rfind(prefix, 0) == 0) r.by_name[names[i].substr(prefix.size())] = {values[i].data(), grads[i].data()};
    return r;
  };
  auto norm = [&](const std::string& prefix) {
    Norm<T> nm;
    nm.rms = c.rms_norm;
    nm.eps = T(c.norm_eps);
    nm.w = values[at(prefix + "weight")].data(), nm.gw = grads[at(prefix + "weight")].data();
    if (!c.rms_norm) nm.b = values[at(prefix + "bias")].data(), nm.gb = grads[at(prefix + "bias")].data();
    return nm;
  };
  m.emb = values[at("backbone.embedding.weight")].data();
  m.g_emb = grads[at("backbone.embedding.weight")].data();
  m.head = c.tie_embeddings ? m.emb : values[at("lm_head.weight")].data();
  m.g_head = c.tie_embeddings ? m.g_emb : grads[at("lm_head.weight")].data();
  m.norm_f = norm("backbone.norm_f.");
  check(c.gated_mlp_hidden == 0 && !c.block_moe && c.block_moe_layers.empty(),
        "training: the Hugging Face hybrids' block MLP and MoE have no backward yet (they run, but do not train)");
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    typename Impl::Block b;
    b.norm = norm(p + "norm.");
    switch (c.layer_kind(i)) {
      case MixerKind::Mamba3: b.mixer = make_mamba3_grad<T>(std::get<Mamba3Config>(c.ssm), c.d_model, group(p + "mixer.")); break;
      case MixerKind::Mamba2: b.mixer = make_mamba2_grad<T>(std::get<Mamba2Config>(c.ssm), c.d_model, group(p + "mixer.")); break;
      case MixerKind::Mamba1: b.mixer = make_mamba1_grad<T>(std::get<Mamba1Config>(c.ssm), c.d_model, group(p + "mixer.")); break;
      case MixerKind::Attention: b.mixer = make_attention_grad<T>(c.attn, c.d_model, group(p + "mixer.")); break;
      case MixerKind::Mlp:
      case MixerKind::Moe:
      case MixerKind::AttentionMamba2:
      case MixerKind::Zamba2Hybrid:
        throw Error(std::string("training: layer ") + std::to_string(i) + " is " + mixer_kind_name(c.layer_kind(i)) +
                    ", which has no backward yet (Hugging Face hybrid layers run, but do not train)");
    }
    if (c.d_intermediate > 0) {
      b.norm2 = norm(p + "norm2.");
      b.mlp = make_gated_mlp_grad<T>(c.d_model, c.mlp_hidden(), group(p + "mlp."));
    }
    m.blocks.push_back(std::move(b));
  }
}

template <class T>
GradModel<T>::~GradModel() = default;
template <class T>
GradModel<T>::GradModel(GradModel&&) noexcept = default;

template <class T>
const ModelConfig& GradModel<T>::config() const {
  return impl_->cfg;
}

template <class T>
const std::vector<T>& GradModel<T>::logits() const {
  return impl_->logits;
}

template <class T>
void GradModel<T>::zero_grad() {
  for (auto& g : grads) std::fill(g.begin(), g.end(), T(0));
}

template <class T>
double GradModel<T>::forward_backward(std::span<const int32_t> tokens, const std::vector<int64_t>& cu,
                                      std::span<const int32_t> targets, double count, bool backward) {
  Impl& m = *impl_;
  const ModelConfig& c = m.cfg;
  const int64_t n = int64_t(tokens.size()), D = c.d_model, V = c.vocab_padded();
  check(cu.size() >= 2 && cu.front() == 0 && cu.back() == n, "training: cu_seqlens do not cover the tokens");
  check(targets.size() == tokens.size(), "training: one target per token expected");
  for (int32_t t : tokens)
    check(t >= 0 && t < V, [&] { return "training: token id " + std::to_string(t) + " outside the vocabulary"; });
  if (count <= 0) {
    for (int32_t t : targets) count += t >= 0 ? 1 : 0;
    check(count > 0, "training: the batch has no targets");
  }
  std::vector<T> r(size_t(n * D)), normed(size_t(n * D)), out(size_t(n * D));
  for (int64_t t = 0; t < n; ++t) std::memcpy(&r[size_t(t * D)], m.emb + int64_t(tokens[size_t(t)]) * D, sizeof(T) * size_t(D));
  auto add = [&](const std::vector<T>& a) {
    for (size_t i = 0; i < r.size(); ++i) r[i] += a[i];
  };
  for (auto& b : m.blocks) {
    b.norm.forward(normed.data(), r.data(), n, D);
    b.mixer->forward(normed.data(), out.data(), cu);
    add(out);
    if (b.mlp) {
      b.norm2.forward(normed.data(), r.data(), n, D);
      b.mlp->forward(normed.data(), out.data(), cu);
      add(out);
    }
  }
  m.nf.resize(size_t(n * D));
  m.norm_f.forward(m.nf.data(), r.data(), n, D);
  m.logits.resize(size_t(n * V));
  linear_forward<T>(m.logits.data(), m.nf.data(), m.head, nullptr, n, D, V);
  std::vector<T> dlogits(size_t(n * V));
  const double loss = cross_entropy<T>(dlogits.data(), m.logits.data(), targets.data(), n, V, count);
  if (!backward) return loss;
  // Backward: dr is dL/dr for the residual stream at the current depth.
  std::vector<T> dnf(size_t(n * D)), dr(size_t(n * D), T(0)), dn(size_t(n * D));
  linear_backward<T>(dnf.data(), m.g_head, nullptr, dlogits.data(), m.nf.data(), m.head, n, D, V);
  m.norm_f.backward(dr.data(), dnf.data(), n, D);
  for (size_t i = m.blocks.size(); i-- > 0;) {
    auto& b = m.blocks[i];
    if (b.mlp) {
      b.mlp->backward(dr.data(), dn.data());
      b.norm2.backward(dr.data(), dn.data(), n, D);
    }
    b.mixer->backward(dr.data(), dn.data());
    b.norm.backward(dr.data(), dn.data(), n, D);
  }
  for (int64_t t = 0; t < n; ++t) {
    T* g = m.g_emb + int64_t(tokens[size_t(t)]) * D;
    for (int64_t d = 0; d < D; ++d) g[d] += dr[size_t(t * D + d)];
  }
  return loss;
}

template <class T>
NamedTensors GradModel<T>::tensors(DType dtype, bool with_grads) const {
  check(dtype == DType::F32 || dtype == DType::F64, "training: tensors are written as F32 or F64");
  NamedTensors out;
  for (size_t i = 0; i < names.size(); ++i) {
    Tensor t = Tensor::zeros(dtype, shapes[i]);
    const auto& src = with_grads ? grads[i] : values[i];
    for (size_t j = 0; j < src.size(); ++j) {
      if (dtype == DType::F32) t.ptr<float>()[j] = float(src[j]);
      else t.ptr<double>()[j] = double(src[j]);
    }
    out.emplace_back(with_grads ? "grad." + names[i] : names[i], std::move(t));
  }
  return out;
}

template class GradModel<float>;
template class GradModel<double>;

}  // namespace m3::train
