// The running-parity task (Mamba-3 paper, state tracking): inputs are random bits, the target at
// each position is the parity (XOR) of the bits so far. A model trained at one length is
// evaluated at longer ones; a mixer that tracks the state generalises, one that cannot stays
// near chance (50 %).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace m3::train {

struct ParityOptions {
  std::string mixer = "mamba3";  // mamba3, mamba3-norope (rotary angles held at zero), mamba2
  int64_t steps = 1000, batch = 32, train_len = 64, eval_seqs = 64;
  std::vector<int64_t> eval_lens = {64, 256, 1024};
  double lr = 2e-3;
  int64_t warmup = -1;       // linear warmup steps (-1: a tenth of the steps)
  int64_t check_every = 50;  // held-out accuracy at train_len every N steps; the best is kept
  uint64_t seed = 0;
};

struct ParityStep {
  int64_t step;
  double loss, lr, grad_norm;
};

struct ParityResult {
  std::vector<double> accuracy;  // at each of eval_lens, of the kept parameters
  int64_t best_step = 0;         // the step whose parameters were kept
  double best_check = 0;         // their held-out accuracy at train_len
};

// Trains a 2-layer d_model-64 model of the given mixer on warmup + cosine decay, checks its
// accuracy at train_len on a fixed held-out set every check_every steps (and at the end), keeps
// the parameters of the best check (highest accuracy, then lowest loss), and returns their
// accuracy over all positions at each eval length. report after each step; on_check(step,
// accuracy, loss) after each check.
ParityResult run_parity(const ParityOptions& o, const std::function<void(const ParityStep&)>& report,
                        const std::function<void(int64_t, double, double)>& on_check);

}  // namespace m3::train
