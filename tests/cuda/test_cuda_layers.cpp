// Every layer kind on the CUDA backend against the same layer on the CPU backend, built from the
// same random ParamMap (the CPU one with the matrices rounded to bf16 when the CUDA one keeps them
// in bf16): Mamba-3 (SISO, MIMO ranks 2 and 4, out-proj norm, groups, both rope fractions, A floor),
// Mamba-2 (groups, d_ssm < d_inner, no norm, norm before gate, Hugging Face's norm over all groups,
// D per channel, biases, dt limits), Mamba-1 (biases, dt rank, FalconMamba's norms), MHA (GQA,
// rotary rotate-half / interleaved / partial, conv, MLP branch, biases, causal or not, a scale)
// GatedMLP, the hybrids' squared-ReLU MLP and Zamba2's hybrid layer (attention from 2·d to d, GELU-gated
// MLP, Mamba-2), at odd sizes and at the 130M presets' shapes, in F32 and BF16.
//
// Each test draws fresh parameters, carried-in states (random values in every buffer, KV caches
// with random past rows; one sequence fresh) and a packed batch of lengths 0, 1, 3, 7, c, c + 1,
// 2c + 2 and a random one (c the chunk), then:
// - forward on both: outputs and final states agree; a sequence of length 0 is left exactly as it
//   was. The CUDA states live in one pool across calls, the sequences in scattered slots between
//   decoy slots of random state that no call may touch;
// - a few steps of every sequence on both: outputs and states agree;
// - on CUDA, each sequence prefilled for k tokens (k around the chunk) then stepped to its end
//   equals the forward over all of it (causal layers).
// F32 within 1e-4 and BF16 within 2e-2 of each row's largest value (test::rows_near; states as
// test::state_rows groups them, and see StateCheck for the Mamba-3 states under BF16).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_testing.h"
#include "layer_states.h"
#include "layer_steps.h"
#include "m3/config.h"
#include "model/layer_parts.h"
#include "model/specs.h"
#include "model/state_pool.h"

namespace m3 {
namespace {

using test::rows_near;

enum class Kind { Mamba3, Mamba2, Mamba1, Attention, GatedMlp, Mlp, Zamba2 };

struct Case {
  std::string name;
  Kind kind;
  int64_t d_model;
  // ssm_cfg (Mamba), attn_cfg (MHA), {"hidden": n} (GatedMLP), {"hidden", "bias"} (MLP), {"attn_cfg",
  // "ssm_cfg" (Mamba-2), "hidden"} (Zamba2)
  nlohmann::json cfg;
  // What the reference format cannot express, set after parsing.
  double bcdt_rms_eps = 0;  // > 0: Mamba-1 with FalconMamba's norms on δ, B and C (this epsilon)
  bool hf_norm = false;     // Mamba-2's gated norm over all of d_ssm with epsilon 1e-6 (Hugging Face)
};

void PrintTo(const Case& k, std::ostream* os) { *os << k.name; }

// A case's layer: its config parsed like a checkpoint's (so that every derived size is the
// engine's), its parameters and how a backend builds it.
struct LayerDef {
  Kind kind;
  int64_t d_model;
  Mamba3Config m3;
  Mamba2Config m2;
  Mamba1Config m1;
  AttnConfig attn;
  int64_t hidden = 0;
  MlpConfig mlp;
  ModelConfig zamba2;  // its attn, ssm (m2 too) and zamba2_mlp_hidden

  // Input rows' width: Zamba2's hybrid layer reads [h | e] rows; every other layer d_model.
  int64_t d_in() const { return kind == Kind::Zamba2 ? 2 * d_model : d_model; }

  std::vector<ParamSpec> specs() const {
    switch (kind) {
      case Kind::Mamba3: return mamba3_param_specs(m3, d_model, 2);
      case Kind::Mamba2: return mamba2_param_specs(m2, d_model, 2);
      case Kind::Mamba1: return mamba1_param_specs(m1, d_model, 2);
      case Kind::Attention: return attention_param_specs(attn, d_model, 2);
      case Kind::GatedMlp: return gated_mlp_param_specs(d_model, hidden, 2);
      case Kind::Mlp: return mlp_param_specs(mlp, d_model, 2);
      case Kind::Zamba2: {
        // The layer's own parameters, then its Mamba-2 input norm's under "ssm_norm." (make splits them).
        std::vector<ParamSpec> s = zamba2_hybrid_param_specs(zamba2);
        s.push_back({"ssm_norm.weight", {d_model}, [](float* v, int64_t n, std::mt19937_64&) { std::fill_n(v, n, 1.0f); }});
        return s;
      }
    }
    return {};
  }
  std::unique_ptr<Layer> make(Backend& be, ParamMap p) const {
    switch (kind) {
      case Kind::Mamba3: return be.make_mamba3(m3, d_model, std::move(p));
      case Kind::Mamba2: return be.make_mamba2(m2, d_model, std::move(p));
      case Kind::Mamba1: return be.make_mamba1(m1, d_model, std::move(p));
      case Kind::Attention: return be.make_attention(attn, d_model, std::move(p));
      case Kind::GatedMlp: return be.make_gated_mlp(d_model, hidden, std::move(p));
      case Kind::Mlp: return be.make_mlp(mlp, d_model, std::move(p));
      case Kind::Zamba2: {
        ParamMap norm = params_under(p, "ssm_norm.");
        p.erase("ssm_norm.weight");
        return be.make_zamba2_hybrid(zamba2, std::move(p), std::move(norm));
      }
    }
    return nullptr;
  }
  // The length whose neighbourhood the batch probes: the scan's chunk, else 64.
  int64_t chunk() const {
    if (kind == Kind::Mamba3) return m3.chunk_size;
    if (kind == Kind::Mamba2 || kind == Kind::Zamba2) return m2.chunk_size;
    return 64;
  }
};

LayerDef define(const Case& k) {
  LayerDef d{k.kind, k.d_model, {}, {}, {}, {}, 0, {}, {}};
  if (k.kind == Kind::GatedMlp) {
    d.hidden = k.cfg.at("hidden").get<int64_t>();
    return d;
  }
  if (k.kind == Kind::Mlp) {
    d.mlp = {k.cfg.at("hidden").get<int64_t>(), k.cfg.at("bias").get<bool>()};
    return d;
  }
  nlohmann::json j = {{"d_model", k.d_model}, {"n_layer", 2}, {"vocab_size", 16}};
  if (k.kind == Kind::Zamba2) {
    // The attention and Mamba-2 configs as a model of one of each parses them; the attention's
    // sizes are given (its input is 2·d_model wide, not the parsed model's d_model).
    j["attn_layer_idx"] = {0};
    j["attn_cfg"] = k.cfg.at("attn_cfg");
    j["ssm_cfg"] = k.cfg.at("ssm_cfg");
    j["ssm_cfg"]["layer"] = "Mamba2";
    d.zamba2 = parse_model_config(j, "test config " + k.name);
    d.zamba2.zamba2_mlp_hidden = k.cfg.at("hidden").get<int64_t>();
    d.m2 = std::get<Mamba2Config>(d.zamba2.ssm);
    return d;
  }
  if (k.kind == Kind::Attention) {
    j["attn_layer_idx"] = {0};
    j["attn_cfg"] = k.cfg;
  } else {
    j["ssm_cfg"] = k.cfg;
    j["ssm_cfg"]["layer"] = k.kind == Kind::Mamba3 ? "Mamba3" : k.kind == Kind::Mamba2 ? "Mamba2" : "Mamba1";
  }
  const ModelConfig c = parse_model_config(j, "test config " + k.name);
  if (k.kind == Kind::Attention) d.attn = c.attn;
  if (k.kind == Kind::Mamba3) d.m3 = std::get<Mamba3Config>(c.ssm);
  if (k.kind == Kind::Mamba2) {
    d.m2 = std::get<Mamba2Config>(c.ssm);
    if (k.hf_norm) d.m2.norm_per_group = false, d.m2.norm_eps = 1e-6;
  }
  if (k.kind == Kind::Mamba1) {
    d.m1 = std::get<Mamba1Config>(c.ssm);
    d.m1.bcdt_rmsnorm = k.bcdt_rms_eps > 0;
    if (d.m1.bcdt_rmsnorm) d.m1.bcdt_rms_eps = k.bcdt_rms_eps;
  }
  return d;
}

// Each parameter drawn by its ParamSpec's initialisation (the reference's), then moved off its
// constants so that every one of them matters: biases, D, MIMO factors and norm weights get
// noise; dt biases span dt ≈ 0.1–1.3 (the initial 0.001–0.1 would make the carried-in state
// outweigh every new token); Mamba-2's A from about −0.2 to −4.5 (at such dt its initial −1 to −16
// would forget within a token or two). Matrices and conv weights keep their random initialisation.
ParamMap random_params(const std::vector<ParamSpec>& specs, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ParamMap p;
  for (const ParamSpec& s : specs) {
    Tensor t = Tensor::zeros(DType::F32, s.shape);
    float* v = t.f32();
    const int64_t n = t.numel();
    s.init(v, n, rng);
    // The name within its mixer (Zamba2's Mamba-2 parameters are under "ssm.").
    const std::string name = s.name.starts_with("ssm.") ? s.name.substr(4) : s.name;
    const bool noise = name == "D" || name.starts_with("mimo_") || name.ends_with("norm.weight") ||
                       (name.ends_with("bias") && name != "dt_bias" && name != "dt_proj.bias");
    for (int64_t i = 0; i < n; ++i) {
      if (name == "dt_bias" || name == "dt_proj.bias") v[i] = -1.0f + 1.5f * uniform(rng);
      else if (name == "A_log" && s.shape.size() == 1) v[i] = 1.5f * uniform(rng);
      else if (name == "A_log") v[i] += 0.3f * normal(rng);
      else if (noise) v[i] += (name.ends_with("norm.weight") ? 0.3f : 0.5f) * normal(rng);
    }
    p[s.name] = t;
  }
  return p;
}

// The parameters with every matrix (a 2-D weight other than a norm's: what the CUDA backend
// uploads with upload_matrix) rounded to bf16, as the BF16 backend holds them.
ParamMap with_bf16_matrices(const ParamMap& p) {
  ParamMap r = p;
  for (auto& [name, t] : r)
    if (t.shape.size() == 2 && name.ends_with(".weight") && name.find("norm") == std::string::npos)
      t = test::rounded_to_bf16(t);
  return r;
}

bool has_kv(const LayerStateSpec& spec) {
  return std::any_of(spec.begin(), spec.end(), [](const StateBufferSpec& b) { return b.kv; });
}

// Random values in every buffer (angles in [0, 12), the SSM state N(0, 0.25), the rest N(0, 1));
// KV buffers with kv_rows past positions.
LayerState random_state(const LayerStateSpec& spec, int64_t kv_rows, std::mt19937_64& rng) {
  LayerState s = zero_layer_state(spec);
  std::uniform_real_distribution<float> angle(0.0f, 12.0f);
  for (size_t b = 0; b < spec.size(); ++b) {
    StateBuffer& buf = s.buffers[b];
    if (spec[b].kv) {
      buf.shape[0] = kv_rows;
      buf.data = test::randn(size_t(kv_rows * spec[b].row_numel()), rng);
    } else if (buf.name == "angle") {
      for (float& v : buf.data) v = angle(rng);
    } else {
      buf.data = test::randn(buf.data.size(), rng, buf.name == "ssm" ? 0.5f : 1.0f);
    }
  }
  return s;
}

// The tolerance a state buffer is compared with (rows as test::state_rows makes them). Under BF16
// the Mamba-3 angle adds up every token's rate, each from a bf16 product, and drifts by a few
// hundredths of a radian over a hundred tokens; the SSM state and the previous key are held
// rotated by that angle and drift with it (the outputs, which see only angle differences over the
// decay's reach, do not).
struct StateCheck {
  Precision prec;
  Kind kind;
  double tol(const std::string& buffer) const {
    const bool drifts = kind == Kind::Mamba3 && (buffer == "angle" || buffer == "ssm" || buffer == "k");
    return prec == Precision::BF16 && drifts ? 0.1 : test::tolerance(prec);
  }
};

// got[i] against want[i] for every sequence and buffer.
void expect_states_near(const std::vector<LayerState>& got, const std::vector<LayerState>& want, const StateCheck& sc,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].buffers.size(), want[i].buffers.size()) << what;
    for (size_t b = 0; b < want[i].buffers.size(); ++b) {
      const StateBuffer &g = got[i].buffers[b], &w = want[i].buffers[b];
      ASSERT_EQ(g.name, w.name) << what;
      ASSERT_EQ(g.shape, w.shape) << what << ", sequence " << i << ", state " << w.name;
      const auto [gv, cols] = test::state_rows(g.name, g.shape, g.data);
      EXPECT_TRUE(rows_near(gv, test::state_rows(w.name, w.shape, w.data).first, cols, sc.tol(w.name)))
          << what << ", sequence " << i << ", state " << w.name;
    }
  }
}

// A layer's states on the device as the model keeps them: one pool across calls, sequence i in a
// scattered slot (never slot i), the pool's other slots holding random decoy states that no call
// may change. pos: what each sequence consumed before (its KV rows; for a layer without KV cache
// a random count, which such a layer must ignore).
class DevicePool {
 public:
  DevicePool(std::shared_ptr<Backend> be, Layer& layer, const std::vector<LayerState>& init, int64_t kv_capacity,
             std::mt19937_64& rng)
      : be_(std::move(be)), layer_(layer), spec_(layer.state_spec()),
        pool_(be_, {spec_}, int64_t(2 * init.size() + 1), kv_capacity, false) {
    std::vector<int32_t> slots;
    for (int64_t s = 0; s < pool_.n_slots(); ++s) slots.push_back(pool_.acquire());
    // Reversed, then the decoys between: sequence i lands in slot 2(n − 1 − i) + 1.
    std::reverse(slots.begin(), slots.end());
    for (size_t s = 0; s < slots.size(); ++s) (s % 2 ? slot_ : decoy_slot_).push_back(slots[s]);
    for (size_t i = 0; i < init.size(); ++i) {
      pos_.push_back(has_kv(spec_) ? test::kv_rows(init[i], spec_) : test::random_int(rng, 0, 1000));
      pool_.write(slot_[i], 0, init[i]);
    }
    for (int32_t d : decoy_slot_) {
      decoy_.push_back(random_state(spec_, test::random_int(rng, 0, kv_capacity), rng));
      pool_.write(d, 0, decoy_.back());
    }
  }

  // x [Σ lens, d_model] packed by cu; the outputs.
  std::vector<float> forward(const std::vector<float>& x, const std::vector<int64_t>& cu) {
    std::vector<int64_t> lens;
    for (size_t i = 0; i + 1 < cu.size(); ++i) lens.push_back(cu[i + 1] - cu[i]);
    return run(x, lens, cu, [&](const float* xd, float* yd, const StateBatch& s, const int64_t* cu_dev) {
      layer_.forward(xd, yd, Packing{cu, cu_dev}, s);
    });
  }
  // One token of every sequence: x [n, d_model].
  std::vector<float> step(const std::vector<float>& x) {
    const std::vector<int64_t> lens(slot_.size(), 1);
    return run(x, lens, {}, [&](const float* xd, float* yd, const StateBatch& s, const int64_t*) {
      layer_.step(xd, yd, int64_t(slot_.size()), s);
    });
  }
  std::vector<LayerState> states() const {
    std::vector<LayerState> r;
    for (size_t i = 0; i < slot_.size(); ++i) r.push_back(pool_.read(slot_[i], 0, pos_[i]));
    return r;
  }
  ::testing::AssertionResult decoys_untouched() const {
    for (size_t d = 0; d < decoy_slot_.size(); ++d) {
      const LayerState now = pool_.read(decoy_slot_[d], 0, test::kv_rows(decoy_[d], spec_));
      for (size_t b = 0; b < now.buffers.size(); ++b)
        if (now.buffers[b].data != decoy_[d].buffers[b].data)
          return ::testing::AssertionFailure() << "decoy slot " << decoy_slot_[d]
                                               << " (no sequence of the calls) had its '" << now.buffers[b].name
                                               << "' changed";
    }
    return ::testing::AssertionSuccess();
  }

 private:
  // Runs `call` over the pool's batch with x, y, and cu (forward's offsets, or empty) on the device.
  template <class Call>
  std::vector<float> run(const std::vector<float>& x, const std::vector<int64_t>& lens, const std::vector<int64_t>& cu,
                         Call&& call) {
    for (size_t i = 0; i < slot_.size(); ++i)
      check(pos_[i] + lens[i] <= pool_.kv_capacity() || !has_kv(spec_), "DevicePool: KV capacity too small");
    const auto xd = test::to_backend(*be_, x), yd = be_->alloc(std::max<size_t>(1, x.size() * sizeof(float)));
    const auto slot_dev = test::to_backend(*be_, slot_), pos_dev = test::to_backend(*be_, pos_),
               cu_dev = test::to_backend(*be_, cu);
    const StateBatch s = pool_.batch(0, int64_t(slot_.size()), slot_.data(),
                                     static_cast<const int32_t*>(slot_dev.get()), pos_.data(),
                                     static_cast<const int64_t*>(pos_dev.get()));
    call(static_cast<const float*>(xd.get()), static_cast<float*>(yd.get()), s,
         static_cast<const int64_t*>(cu_dev.get()));
    std::vector<float> y = test::to_host<float>(*be_, yd.get(), x.size());
    for (size_t i = 0; i < slot_.size(); ++i) pos_[i] += lens[i];
    return y;
  }

  std::shared_ptr<Backend> be_;
  Layer& layer_;
  LayerStateSpec spec_;
  StatePool pool_;
  std::vector<int32_t> slot_, decoy_slot_;
  std::vector<int64_t> pos_;
  std::vector<LayerState> decoy_;
};

constexpr int kSteps = 4;

class CudaLayer : public test::CudaTestWithParam<std::tuple<Case, Precision>> {};

TEST_P(CudaLayer, ForwardAndStepMatchCpu) {
  const auto& [k, prec] = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const double tol = test::tolerance(prec);
  const StateCheck sc{prec, k.kind};

  const LayerDef def = define(k);
  const int64_t D = def.d_model, Din = def.d_in();
  // The outputs of n rows out of the layer helpers' results (sized like the input: [n, Din]).
  const auto out_rows = [&](std::vector<float> y, int64_t rows) { return (y.resize(size_t(rows * D)), y); };
  const ParamMap params = random_params(def.specs(), rng);
  const std::shared_ptr<Backend> gpu_be = test::cuda_backend(prec);
  const auto cpu_layer = def.make(*test::cpu_backend(), prec == Precision::BF16 ? with_bf16_matrices(params) : params);
  const auto gpu_layer = def.make(*gpu_be, params);
  SCOPED_TRACE(cpu_layer->describe());
  const LayerStateSpec spec = cpu_layer->state_spec(), gpu_spec = gpu_layer->state_spec();
  ASSERT_EQ(gpu_spec.size(), spec.size())
      << "the CUDA layer's state must be the CPU layer's (saved states move between them)";
  for (size_t b = 0; b < spec.size(); ++b) {
    EXPECT_EQ(gpu_spec[b].name, spec[b].name);
    EXPECT_EQ(gpu_spec[b].shape, spec[b].shape) << spec[b].name;
    EXPECT_EQ(gpu_spec[b].kv, spec[b].kv) << spec[b].name;
  }

  // The batch: around the chunk, shorter than the conv window, empty; in a random order.
  const int64_t c = def.chunk();
  std::vector<int64_t> lens = {0, 1, 3, 7, c, c + 1, 2 * c + 2, test::random_int(rng, 0, 2 * c)};
  std::shuffle(lens.begin(), lens.end(), rng);
  const size_t n = lens.size();
  std::vector<int64_t> cu = {0};
  for (int64_t L : lens) cu.push_back(cu.back() + L);
  const std::vector<float> x = test::randn(size_t(cu.back() * Din), rng);
  std::string batch = "lengths";
  for (int64_t L : lens) batch += " " + std::to_string(L);
  SCOPED_TRACE(batch);

  // Carried-in states: random in every buffer (with 1–40 past KV rows), but one sequence fresh.
  const size_t fresh = size_t(test::random_int(rng, 0, int64_t(n) - 1));
  std::vector<LayerState> init(n);
  int64_t max_pos = 0;
  for (size_t i = 0; i < n; ++i) {
    init[i] = i == fresh ? zero_layer_state(spec) : random_state(spec, test::random_int(rng, 1, 40), rng);
    max_pos = std::max(max_pos, test::kv_rows(init[i], spec));
  }

  // Forward: the CPU through layer_states.h, CUDA in one pool with scattered slots.
  std::vector<LayerState> cpu_st = init;
  const std::vector<float> y_cpu =
      out_rows(test::forward_with_states(*cpu_layer, x, Packing{cu}, test::pointers_to(cpu_st)), cu.back());
  DevicePool gpu(gpu_be, *gpu_layer, init, max_pos + 2 * c + 2 + kSteps + 1, rng);
  const std::vector<float> y_gpu = out_rows(gpu.forward(x, cu), cu.back());
  EXPECT_TRUE(rows_near(y_gpu, y_cpu, D, tol)) << "forward outputs";
  const std::vector<LayerState> after_forward = gpu.states();
  expect_states_near(after_forward, cpu_st, sc, "after the forward");
  for (size_t i = 0; i < n; ++i) {
    if (lens[i] > 0) continue;
    for (size_t b = 0; b < spec.size(); ++b)
      EXPECT_EQ(after_forward[i].buffers[b].data, init[i].buffers[b].data)
          << "a sequence of length 0 must be left as it was: state " << spec[b].name;
  }

  // Steps: every sequence one token, together.
  for (int t = 0; t < kSteps; ++t) {
    const std::vector<float> xs = test::randn(n * size_t(Din), rng);
    const std::vector<float> ys_cpu = out_rows(test::step_with_states(*cpu_layer, xs, test::pointers_to(cpu_st)), int64_t(n));
    EXPECT_TRUE(rows_near(out_rows(gpu.step(xs), int64_t(n)), ys_cpu, D, tol)) << "step " << t;
  }
  expect_states_near(gpu.states(), cpu_st, sc, "after the steps");
  EXPECT_TRUE(gpu.decoys_untouched());

  // On CUDA alone: each sequence prefilled for k tokens, then stepped through the rest (with the
  // fresh pools of layer_states.h), equals the forward over all of it. Not for non-causal MHA,
  // whose queries see every key of their call: splitting the call changes what they see.
  if (k.kind == Kind::Attention && !def.attn.causal) return;
  std::vector<int64_t> cu_head = {0}, cu_tail = {0};
  std::vector<float> x_head, x_tail;
  std::string split = "prefill k of";
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int64_t> ks = {0, 1, c - 1, c, c + 1, lens[i] / 2, lens[i] - 1, lens[i]};
    const int64_t kk = std::clamp<int64_t>(ks[size_t(test::random_int(rng, 0, int64_t(ks.size()) - 1))], 0, lens[i]);
    split += " " + std::to_string(kk) + "/" + std::to_string(lens[i]);
    x_head.insert(x_head.end(), x.begin() + cu[i] * Din, x.begin() + (cu[i] + kk) * Din);
    x_tail.insert(x_tail.end(), x.begin() + (cu[i] + kk) * Din, x.begin() + cu[i + 1] * Din);
    cu_head.push_back(cu_head.back() + kk);
    cu_tail.push_back(cu_tail.back() + lens[i] - kk);
  }
  SCOPED_TRACE(split);
  std::vector<LayerState> split_st = init;
  const std::vector<float> y_head = out_rows(
      test::forward_with_states(*gpu_layer, x_head, Packing{cu_head}, test::pointers_to(split_st), gpu_be),
      cu_head.back());
  const std::vector<float> y_tail = test::step_packed(*gpu_layer, x_tail, cu_tail, D, split_st, gpu_be);
  std::vector<float> y_split;
  for (size_t i = 0; i < n; ++i) {
    y_split.insert(y_split.end(), y_head.begin() + cu_head[i] * D, y_head.begin() + cu_head[i + 1] * D);
    y_split.insert(y_split.end(), y_tail.begin() + cu_tail[i] * D, y_tail.begin() + cu_tail[i + 1] * D);
  }
  EXPECT_TRUE(rows_near(y_split, y_gpu, D, tol)) << "prefill then step against the forward";
  expect_states_near(split_st, after_forward, sc, "prefill then step against the forward");
}

std::vector<Case> all_cases() {
  using json = nlohmann::json;
  return {
      // Mamba-3 (spec/mamba3.md).
      {"Mamba3_Siso", Kind::Mamba3, 64, json{{"d_state", 32}, {"headdim", 16}, {"chunk_size", 64}}},
      {"Mamba3_SisoOddRopeFullGroups2", Kind::Mamba3, 40,
       json{{"d_state", 21}, {"headdim", 10}, {"ngroups", 2}, {"rope_fraction", 1.0}, {"chunk_size", 16}}},
      {"Mamba3_SisoOutprojNormGroups4AFloor", Kind::Mamba3, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"ngroups", 4}, {"is_outproj_norm", true}, {"A_floor", 0.5},
            {"chunk_size", 64}}},
      {"Mamba3_MimoRank2", Kind::Mamba3, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"is_mimo", true}, {"mimo_rank", 2}, {"chunk_size", 16}}},
      {"Mamba3_MimoRank4OutprojNormGroups2RopeFull", Kind::Mamba3, 48,
       json{{"d_state", 20}, {"headdim", 12}, {"ngroups", 2}, {"rope_fraction", 1.0}, {"is_outproj_norm", true},
            {"is_mimo", true}, {"mimo_rank", 4}, {"chunk_size", 16}}},
      // 72 heads × 8 sequences: enough blocks that the decode step takes its narrow-block path
      // (src/cuda/mamba3_step.cu), which smaller batches never reach.
      {"Mamba3_SisoManyHeadsNarrowStep", Kind::Mamba3, 1152, json{{"d_state", 64}, {"headdim", 32}, {"chunk_size", 64}}},
      {"Mamba3_MimoRank2ManyHeadsNarrowStep", Kind::Mamba3, 1152,
       json{{"d_state", 32}, {"headdim", 32}, {"is_mimo", true}, {"mimo_rank", 2}, {"chunk_size", 32}}},
      {"Mamba3_Siso130mShape", Kind::Mamba3, 128, json{{"d_state", 128}, {"headdim", 64}, {"chunk_size", 64}}},
      // d_state 256: each lane of the decode step owns several vectors of a row, so its next loads
      // move along the row before the next rows (src/cuda/mamba3_step.cu, pipelined at rank ≤ 2),
      // which d_state ≤ 128 never does; rank 4 is not pipelined.
      {"Mamba3_SisoState256", Kind::Mamba3, 64, json{{"d_state", 256}, {"headdim", 64}, {"chunk_size", 64}}},
      {"Mamba3_MimoRank4State256", Kind::Mamba3, 64,
       json{{"d_state", 256}, {"headdim", 64}, {"is_mimo", true}, {"mimo_rank", 4}, {"chunk_size", 16}}},
      // Headdim 64 with d_state 64 and 32: the other shapes of the bf16 tensor-core prefill
      // (src/cuda/mamba3_chunk_scan_bf16.cu), which the BF16 runs take.
      {"Mamba3_SisoHeaddim64State64RopeFullGroups2OutprojNorm", Kind::Mamba3, 128,
       json{{"d_state", 64}, {"headdim", 64}, {"ngroups", 2}, {"rope_fraction", 1.0}, {"is_outproj_norm", true},
            {"chunk_size", 64}}},
      {"Mamba3_MimoRank2Headdim64State32", Kind::Mamba3, 64,
       json{{"d_state", 32}, {"headdim", 64}, {"is_mimo", true}, {"mimo_rank", 2}, {"chunk_size", 32}}},
      {"Mamba3_MimoRank4_130mShape", Kind::Mamba3, 128,
       json{{"d_state", 128}, {"headdim", 64}, {"is_mimo", true}, {"mimo_rank", 4}, {"chunk_size", 16}}},
      // Mamba-2 (spec/mamba2.md).
      {"Mamba2_Base", Kind::Mamba2, 64, json{{"d_state", 32}, {"headdim", 16}, {"chunk_size", 64}}},
      {"Mamba2_Groups2NormBeforeGate", Kind::Mamba2, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"ngroups", 2}, {"norm_before_gate", true}, {"chunk_size", 64}}},
      {"Mamba2_DssmNoNormNoConvBias", Kind::Mamba2, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"d_ssm", 64}, {"rmsnorm", false}, {"conv_bias", false},
            {"chunk_size", 64}}},
      {"Mamba2_HfNormOverAllGroups", Kind::Mamba2, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"ngroups", 2}, {"chunk_size", 64}}, 0, true},
      {"Mamba2_DssmDHdimBiasDtLimitNormBeforeGate", Kind::Mamba2, 64,
       json{{"d_state", 32}, {"headdim", 16}, {"ngroups", 2}, {"d_ssm", 96}, {"D_has_hdim", true}, {"bias", true},
            {"dt_limit", {0.2, 0.9}}, {"norm_before_gate", true}, {"chunk_size", 64}}},
      {"Mamba2_OddConv3Groups4", Kind::Mamba2, 40,
       json{{"d_state", 21}, {"headdim", 10}, {"d_conv", 3}, {"ngroups", 4}, {"chunk_size", 16}}},
      {"Mamba2_130mShape", Kind::Mamba2, 128, json{{"d_state", 128}, {"headdim", 64}, {"chunk_size", 256}}},
      // Headdim 64 with d_state 64 and 32 (and 128 above): the shapes whose BF16 prefill runs on
      // tensor cores (src/cuda/ssd_chunk_scan_bf16.cu), with groups, dt_limit, the d_mlp branch.
      {"Mamba2_Headdim64State64Groups2DtLimitNormBeforeGate", Kind::Mamba2, 128,
       json{{"d_state", 64}, {"headdim", 64}, {"ngroups", 2}, {"dt_limit", {0.01, 0.5}}, {"norm_before_gate", true},
            {"chunk_size", 64}}},
      {"Mamba2_Headdim64State32DssmBias", Kind::Mamba2, 128,
       json{{"d_state", 32}, {"headdim", 64}, {"d_ssm", 128}, {"bias", true}, {"chunk_size", 64}}},
      // Mamba-1 (spec/mamba1.md).
      {"Mamba1_Base", Kind::Mamba1, 64, json{{"d_state", 16}, {"d_conv", 4}}},
      {"Mamba1_OddBiasNoConvBiasConv3DtRank5", Kind::Mamba1, 37,
       json{{"d_state", 7}, {"d_conv", 3}, {"dt_rank", 5}, {"bias", true}, {"conv_bias", false}}},
      {"Mamba1_BcdtRmsNorm", Kind::Mamba1, 48, json{{"d_state", 8}, {"d_conv", 4}}, 0.05},
      {"Mamba1_130mShape", Kind::Mamba1, 768, json{{"d_state", 16}, {"d_conv", 4}}},
      // MHA (spec/model.md §4); any head_dim up to 256 (the checkpoint's head_dim is d_model / num_heads).
      {"Attn_MhaCausal", Kind::Attention, 64,
       json{{"num_heads", 4}, {"head_dim", 16}, {"causal", true}, {"qkv_proj_bias", false}, {"out_proj_bias", false}}},
      {"Attn_GqaRotateHalfPartial", Kind::Attention, 64,
       json{{"num_heads", 8}, {"num_heads_kv", 2}, {"head_dim", 16}, {"causal", true}, {"rotary_emb_dim", 8}}},
      {"Attn_GqaInterleavedFullConvMlpBiases", Kind::Attention, 48,
       json{{"num_heads", 4}, {"num_heads_kv", 1}, {"head_dim", 24}, {"causal", true}, {"rotary_emb_dim", 24},
            {"rotary_emb_interleaved", true}, {"rotary_emb_base", 500}, {"d_conv", 4}, {"mlp_dim", 256},
            {"qkv_proj_bias", true}, {"out_proj_bias", true}}},
      {"Attn_NonCausalInterleavedPartialScale", Kind::Attention, 37,
       json{{"num_heads", 3}, {"head_dim", 8}, {"causal", false}, {"rotary_emb_dim", 6},
            {"rotary_emb_interleaved", true}, {"softmax_scale", 0.3}, {"qkv_proj_bias", true},
            {"out_proj_bias", false}}},
      {"Attn_OddHeadDimGqa", Kind::Attention, 74,
       json{{"num_heads", 2}, {"num_heads_kv", 1}, {"causal", true}, {"rotary_emb_dim", 10}}},
      {"Attn_HeadDim200", Kind::Attention, 200,
       json{{"num_heads", 1}, {"causal", true}, {"rotary_emb_dim", 64}, {"qkv_proj_bias", false}}},
      {"Attn_130mHybridShape", Kind::Attention, 768,
       json{{"num_heads", 12}, {"head_dim", 64}, {"causal", true}, {"rotary_emb_dim", 32}, {"qkv_proj_bias", false},
            {"out_proj_bias", false}}},
      // GatedMLP (spec/model.md §3).
      {"GatedMlp", Kind::GatedMlp, 64, json{{"hidden", 128}}},
      {"GatedMlp_Odd", Kind::GatedMlp, 37, json{{"hidden", 100}}},
      {"GatedMlp_130mShape", Kind::GatedMlp, 768, json{{"hidden", 2048}}},
      // The hybrids' squared-ReLU MLP (transformers' NemotronHMLP).
      {"Mlp_Relu2", Kind::Mlp, 64, json{{"hidden", 160}, {"bias", false}}},
      {"Mlp_Relu2OddBias", Kind::Mlp, 37, json{{"hidden", 101}, {"bias", true}}},
      // Zamba2's hybrid layer (transformers' Zamba2HybridLayer): attention over [h | e] (2·d = 80 wide,
      // GQA, rotary, a scale) into d = 40, GELU-gated MLP, linear, Mamba-2 with groups and a δ floor.
      {"Zamba2_Hybrid", Kind::Zamba2, 40,
       json{{"attn_cfg",
             {{"num_heads", 4}, {"num_heads_kv", 2}, {"head_dim", 20}, {"causal", true}, {"rotary_emb_dim", 20},
              {"softmax_scale", 0.3}, {"qkv_proj_bias", false}, {"out_proj_bias", false}}},
            {"ssm_cfg", {{"d_state", 16}, {"headdim", 10}, {"ngroups", 2}, {"dt_limit", {0.2, 1e9}}, {"chunk_size", 16}}},
            {"hidden", 72}}},
  };
}

INSTANTIATE_TEST_SUITE_P(AllKinds, CudaLayer,
                         ::testing::Combine(::testing::ValuesIn(all_cases()),
                                            ::testing::Values(Precision::F32, Precision::BF16)),
                         [](const ::testing::TestParamInfo<std::tuple<Case, Precision>>& i) {
                           return std::get<0>(i.param).name + "_" + test::precision_name(std::get<1>(i.param));
                         });

}  // namespace
}  // namespace m3
