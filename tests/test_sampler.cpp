// The sampler (spec/model.md §7) against the exact distribution it must draw from, computed here
// in float64 from the spec: repetition penalty, top-k, temperature, top-p nucleus, min-p, softmax.
// Sampled frequencies over many draws must pass a chi-square bound, and tokens the filters drop
// must never be drawn.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "m3/sampler.h"

namespace m3 {
namespace {

// The probabilities spec/model.md §7 gives each token (0 for the dropped ones).
std::vector<double> exact_distribution(std::vector<double> logits, const SamplerOptions& o,
                                       const std::vector<int32_t>& history) {
  const size_t V = logits.size();
  for (int32_t t : history) {
    double& l = logits[size_t(t)];
    l = l > 0 ? l / o.repetition_penalty : l * o.repetition_penalty;
  }
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  const size_t k = o.top_k == 0 ? V : std::min(V, size_t(o.top_k));
  std::vector<double> p(V, 0.0);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += p[order[i]] = std::exp(logits[order[i]] / o.temperature);
  for (size_t i = 0; i < k; ++i) p[order[i]] /= sum;
  size_t keep = k;
  double cum = 0;
  for (size_t i = 0; i < k; ++i) {
    cum += p[order[i]];
    if (cum >= o.top_p) {
      keep = i + 1;
      break;
    }
  }
  const double top = p[order[0]];
  while (keep > 1 && p[order[keep - 1]] < o.min_p * top) --keep;
  for (size_t i = keep; i < V; ++i) p[order[i]] = 0;
  sum = 0;
  for (double x : p) sum += x;
  for (double& x : p) x /= sum;
  return p;
}

struct Case {
  const char* name;
  SamplerOptions o;
  std::vector<int32_t> history;
};

TEST(Sampler, FrequenciesMatchTheFilteredDistribution) {
  const std::vector<double> logits = {1.5, -0.3, 0.8, 2.1, 0.0, -1.2, 1.1, 0.4};
  auto opts = [](int64_t k, float t, float top_p, float min_p, float rep) {
    SamplerOptions o;
    o.top_k = k, o.temperature = t, o.top_p = top_p, o.min_p = min_p, o.repetition_penalty = rep, o.seed = 11;
    return o;
  };
  const std::vector<Case> cases = {
      {"all tokens", opts(0, 1.0f, 1.0f, 0.0f, 1.0f), {}},
      {"temperature 0.5, top-k 3", opts(3, 0.5f, 1.0f, 0.0f, 1.0f), {}},
      {"temperature 2, top-p 0.8", opts(0, 2.0f, 0.8f, 0.0f, 1.0f), {}},
      {"min-p 0.3", opts(0, 1.0f, 1.0f, 0.3f, 1.0f), {}},
      {"all filters", opts(6, 1.3f, 0.9f, 0.1f, 1.0f), {}},
      {"repetition penalty 2", opts(0, 1.0f, 1.0f, 0.0f, 2.0f), {3, 5, 3}},
  };
  const int draws = 40000;
  for (const Case& c : cases) {
    const std::vector<double> p = exact_distribution(logits, c.o, c.history);
    Sampler s(c.o);
    std::vector<int> count(logits.size(), 0);
    for (int i = 0; i < draws; ++i) {
      std::vector<float> l(logits.begin(), logits.end());
      const int32_t t = s.sample(l, c.history);
      ASSERT_GE(t, 0);
      ASSERT_LT(t, int32_t(logits.size()));
      ++count[size_t(t)];
    }
    double chi2 = 0;
    int categories = 0;
    for (size_t v = 0; v < p.size(); ++v) {
      if (p[v] == 0) {
        EXPECT_EQ(count[v], 0) << c.name << ": token " << v << " is outside the filters but was drawn";
        continue;
      }
      const double e = p[v] * draws;
      chi2 += (count[v] - e) * (count[v] - e) / e;
      ++categories;
    }
    // At most 7 degrees of freedom: chi-square exceeds 35 with probability below 1e-5.
    EXPECT_LT(chi2, 35.0) << c.name << " (" << categories << " tokens kept)";
    EXPECT_GE(categories, 2) << c.name << ": the case should leave a choice";
  }
}

TEST(Sampler, GreedyIsTheArgmaxAfterThePenalty) {
  SamplerOptions o;  // top_k 1
  o.repetition_penalty = 4.0f;
  Sampler s(o);
  std::vector<float> l = {1.0f, 3.0f, 2.0f};
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{}), 1);
  l = {1.0f, 3.0f, 2.0f};
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{1}), 2);  // 3 / 4 < 2
}

TEST(Sampler, RejectsOptionsOutOfRange) {
  auto bad = [](auto edit) {
    SamplerOptions o;
    o.top_k = 0;
    edit(o);
    EXPECT_THROW(Sampler{o}, std::exception);
  };
  bad([](SamplerOptions& o) { o.temperature = -1; });
  bad([](SamplerOptions& o) { o.temperature = std::nanf(""); });
  bad([](SamplerOptions& o) { o.top_p = 0; });
  bad([](SamplerOptions& o) { o.min_p = 1.5f; });
  bad([](SamplerOptions& o) { o.repetition_penalty = 0; });
}

}  // namespace
}  // namespace m3
