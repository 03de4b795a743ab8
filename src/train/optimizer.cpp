// AdamW (Loshchilov & Hutter: decay decoupled from the adaptive step), clipping, schedules.
#include "train/optimizer.h"

#include <cmath>
#include <numbers>

#include "cpu/ops.h"
#include "m3/error.h"

namespace m3::train {

bool no_weight_decay(const std::string& name) {
  const std::string last = name.substr(name.rfind('.') + 1);
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  return ends("bias") || name.find("norm") != std::string::npos || last == "D" || last == "A_log" ||
         last == "dt_bias";
}

double clip_grad_norm(std::vector<std::vector<float>>& grads, double max_norm) {
  double ss = 0;
  for (const auto& g : grads)
    for (float x : g) ss += double(x) * double(x);
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float s = float(max_norm / (norm + 1e-6));
    for (auto& g : grads)
      for (float& x : g) x *= s;
  }
  return norm;
}

AdamW::AdamW(const std::vector<std::string>& names, const std::vector<std::vector<float>>& params, AdamWConfig cfg)
    : cfg_(cfg) {
  for (size_t i = 0; i < names.size(); ++i) {
    decay_.push_back(!no_weight_decay(names[i]));
    m.emplace_back(params[i].size(), 0.0f);
    v.emplace_back(params[i].size(), 0.0f);
  }
}

void AdamW::update(std::vector<std::vector<float>>& params, const std::vector<std::vector<float>>& grads, double lr) {
  ++step_;
  const double bc1 = 1 - std::pow(cfg_.beta1, double(step_)), bc2 = 1 - std::pow(cfg_.beta2, double(step_));
  const float b1 = float(cfg_.beta1), b2 = float(cfg_.beta2);
  const float step_size = float(lr / bc1), inv_bc2 = float(1 / bc2), eps = float(cfg_.eps);
  for (size_t i = 0; i < params.size(); ++i) {
    const float wd = decay_[i] ? float(lr * cfg_.weight_decay) : 0.0f;
    float *p = params[i].data(), *mi = m[i].data(), *vi = v[i].data();
    const float* g = grads[i].data();
    const int64_t n = int64_t(params[i].size());
#pragma omp parallel for simd if (n > cpu::kParallelWork)
    for (int64_t j = 0; j < n; ++j) {
      mi[j] = b1 * mi[j] + (1 - b1) * g[j];
      vi[j] = b2 * vi[j] + (1 - b2) * g[j] * g[j];
      p[j] -= wd * p[j] + step_size * mi[j] / (std::sqrt(vi[j] * inv_bc2) + eps);
    }
  }
}

Schedule parse_schedule(const std::string& s) {
  if (s == "constant") return Schedule::Constant;
  if (s == "cosine") return Schedule::Cosine;
  if (s == "wsd") return Schedule::Wsd;
  throw Error("unknown schedule '" + s + "' (constant, cosine, wsd)");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Constant: return "constant";
    case Schedule::Cosine: return "cosine";
    case Schedule::Wsd: return "wsd";
  }
  return "?";
}

double LrSchedule::at(int64_t s) const {
  if (s < warmup) return lr * double(s + 1) / double(warmup);
  const double min_lr = lr * min_lr_ratio;
  switch (kind) {
    case Schedule::Constant: return lr;
    case Schedule::Cosine: {
      const double span = double(std::max<int64_t>(total - warmup, 1));
      const double f = std::min(1.0, double(s - warmup) / span);
      return min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(std::numbers::pi * f));
    }
    case Schedule::Wsd: {
      const int64_t decay = std::max<int64_t>(1, int64_t(std::ceil(decay_fraction * double(total))));
      const int64_t start = total - decay;
      if (s < start) return lr;
      const double f = std::min(1.0, double(s - start + 1) / double(decay));
      return lr + (min_lr - lr) * f;
    }
  }
  return lr;
}

}  // namespace m3::train
