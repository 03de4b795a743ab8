// The running-parity task (parity.h): random bit rows, targets the running XOR, AdamW on warmup
// + cosine decay; accuracy = argmax over the two bit logits. The parameters kept are those of the
// best held-out check at the training length, so a late loss spike cannot decide the result.
#include "train/parity.h"

#include <algorithm>
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

struct Score {
  double accuracy, loss;
};

// Accuracy over every position of `seqs` fresh sequences of length len drawn from rng, and the
// mean cross-entropy.
Score score(GradModel<float>& g, uint64_t& rng, int64_t seqs, int64_t len) {
  const int64_t V = g.config().vocab_padded();
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> cu;
  int64_t right = 0, total = 0;
  double loss = 0;
  for (int64_t done = 0; done < seqs; done += 8) {
    make_batch(rng, std::min<int64_t>(8, seqs - done), len, tokens, targets, cu);
    loss += g.forward_backward(tokens, cu, targets, double(seqs * len), false);
    const auto& l = g.logits();
    for (size_t t = 0; t < tokens.size(); ++t, ++total) right += (l[t * size_t(V) + 1] > l[t * size_t(V)]) == (targets[t] == 1);
  }
  return {double(right) / double(total), loss};
}

}  // namespace

ParityResult run_parity(const ParityOptions& o, const std::function<void(const ParityStep&)>& report,
                        const std::function<void(int64_t, double, double)>& on_check) {
  check(o.steps > 0 && o.batch > 0 && o.train_len > 0 && o.eval_seqs > 0 && o.check_every > 0,
        "parity: --steps, --batch, --train-len, --eval-seqs and --check-every must be positive");
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
  const int64_t warmup = o.warmup >= 0 ? o.warmup : o.steps / 10;
  const LrSchedule sched{Schedule::Cosine, o.lr, 0.1, warmup, o.steps, 0.2};
  uint64_t rng = o.seed * 7919 + 1;
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> cu;
  ParityResult res;
  std::vector<std::vector<float>> best = g.values;
  Score kept{-1, 0};
  // Best: the highest held-out accuracy, ties broken by the lower loss (a more exact solution).
  auto check_now = [&](int64_t step) {
    uint64_t check_rng = o.seed * 15485863 + 777;  // the same held-out sequences every time
    const Score sc = score(g, check_rng, o.eval_seqs, o.train_len);
    if (on_check) on_check(step, sc.accuracy, sc.loss);
    if (sc.accuracy < kept.accuracy || (sc.accuracy == kept.accuracy && sc.loss >= kept.loss)) return;
    kept = sc, res.best_check = sc.accuracy, res.best_step = step;
    for (size_t i = 0; i < best.size(); ++i) std::copy(g.values[i].begin(), g.values[i].end(), best[i].begin());
  };
  for (int64_t s = 0; s < o.steps; ++s) {
    make_batch(rng, o.batch, o.train_len, tokens, targets, cu);
    g.zero_grad();
    const double loss = g.forward_backward(tokens, cu, targets);
    zero_frozen(g.grads);
    const double gnorm = clip_grad_norm(g.grads, 1.0);
    const double lr = sched.at(s);
    opt.update(g.values, g.grads, lr);
    if (report) report({s + 1, loss, lr, gnorm});
    if ((s + 1) % o.check_every == 0 || s + 1 == o.steps) check_now(s + 1);
  }
  // Copied element by element: the layers hold pointers into g.values.
  for (size_t i = 0; i < best.size(); ++i) std::copy(best[i].begin(), best[i].end(), g.values[i].begin());
  uint64_t eval_rng = o.seed * 104729 + 12345;
  for (int64_t len : o.eval_lens) res.accuracy.push_back(score(g, eval_rng, o.eval_seqs, len).accuracy);
  return res;
}

}  // namespace m3::train
