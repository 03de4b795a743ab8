// Training backward passes: each layer's float64 gradient against central finite differences
// (random odd sizes, packed sequences, carried-in state, several chunks), float32 against
// float64, and the whole model's loss and gradients against the reference's autograd gradients
// in ../shared/golden/mamba3_siso_hybrid.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <tuple>

#include "golden_model.h"
#include "m3/model.h"
#include "model/specs.h"
#include "testing.h"
#include "train/grad_layer.h"
#include "train/grad_model.h"
#include "train/mamba3_grad.h"

namespace m3 {
namespace {

using train::GradLayer;
using train::ParamRefs;

// Parameters of one layer as float64 arrays drawn from its specs' initialisers, then perturbed
// so that every parameter matters (ones and zeros would hide terms).
struct LayerParams {
  std::map<std::string, std::vector<double>> v, g;
  LayerParams(const std::vector<ParamSpec>& specs, std::mt19937_64& rng) {
    std::normal_distribution<double> nd(0.0, 0.3);
    for (const auto& s : specs) {
      std::vector<float> f(size_t(shape_numel(s.shape)));
      s.init(f.data(), int64_t(f.size()), rng);
      auto& x = v[s.name];
      for (float a : f) x.push_back(double(a) + nd(rng) * (s.name.find("proj") != std::string::npos ? 0.1 : 1.0));
      g[s.name].assign(x.size(), 0.0);
    }
  }
  ParamRefs<double> refs() {
    ParamRefs<double> r;
    for (auto& [k, x] : v) r.by_name[k] = {x.data(), g[k].data()};
    return r;
  }
};

// Central differences of loss() with respect to up to `samples` entries of x, against the
// analytic gradient g; relative error over the sampled entries.
double fd_check(std::vector<double>& x, const std::vector<double>& g, const std::function<double()>& loss,
                std::mt19937_64& rng, int samples = 12) {
  std::vector<double> num, ana;
  for (int s = 0; s < samples; ++s) {
    const size_t i = x.size() <= size_t(samples) ? size_t(s) % x.size() : size_t(rng() % x.size());
    const double x0 = x[i], h = 1e-5 * std::max(1.0, std::abs(x0));
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    num.push_back((lp - lm) / (2 * h));
    ana.push_back(g[i]);
  }
  return test::rel_err(ana, num);
}

// loss = Σ w ⊙ layer(x) for a fixed random w; checks the input, every parameter (and the
// Mamba-3 test below does the same and also checks the carried-in state).
void check_layer(GradLayer<double>& layer, LayerParams& p, int64_t d_model, const std::vector<int64_t>& cu,
                 std::mt19937_64& rng) {
  const int64_t n = cu.back();
  std::vector<double> x(size_t(n * d_model)), w(x.size()), y(x.size()), dx(x.size());
  std::normal_distribution<double> nd(0.0, 1.0);
  for (auto& a : x) a = nd(rng);
  for (auto& a : w) a = nd(rng);
  auto loss = [&] {
    layer.forward(x.data(), y.data(), cu);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += w[i] * y[i];
    return s;
  };
  loss();
  layer.backward(w.data(), dx.data());
  const std::vector<double> dx0 = dx;
  auto grads = p.g;
  EXPECT_LT(fd_check(x, dx0, loss, rng), 1e-6) << "input";
  for (auto& [name, v] : p.v) EXPECT_LT(fd_check(v, grads[name], loss, rng), 1e-6) << name;
}

Mamba3Config mamba3_cfg(bool mimo, bool outproj_norm, int64_t d_model) {
  Mamba3Config c;
  c.d_state = 8, c.headdim = 3, c.expand = 2, c.ngroups = 2, c.chunk_size = 4;
  c.is_mimo = mimo, c.mimo_rank = 2, c.is_outproj_norm = outproj_norm, c.rope_fraction = 0.5;
  c.d_inner = c.expand * d_model, c.nheads = c.d_inner / c.headdim, c.n_angles = 2;
  return c;
}

void check_mamba3(bool mimo, bool outproj_norm) {
  std::mt19937_64 rng(mimo * 2 + outproj_norm + 1);
  const int64_t d_model = 6;
  const Mamba3Config c = mamba3_cfg(mimo, outproj_norm, d_model);
  LayerParams p(mamba3_param_specs(c, d_model, 2), rng);
  train::Mamba3Grad<double> layer(c, d_model, p.refs());
  const std::vector<int64_t> cu = {0, 11, 13};  // a sequence over three chunks, a short one
  std::normal_distribution<double> nd(0.0, 0.5);
  layer.state_in.resize(size_t(2 * layer.state_size()));
  for (auto& a : layer.state_in) a = nd(rng);
  const int64_t n = cu.back();
  std::vector<double> x(size_t(n * d_model)), w(x.size()), y(x.size()), dx(x.size());
  for (auto& a : x) a = nd(rng);
  for (auto& a : w) a = nd(rng);
  auto loss = [&] {
    layer.forward(x.data(), y.data(), cu);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += w[i] * y[i];
    return s;
  };
  loss();
  layer.backward(w.data(), dx.data());
  const std::vector<double> dstate = layer.d_state_in;
  auto grads = p.g;
  EXPECT_LT(fd_check(x, dx, loss, rng), 1e-6) << "input";
  for (auto& [name, v] : p.v) EXPECT_LT(fd_check(v, grads[name], loss, rng), 1e-6) << name;
  EXPECT_LT(fd_check(layer.state_in, dstate, loss, rng, 40), 1e-6) << "carried-in state";
}

TEST(TrainGrad, Mamba3SisoMatchesFiniteDifferences) { check_mamba3(false, false); }
TEST(TrainGrad, Mamba3SisoOutprojNormMatchesFiniteDifferences) { check_mamba3(false, true); }
TEST(TrainGrad, Mamba3MimoMatchesFiniteDifferences) { check_mamba3(true, false); }
TEST(TrainGrad, Mamba3MimoOutprojNormMatchesFiniteDifferences) { check_mamba3(true, true); }

// Every Mamba-2 option the math reads: biases, D per channel or head, the d_mlp branch, the gated
// norm before or after the gate, per group or over d_ssm, or no norm; chunks of 3 tokens.
TEST(TrainGrad, Mamba2MatchesFiniteDifferences) {
  std::mt19937_64 rng(11);
  const int64_t d_model = 6;
  for (int variant = 0; variant < 4; ++variant) {
    Mamba2Config c;
    c.d_state = 4, c.d_conv = 3, c.headdim = 3, c.ngroups = 2, c.chunk_size = 3, c.bias = variant != 0;
    c.d_inner = 12, c.d_ssm = 6, c.nheads = 2;
    c.D_has_hdim = variant == 1, c.norm_before_gate = variant == 2, c.norm_per_group = variant != 3;
    c.rmsnorm = variant != 1;
    LayerParams p(mamba2_param_specs(c, d_model, 2), rng);
    auto layer = train::make_mamba2_grad<double>(c, d_model, p.refs());
    check_layer(*layer, p, d_model, {0, 8, 10}, rng);
  }
}

// Mamba-1 with and without biases and FalconMamba's δ/B/C norms; a sequence past one chunk (64).
TEST(TrainGrad, Mamba1MatchesFiniteDifferences) {
  std::mt19937_64 rng(12);
  const int64_t d_model = 5;
  for (int variant = 0; variant < 2; ++variant) {
    Mamba1Config c;
    c.d_state = 3, c.d_conv = 3, c.dt_rank = 2, c.d_inner = 7, c.bias = variant == 1, c.bcdt_rmsnorm = variant == 1;
    LayerParams p(mamba1_param_specs(c, d_model, 2), rng);
    auto layer = train::make_mamba1_grad<double>(c, d_model, p.refs());
    check_layer(*layer, p, d_model, {0, 70, 75}, rng);
  }
}

TEST(TrainGrad, AttentionMatchesFiniteDifferences) {
  std::mt19937_64 rng(7);
  AttnConfig c;
  c.num_heads = 4, c.num_heads_kv = 2, c.head_dim = 6, c.causal = true, c.rotary_emb_dim = 4;
  const int64_t d_model = 10;
  for (bool interleaved : {false, true}) {
    c.rotary_emb_interleaved = interleaved;
    LayerParams p(attention_param_specs(c, d_model, 2), rng);
    auto layer = train::make_attention_grad<double>(c, d_model, p.refs());
    check_layer(*layer, p, d_model, {0, 7, 12}, rng);
  }
}

TEST(TrainGrad, GatedMlpMatchesFiniteDifferences) {
  std::mt19937_64 rng(8);
  const int64_t d_model = 7, hidden = 9;
  LayerParams p(gated_mlp_param_specs(d_model, hidden, 2), rng);
  auto layer = train::make_gated_mlp_grad<double>(d_model, hidden, p.refs());
  check_layer(*layer, p, d_model, {0, 5}, rng);
}

// The whole model: embedding, norms (RMSNorm and LayerNorm), untied lm_head, cross-entropy with
// ignored positions.
TEST(TrainGrad, ModelMatchesFiniteDifferences) {
  for (bool rms : {true, false}) {
    ModelConfig c;
    c.d_model = 12, c.d_intermediate = 8, c.n_layer = 2, c.vocab_size = 13, c.tie_embeddings = false;
    c.rms_norm = rms;
    c.ssm_kind = MixerKind::Mamba3;
    c.ssm = mamba3_cfg(false, false, c.d_model);
    c.attn_layer_idx = {1};
    c.attn.num_heads = 2, c.attn.num_heads_kv = 1, c.attn.head_dim = 6, c.attn.causal = true;
    Model m = Model::init(c, 3);
    train::GradModel<double> g(c, m.parameters());
    std::mt19937_64 rng(9);
    std::normal_distribution<double> nd(0.0, 0.05);
    for (auto& v : g.values)
      for (auto& a : v) a += nd(rng);
    const std::vector<int32_t> tokens = {1, 5, 2, 9, 12, 0, 3, 3, 7};
    const std::vector<int32_t> targets = {5, 2, 9, 12, -1, 3, 3, 7, -1};
    const std::vector<int64_t> cu = {0, 5, 9};
    g.zero_grad();
    g.forward_backward(tokens, cu, targets);
    auto grads = g.grads;
    auto loss = [&] { return g.forward_backward(tokens, cu, targets, 0, false); };
    for (size_t i = 0; i < g.values.size(); ++i) EXPECT_LT(fd_check(g.values[i], grads[i], loss, rng, 6), 1e-6) << g.names[i];
  }
}

// The reference's float64 autograd gradients (golden README: within 1e-4 relative).
TEST(TrainGrad, GoldenMamba3SisoHybridGradients) {
  Model m = Model::load(test::golden("mamba3_siso_hybrid"));
  SafetensorsFile gf = SafetensorsFile::open(test::golden("mamba3_siso_hybrid/golden.safetensors"));
  const Tensor ids = gf.get("input_ids");
  const int64_t B = ids.shape[0], L = ids.shape[1];
  const std::vector<int32_t> tokens = test::token_ids(ids);
  std::vector<int32_t> targets(tokens.size(), -1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < L; ++t) targets[size_t(b * L + t)] = tokens[size_t(b * L + t + 1)];
  std::vector<int64_t> cu;
  for (int64_t b = 0; b <= B; ++b) cu.push_back(b * L);
  const double ref_loss = test::to_f64(gf.get("loss"))[0];
  auto check_model = [&](auto& g, double tol) {
    const double loss = g.forward_backward(tokens, cu, targets);
    EXPECT_NEAR(loss, ref_loss, 1e-6 * ref_loss);
    for (size_t i = 0; i < g.names.size(); ++i) {
      const auto ref = test::to_f64(gf.get("grad." + g.names[i]));
      EXPECT_LT(test::rel_err(g.grads[i], ref), tol) << g.names[i];
    }
  };
  train::GradModel<double> g64(m.config(), m.parameters());
  check_model(g64, 1e-5);
  train::GradModel<float> g32(m.config(), m.parameters());
  check_model(g32, 1e-4);
}

// The training forward is the model of the specs: its loss on the other golden checkpoints equals
// the cross-entropy of the reference's float64 logits.
TEST(TrainGrad, TrainingForwardMatchesGoldenLogits) {
  // hf_falconmamba: Mamba-1 with δ/B/C norms, float32 reference logits (hence the wider bound).
  const std::vector<std::tuple<const char*, const char*, double>> cases = {
      {"mamba3_mimo_hybrid", "logits_f64", 1e-6}, {"mamba2_hybrid", "logits_f64", 1e-6},
      {"mamba1_model", "logits_f64", 1e-6}, {"hf_mamba2", "logits", 1e-5}, {"hf_falconmamba", "logits", 1e-5}};
  for (const auto& [dir, key, tol] : cases) {
    Model m = Model::load(test::golden(dir));
    SafetensorsFile gf = SafetensorsFile::open(test::golden(std::string(dir) + "/golden.safetensors"));
    const std::vector<int32_t> tokens = test::token_ids(gf.get("input_ids"));
    const std::vector<double> logits = test::to_f64(gf.get(key));
    const int64_t B = gf.get("input_ids").shape[0], L = gf.get("input_ids").shape[1], V = m.config().vocab_padded();
    std::vector<int32_t> targets(tokens.size(), -1);
    std::vector<int64_t> cu = {0};
    double ref = 0;
    for (int64_t b = 0; b < B; ++b) {
      cu.push_back((b + 1) * L);
      for (int64_t t = 0; t + 1 < L; ++t) {
        const size_t i = size_t(b * L + t);
        targets[i] = tokens[i + 1];
        double mx = -1e300, sum = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, logits[i * size_t(V) + size_t(v)]);
        for (int64_t v = 0; v < V; ++v) sum += std::exp(logits[i * size_t(V) + size_t(v)] - mx);
        ref += std::log(sum) + mx - logits[i * size_t(V) + size_t(targets[i])];
      }
    }
    ref /= double(B * (L - 1));
    train::GradModel<double> g(m.config(), m.parameters());
    EXPECT_NEAR(g.forward_backward(tokens, cu, targets, 0, false), ref, tol * ref) << dir;
  }
}

}  // namespace
}  // namespace m3
