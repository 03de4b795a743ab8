// m3 train: train a model on a token file (src/train/trainer.h); m3 eval: its loss on a token file.
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "core/limits.h"
#include "m3/error.h"
#include "m3/model.h"
#include "m3/presets.h"
#include "tools/commands.h"
#include "tools/flag_checks.h"
#include "train/trainer.h"

namespace m3::cli {

namespace {

// Flag ranges (readable bounds on nonsense, not resource limits: those are in core/limits.h).
constexpr double kMaxSteps = 1e9, kMaxRows = 65536, kMaxEvalRows = 1e12;

// "1m05s", "42s".
std::string duration(double s) {
  if (!std::isfinite(s)) return "?";
  const int64_t t = int64_t(s + 0.5);
  return t >= 60 ? std::to_string(t / 60) + "m" + (t % 60 < 10 ? "0" : "") + std::to_string(t % 60) + "s"
                 : std::to_string(t) + "s";
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model on a token file (CPU)");
  struct Args {
    std::string preset, config, init;
    std::string schedule = "cosine";
    train::TrainOptions o;
  };
  auto a = std::make_shared<Args>();
  auto* src = cmd->add_option_group("model", "what to train");
  src->add_option("--preset", a->preset, "start from a fresh model of this preset shape");
  src->add_option("--config", a->config, "start from a fresh model of this config.json");
  src->add_option("--init", a->init, "start from this checkpoint directory");
  cmd->add_option("--data", a->o.data, "training tokens (m3 data tokenize)")->required();
  cmd->add_option("--out", a->o.out, "checkpoint directory (written at the end and every --save-every steps)")->required();
  cmd->add_option("--steps", a->o.steps, "optimizer steps, counted from the start of training")
      ->required()
      ->check(between(1, kMaxSteps));
  cmd->add_option("--batch", a->o.batch, "rows per micro-batch")->default_val(8)->check(between(1, kMaxRows));
  cmd->add_option("--seq-len", a->o.seq_len, "tokens per row (documents packed, state reset at boundaries)")
      ->default_val(256)
      ->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--accum", a->o.accum, "micro-batches per step (gradient accumulation)")
      ->default_val(1)
      ->check(between(1, kMaxRows));
  cmd->add_option("--lr", a->o.schedule.lr, "peak learning rate")->default_val(1e-3)->check(between(0, 1, true));
  cmd->add_option("--min-lr-ratio", a->o.schedule.min_lr_ratio, "final learning rate / peak")
      ->default_val(0.1)
      ->check(between(0, 1));
  cmd->add_option("--schedule", a->schedule, "constant, cosine or wsd (after warmup)")->default_val("cosine");
  cmd->add_option("--warmup", a->o.schedule.warmup, "linear warmup steps")->default_val(0)->check(between(0, kMaxSteps));
  cmd->add_option("--total-steps", a->o.schedule.total,
                  "schedule horizon (default --steps; give the final count when training in several runs)")
      ->check(between(1, kMaxSteps));
  cmd->add_option("--weight-decay", a->o.adamw.weight_decay, "AdamW weight decay")->default_val(0.1)->check(between(0, 1));
  cmd->add_option("--clip", a->o.clip, "global gradient-norm clip (0: off)")->default_val(1.0)->check(between(0, 1e6));
  cmd->add_option("--seed", a->o.seed, "seed of the model's initialisation and the data order")->default_val(0);
  cmd->add_option("--save-every", a->o.save_every, "also save every N steps")->default_val(0)->check(between(0, kMaxSteps));
  cmd->add_option("--eval-data", a->o.eval_data, "tokens to evaluate on (every --eval-every steps and at the end)");
  cmd->add_option("--eval-every", a->o.eval_every, "evaluation interval in steps (0: at the end)")
      ->default_val(0)
      ->check(between(0, kMaxSteps));
  cmd->add_option("--eval-rows", a->o.eval_rows, "rows of --eval-data per evaluation (0: all)")
      ->default_val(64)
      ->check(between(0, kMaxEvalRows));
  cmd->add_flag("--resume", a->o.resume, "continue the checkpoint in --out");
  cmd->callback([a] {
    train::TrainOptions& o = a->o;
    o.schedule.kind = train::parse_schedule(a->schedule);
    check(int(!a->preset.empty()) + int(!a->config.empty()) + int(!a->init.empty()) == 1 || o.resume,
          "train: give exactly one of --preset, --config, --init");
    ModelConfig cfg;
    NamedTensors params;
    if (o.resume) {
      Model m = Model::load(o.out);  // its config; the state itself comes from train_state.safetensors
      cfg = m.config();
      params = m.parameters();
    } else if (!a->init.empty()) {
      Model m = Model::load(a->init);
      cfg = m.config();
      params = m.parameters();
    } else {
      cfg = a->preset.empty() ? load_model_config(a->config) : preset_config(a->preset);
      Model m = Model::init(cfg, o.seed);
      params = m.parameters();
    }
    const bool tty = isatty(fileno(stdout));
    auto report = [&](const train::StepReport& r) {
      std::printf("%sstep %lld/%lld loss %.4f lr %.2e gnorm %.3f tok/s %.0f eta %s%s", tty ? "\r" : "",
                  (long long)r.step, (long long)r.steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s,
                  duration(r.eta_s).c_str(), tty && r.step < r.steps ? "   " : "\n");
      std::fflush(stdout);
    };
    auto eval = [&](int64_t step, double loss) {
      std::printf("eval step %lld loss %.4f ppl %.3f\n", (long long)step, loss, std::exp(loss));
    };
    const double loss = train::train(cfg, params, o, report, eval);
    std::printf("trained %lld steps: final loss %.4f, checkpoint %s\n", (long long)o.steps, loss, o.out.c_str());
  });
}

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean next-token loss of a checkpoint on a token file");
  struct Args { std::string dir, data; int64_t seq_len = 256, batch = 8, rows = 0; };
  auto a = std::make_shared<Args>();
  cmd->add_option("DIR", a->dir, "checkpoint directory")->required();
  cmd->add_option("--data", a->data, "token file (m3 data tokenize)")->required();
  cmd->add_option("--seq-len", a->seq_len, "tokens per row")->default_val(256)->check(between(1, double(limits::kPromptTokens)));
  cmd->add_option("--batch", a->batch, "rows per forward")->default_val(8)->check(between(1, kMaxRows));
  cmd->add_option("--rows", a->rows, "evaluate the first N rows (0: all)")->default_val(0)->check(between(0, kMaxEvalRows));
  cmd->callback([a] {
    Model m = Model::load(a->dir);
    const double loss = train::evaluate(m.config(), m.parameters(), a->data, a->seq_len, a->batch, a->rows);
    std::printf("loss %.6f ppl %.4f\n", loss, std::exp(loss));
  });
}

}  // namespace m3::cli
