#include "cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/ops.h"

namespace m3::cpu {

void ffn_rows(const FfnWeights& w, const float* x, int64_t T, int64_t d, float* y, std::vector<float>& h) {
  const int64_t H = w.hidden, in_rows = w.gated ? 2 * H : H;
  h.resize(size_t(T * in_rows));
  linear_fwd(h.data(), x, w.in, w.in_bias, T, d, in_rows);
  if (w.gated) {
    // [gate | up] → up ⊙ silu(gate), in place over the gate half.
    silu_gate_fwd(h.data(), h.data() + H, h.data(), T, H, in_rows, in_rows, in_rows);
  } else {
#pragma omp parallel for if (T * H > kParallelWork)
    for (int64_t i = 0; i < T * H; ++i) {
      const float r = std::max(h[size_t(i)], 0.0f);
      h[size_t(i)] = r * r;
    }
  }
  linear_fwd(y, h.data(), w.out, w.out_bias, T, H, d, in_rows, d);
}

namespace {

// The k largest of v[0..n) by value, in decreasing order (ties: the lower index first, as
// torch.topk returns them on the CPU).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  int32_t order[256];
  std::vector<int32_t> big;
  int32_t* o = order;
  if (n > 256) big.resize(size_t(n)), o = big.data();
  std::iota(o, o + n, 0);
  std::partial_sort(o, o + k, o + n, [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy_n(o, k, out);
}

}  // namespace

void moe_route(const MoeConfig& c, const float* logits, const float* score_bias, int64_t T, int32_t* idx, float* w) {
  const int64_t E = c.n_experts, K = c.top_k;
#pragma omp parallel if (T * E > kParallelWork)
  {
    std::vector<float> s(static_cast<size_t>(E)), choice(static_cast<size_t>(E)), group(static_cast<size_t>(c.n_group));
    std::vector<int32_t> sel(static_cast<size_t>(std::max(E, c.n_group)));
#pragma omp for
    for (int64_t t = 0; t < T; ++t) {
      const float* l = logits + t * E;
      int32_t* it = idx + t * K;
      float* wt = w + t * K;
      if (c.family == MoeConfig::Family::Granite) {
        // Softmax over the top-k logits.
        top_k(l, E, K, it);
        const float mx = l[it[0]];
        float sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += (wt[k] = std::exp(l[it[k]] - mx));
        for (int64_t k = 0; k < K; ++k) wt[k] /= sum;
        continue;
      }
      if (c.family == MoeConfig::Family::Jamba) {
        // Softmax over every logit, then the top-k probabilities, not renormalised.
        const float mx = *std::max_element(l, l + E);
        float sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += (s[size_t(e)] = std::exp(l[e] - mx));
        for (int64_t e = 0; e < E; ++e) s[size_t(e)] /= sum;
        top_k(s.data(), E, K, it);
        for (int64_t k = 0; k < K; ++k) wt[k] = s[size_t(it[k])];
        continue;
      }
      // NemotronH (DeepSeek-V3's router): choose by sigmoid + bias within the best groups.
      for (int64_t e = 0; e < E; ++e) {
        s[size_t(e)] = 1.0f / (1.0f + std::exp(-l[e]));
        choice[size_t(e)] = s[size_t(e)] + score_bias[e];
      }
      const int64_t gsize = E / c.n_group, top2 = std::min<int64_t>(2, gsize);
      for (int64_t g = 0; g < c.n_group; ++g) {
        top_k(choice.data() + g * gsize, gsize, top2, sel.data());
        group[size_t(g)] = 0;
        for (int64_t j = 0; j < top2; ++j) group[size_t(g)] += choice[size_t(g * gsize + sel[size_t(j)])];
      }
      top_k(group.data(), c.n_group, c.topk_group, sel.data());
      std::vector<bool> keep(size_t(c.n_group), false);
      for (int64_t j = 0; j < c.topk_group; ++j) keep[size_t(sel[size_t(j)])] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[size_t(e / gsize)]) choice[size_t(e)] = 0.0f;  // masked_fill(…, 0.0) as the reference does
      top_k(choice.data(), E, K, it);
      float sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += (wt[k] = s[size_t(it[k])]);
      const float norm = c.norm_topk_prob ? 1.0f / (sum + 1e-20f) : 1.0f;
      for (int64_t k = 0; k < K; ++k) wt[k] *= norm * float(c.routed_scaling_factor);
    }
  }
}

}  // namespace m3::cpu
