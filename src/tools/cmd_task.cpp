// m3 task parity: train a small model on running parity and report its accuracy at longer
// lengths (src/train/parity.h).
#include <cstdio>

#include "core/limits.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"
#include "train/parity.h"

namespace m3::cli {

void add_task_commands(CLI::App& app) {
  auto* task = app.add_subcommand("task", "Synthetic training tasks");
  task->require_subcommand(1);
  auto* cmd = task->add_subcommand("parity", "Running parity of random bits: train at one length, test at longer ones");
  auto o = std::make_shared<train::ParityOptions>();
  cmd->add_option("--mixer", o->mixer, "mamba3, mamba3-norope (rotary angles held at zero) or mamba2")->default_val("mamba3");
  // Ranges: readable bounds on nonsense; lengths as a prompt's (core/limits.h).
  const double max_len = double(limits::kPromptTokens);
  cmd->add_option("--steps", o->steps, "training steps")->default_val(1000)->check(between(1, 1e9));
  cmd->add_option("--batch", o->batch, "sequences per step")->default_val(32)->check(between(1, 65536));
  cmd->add_option("--train-len", o->train_len, "training length")->default_val(64)->check(between(1, max_len));
  cmd->add_option("--eval-lens", o->eval_lens, "evaluation lengths")->default_str("64 256 1024")->check(between(1, max_len));
  cmd->add_option("--eval-seqs", o->eval_seqs, "sequences per evaluation length")->default_val(64)->check(between(1, 65536));
  cmd->add_option("--lr", o->lr, "learning rate")->default_val(3e-3)->check(between(0, 1, true));
  cmd->add_option("--seed", o->seed, "seed of the model and the bits")->default_val(0);
  cmd->callback([o] {
    const auto acc = train::run_parity(*o, [&](int64_t s, double loss) {
      if (s % 50 == 0 || s == o->steps) std::printf("step %lld/%lld loss %.4f\n", (long long)s, (long long)o->steps, loss);
    });
    for (size_t i = 0; i < acc.size(); ++i)
      std::printf("%s parity length %lld: accuracy %.1f%%\n", o->mixer.c_str(), (long long)o->eval_lens[i], 100 * acc[i]);
  });
}

}  // namespace m3::cli
