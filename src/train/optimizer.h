// AdamW with decoupled weight decay, global-norm gradient clipping and the learning-rate
// schedules of training: linear warmup, then cosine decay or WSD (warmup–stable–decay).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace m3::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// Whether a parameter is exempt from weight decay, as the reference trains: biases, norm weights,
// D, dt_bias and A parameters (A_log) — every parameter with `_no_weight_decay` or a 1-D shape
// among those the reference groups without decay.
bool no_weight_decay(const std::string& name);

// Scales grads so that their global L2 norm is at most max_norm (no-op when max_norm <= 0);
// returns the norm before clipping.
double clip_grad_norm(std::vector<std::vector<float>>& grads, double max_norm);

class AdamW {
 public:
  AdamW(const std::vector<std::string>& names, const std::vector<std::vector<float>>& params, AdamWConfig cfg);
  // One update with learning rate lr; step() counts updates done (bias correction uses it).
  void update(std::vector<std::vector<float>>& params, const std::vector<std::vector<float>>& grads, double lr);
  int64_t step() const { return step_; }
  // State for checkpoints: first and second moments, index-aligned with the parameters.
  std::vector<std::vector<float>> m, v;
  void set_step(int64_t s) { step_ = s; }

 private:
  AdamWConfig cfg_;
  std::vector<bool> decay_;
  int64_t step_ = 0;
};

enum class Schedule { Constant, Cosine, Wsd };
Schedule parse_schedule(const std::string& s);
const char* schedule_name(Schedule s);

struct LrSchedule {
  Schedule kind = Schedule::Cosine;
  double lr = 1e-3, min_lr_ratio = 0.1;
  int64_t warmup = 0, total = 0;  // total 0: the number of training steps
  double decay_fraction = 0.2;  // WSD: the last fraction of steps decays linearly to min_lr
  // Learning rate of step s (0-based): linear warmup over `warmup` steps, then constant, cosine
  // to min_lr at `total`, or WSD (stable, then linear decay over the last decay_fraction).
  double at(int64_t s) const;
};

}  // namespace m3::train
