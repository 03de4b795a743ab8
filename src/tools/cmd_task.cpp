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
  cmd->add_option("--steps", o->steps, "training steps")->default_val(o->steps)->check(between(1, 1e9));
  cmd->add_option("--batch", o->batch, "sequences per step")->default_val(o->batch)->check(between(1, 65536));
  cmd->add_option("--train-len", o->train_len, "training length")->default_val(o->train_len)->check(between(1, max_len));
  cmd->add_option("--eval-lens", o->eval_lens, "evaluation lengths")->default_str("64 256 1024")->check(between(1, max_len));
  cmd->add_option("--eval-seqs", o->eval_seqs, "sequences per evaluation length (and per check)")
      ->default_val(o->eval_seqs)
      ->check(between(1, 65536));
  cmd->add_option("--lr", o->lr, "peak learning rate (warmup, then cosine to a tenth)")
      ->default_val(o->lr)
      ->check(between(0, 1, true));
  cmd->add_option("--warmup", o->warmup, "warmup steps (-1: a tenth of --steps)")
      ->default_val(o->warmup)
      ->check(between(-1, 1e9));
  cmd->add_option("--check-every", o->check_every, "held-out check at --train-len every N steps; the best is kept")
      ->default_val(o->check_every)
      ->check(between(1, 1e9));
  cmd->add_option("--seed", o->seed, "seed of the model and the bits")->default_val(o->seed);
  cmd->callback([o] {
    const auto res = train::run_parity(
        *o,
        [&](const train::ParityStep& s) {
          if (s.step % 50 == 0 || s.step == o->steps)
            std::printf("step %lld/%lld loss %.4f lr %.2e gnorm %.3f\n", (long long)s.step, (long long)o->steps, s.loss,
                        s.lr, s.grad_norm);
        },
        [&](int64_t step, double acc, double loss) {
          std::printf("check step %lld: accuracy %.1f%% loss %.2e\n", (long long)step, 100 * acc, loss);
        });
    std::printf("kept step %lld (held-out accuracy %.1f%% at length %lld)\n", (long long)res.best_step,
                100 * res.best_check, (long long)o->train_len);
    for (size_t i = 0; i < res.accuracy.size(); ++i)
      std::printf("%s parity length %lld: accuracy %.1f%%\n", o->mixer.c_str(), (long long)o->eval_lens[i],
                  100 * res.accuracy[i]);
  });
}

}  // namespace m3::cli
