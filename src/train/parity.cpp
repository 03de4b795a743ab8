// The running-parity task (parity.h): random bit rows, targets the running XOR, AdamW on a
// constant learning rate after a short warmup; accuracy = argmax over the two bit logits.
#include "train/parity.h"

#include <nlohmann/json.hpp>

#include "m3/error.h"
#include "m3/model.h"
#include "train/grad_model.h"
#include "train/optimizer.h"

namespace m3::train {

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// rows × len random bits and their running parities, packed (one sequence per row).
void make_batch(uint64_t& rng, int64_t rows, int64_t len, std::vector<int32_t>& tokens, std::vector<int32_t>& targets,
                std::vector<int64_t>& cu) {
  tokens.clear(), targets.clear(), cu.assign(1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t parity = 0;
    for (int64_t t = 0; t < len; ++t) {
      const int32_t bit = int32_t(splitmix64(rng) & 1);
      parity ^= bit;
      tokens.push_back(bit);
      targets.push_back(parity);
    }
    cu.push_back(int64_t(tokens.size()));
  }
}

ModelConfig parity_config(const std::string& mixer) {
  nlohmann::json ssm;
  if (mixer == "mamba3" || mixer == "mamba3-norope")
    ssm = {{"layer", "Mamba3"}, {"d_state", 32}, {"headdim", 16}, {"expand", 2}, {"chunk_size", 64}};
  else if (mixer == "mamba2")
    ssm = {{"layer", "Mamba2"}, {"d_state", 32}, {"headdim", 16}, {"expand", 2}, {"d_conv", 4}, {"chunk_size", 64}};
  else
    throw Error("parity: unknown mixer '" + mixer + "' (mamba3, mamba3-norope, mamba2)");
  const nlohmann::json j = {{"d_model", 64}, {"n_layer", 2}, {"vocab_size", 2}, {"d_intermediate", 0},
                            {"ssm_cfg", ssm}, {"tie_embeddings", true}};
  return parse_model_config(j, "parity " + mixer);
}

}  // namespace

std::vector<double> run_parity(const ParityOptions& o, const std::function<void(int64_t, double)>& report) {
  const ModelConfig cfg = parity_config(o.mixer);
  GradModel<float> g(cfg, Model::init(cfg, o.seed).parameters());
  // mamba3-norope: the in_proj rows that produce the angle rates stay zero (ω = π·tanh(0) = 0,
  // so θ = 0 and nothing rotates): zeroed at the start and their gradients zeroed every step.
  std::vector<std::pair<size_t, std::pair<int64_t, int64_t>>> frozen;  // parameter, element range
  if (o.mixer == "mamba3-norope") {
    const Mamba3Config& m = std::get<Mamba3Config>(cfg.ssm);
    const int64_t first_row = m.in_proj_dim() - m.n_angles;
    for (size_t i = 0; i < g.names.size(); ++i)
      if (g.names[i].ends_with("mixer.in_proj.weight"))
        frozen.push_back({i, {first_row * cfg.d_model, m.in_proj_dim() * cfg.d_model}});
  }
  auto zero_frozen = [&](std::vector<std::vector<float>>& v) {
    for (const auto& [i, r] : frozen) std::fill(v[i].begin() + r.first, v[i].begin() + r.second, 0.0f);
  };
  zero_frozen(g.values);
  AdamW opt(g.names, g.values, {0.9, 0.95, 1e-8, 0.0});
  LrSchedule sched{Schedule::Constant, o.lr, 1.0, std::min<int64_t>(100, o.steps / 10), o.steps, 0.2};
  uint64_t rng = o.seed * 7919 + 1;
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> cu;
  for (int64_t s = 0; s < o.steps; ++s) {
    make_batch(rng, o.batch, o.train_len, tokens, targets, cu);
    g.zero_grad();
    const double loss = g.forward_backward(tokens, cu, targets);
    zero_frozen(g.grads);
    clip_grad_norm(g.grads, 1.0);
    opt.update(g.values, g.grads, sched.at(s));
    if (report) report(s + 1, loss);
  }
  std::vector<double> acc;
  uint64_t eval_rng = o.seed * 104729 + 12345;
  const int64_t V = cfg.vocab_padded();
  for (int64_t len : o.eval_lens) {
    int64_t right = 0, total = 0;
    for (int64_t done = 0; done < o.eval_seqs; done += 8) {
      make_batch(eval_rng, std::min<int64_t>(8, o.eval_seqs - done), len, tokens, targets, cu);
      g.forward_backward(tokens, cu, targets, 0, false);
      const auto& l = g.logits();
      for (size_t t = 0; t < tokens.size(); ++t, ++total) right += (l[t * size_t(V) + 1] > l[t * size_t(V)]) == (targets[t] == 1);
    }
    acc.push_back(double(right) / double(total));
  }
  return acc;
}

}  // namespace m3::train
