#include "m3/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "m3/error.h"

namespace m3 {

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {
  check(o.top_k >= 0, "top_k must be >= 0");
  check((o.temperature > 0 && std::isfinite(o.temperature)) || o.top_k == 1,
        "temperature must be finite and > 0 unless sampling greedily (top_k = 1)");
  check(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1]");
  check(o.min_p >= 0 && o.min_p <= 1, "min_p must be in [0, 1]");
  check(o.repetition_penalty > 0, "repetition_penalty must be > 0");
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const int64_t V = int64_t(logits.size());
  check(V > 0, "no logits to sample from");
  if (o_.repetition_penalty != 1.0f)
    for (int32_t t : history)
      if (t >= 0 && t < V) {
        float& l = logits[size_t(t)];
        l = l > 0 ? l / o_.repetition_penalty : l * o_.repetition_penalty;
      }
  if (o_.top_k == 1) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t k = o_.top_k == 0 ? V : std::min(o_.top_k, V);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  idx.resize(size_t(k));
  std::vector<double> p(static_cast<size_t>(k));
  const double mx = logits[size_t(idx[0])] / o_.temperature;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p[size_t(i)] = std::exp(logits[size_t(idx[size_t(i)])] / o_.temperature - mx);
  for (auto& x : p) x /= sum;
  // Nucleus: the smallest prefix whose probability reaches top_p (the most likely token stays).
  int64_t keep = k;
  if (o_.top_p < 1.0f) {
    double c = 0;
    for (int64_t i = 0; i < k; ++i) {
      c += p[size_t(i)];
      if (c >= o_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (o_.min_p > 0)
    while (keep > 1 && p[size_t(keep - 1)] < o_.min_p * p[0]) --keep;
  std::discrete_distribution<int64_t> d(p.begin(), p.begin() + keep);
  return idx[size_t(d(rng_))];
}

}  // namespace m3
