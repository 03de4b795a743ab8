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
  double lr = 3e-3;
  uint64_t seed = 0;
};

// Trains a 2-layer d_model-64 model of the given mixer and returns the accuracy over all positions
// at each eval length. report(step, loss) after each step.
std::vector<double> run_parity(const ParityOptions& o, const std::function<void(int64_t, double)>& report);

}  // namespace m3::train
