// The training loop on the CPU: packed rows from a token file in a seeded order, forward and
// backward through GradModel<float>, gradient accumulation, clipping, AdamW on a schedule,
// periodic evaluation, and checkpoints in --out that `m3 generate` loads and --resume continues
// bit for bit.
//
// Checkpoint directory: config.json and model.safetensors (the model, loadable as any
// checkpoint), and train_state.safetensors (the parameters again, AdamW's moments `adam_m.*`,
// `adam_v.*`, and metadata: step, rows consumed, seed and the options that fix the data order and
// schedule). Each file is written atomically; resume reads only train_state.safetensors, so a
// save interrupted between files resumes from the last complete state.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "m3/config.h"
#include "m3/safetensors.h"
#include "train/optimizer.h"

namespace m3::train {

struct TrainOptions {
  std::string data, eval_data, out;
  int64_t steps = 100, batch = 8, seq_len = 256, accum = 1;
  int64_t save_every = 0;   // 0: at the end only
  int64_t eval_every = 0;   // 0: at the end only (when eval_data is set)
  int64_t eval_rows = 64;   // rows of eval_data per evaluation (0: all)
  uint64_t seed = 0;
  double clip = 1.0;
  LrSchedule schedule;
  AdamWConfig adamw;
  bool resume = false;
};

struct StepReport {
  int64_t step, steps;
  double loss, lr, grad_norm, tokens_per_s, eta_s;
};

// Trains `params` (checkpoint order, float32) of a model with config `cfg`, or continues the
// checkpoint in o.out when o.resume. Calls report after every step and eval(step, loss) after each
// evaluation. Returns the final training loss.
double train(const ModelConfig& cfg, const NamedTensors& params, const TrainOptions& o,
             const std::function<void(const StepReport&)>& report,
             const std::function<void(int64_t, double)>& eval);

// Mean next-token loss of a model over a token file's rows in stream order (every row when
// max_rows is 0).
double evaluate(const ModelConfig& cfg, const NamedTensors& params, const std::string& data, int64_t seq_len,
                int64_t batch, int64_t max_rows);

}  // namespace m3::train
