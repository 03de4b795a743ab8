// The training loop and its checkpoints (trainer.h).
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "io/files.h"
#include "m3/error.h"
#include "train/grad_model.h"
#include "train/token_file.h"

namespace m3::train {

namespace {

double eval_loss(GradModel<float>& g, const TokenData& d, int64_t L, int64_t batch, int64_t max_rows) {
  int64_t rows = int64_t(d.tokens.size()) / L;
  if (max_rows > 0) rows = std::min(rows, max_rows);
  check(rows > 0, "evaluation data holds fewer than --seq-len tokens");
  double sum = 0, count = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += batch) {
    std::vector<int64_t> order;
    for (int64_t r = r0; r < std::min(rows, r0 + batch); ++r) order.push_back(r);
    const Rows b = make_rows(d, order, L);
    double c = 0;
    for (int32_t t : b.targets) c += t >= 0;
    if (c == 0) continue;
    sum += g.forward_backward(b.tokens, b.cu, b.targets, 1.0, false);
    count += c;
  }
  check(count > 0, "evaluation data has no next-token targets");
  return sum / count;
}

void check_vocab(const TokenData& d, const ModelConfig& c, const std::string& path) {
  check(d.max_token() < c.vocab_padded(), path + ": token id " + std::to_string(d.max_token()) +
                                              " is outside the model's vocabulary (" +
                                              std::to_string(c.vocab_padded()) + ")");
}

// The options that must not change across a resume (they fix the data order and the schedule).
nlohmann::json run_identity(const TrainOptions& o, int64_t total) {
  return {{"seed", o.seed},          {"batch", o.batch},         {"seq_len", o.seq_len},
          {"accum", o.accum},        {"lr", o.schedule.lr},      {"schedule", schedule_name(o.schedule.kind)},
          {"warmup", o.schedule.warmup}, {"total_steps", total}, {"min_lr_ratio", o.schedule.min_lr_ratio},
          {"clip", o.clip},          {"weight_decay", o.adamw.weight_decay}};
}

void save_checkpoint(const std::string& dir, const ModelConfig& cfg, const GradModel<float>& g, const AdamW& opt,
                     int64_t step, int64_t rows_done, const nlohmann::json& identity) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/config.json", model_config_to_json(cfg).dump(2) + "\n");
  const NamedTensors params = g.tensors(DType::F32);
  save_safetensors(dir + "/model.safetensors", params);
  NamedTensors st;
  for (size_t i = 0; i < params.size(); ++i) {
    st.emplace_back("param." + params[i].first, params[i].second);
    for (const auto& [prefix, moments] : {std::pair{"adam_m.", &opt.m}, std::pair{"adam_v.", &opt.v}}) {
      Tensor t = Tensor::zeros(DType::F32, params[i].second.shape);
      std::copy((*moments)[i].begin(), (*moments)[i].end(), t.ptr<float>());
      st.emplace_back(prefix + params[i].first, std::move(t));
    }
  }
  save_safetensors(dir + "/train_state.safetensors", st,
                   {{"step", std::to_string(step)}, {"rows_done", std::to_string(rows_done)},
                    {"run", identity.dump()}});
}

}  // namespace

double train(const ModelConfig& cfg, const NamedTensors& params, const TrainOptions& o,
             const std::function<void(const StepReport&)>& report,
             const std::function<void(int64_t, double)>& eval) {
  check(o.batch > 0 && o.seq_len > 0 && o.accum > 0 && o.steps >= 0, "training: --batch, --seq-len and --accum must be positive");
  const TokenData data = read_token_file(o.data);
  check_vocab(data, cfg, o.data);
  TokenData eval_data;
  if (!o.eval_data.empty()) {
    eval_data = read_token_file(o.eval_data);
    check_vocab(eval_data, cfg, o.eval_data);
  }
  const int64_t n_rows = int64_t(data.tokens.size()) / o.seq_len;
  check(n_rows >= 1, o.data + ": " + std::to_string(data.tokens.size()) + " tokens, fewer than one row of --seq-len " +
                         std::to_string(o.seq_len));
  LrSchedule sched = o.schedule;
  if (sched.total <= 0) sched.total = o.steps;
  const nlohmann::json identity = run_identity(o, sched.total);

  GradModel<float> g(cfg, params);
  AdamW opt(g.names, g.values, o.adamw);
  int64_t step = 0;
  if (o.resume) {
    const std::string path = o.out + "/train_state.safetensors";
    check(std::filesystem::exists(path), path + ": no checkpoint to resume from");
    SafetensorsFile st = SafetensorsFile::open(path);
    const auto& md = st.metadata();
    check(md.count("step") && md.count("run"), path + ": missing step or run metadata");
    const nlohmann::json saved = nlohmann::json::parse(md.at("run"), nullptr, false);
    check(saved == identity, path + ": the checkpoint was trained with other options (" + saved.dump() +
                                 ") than these (" + identity.dump() + ")");
    step = std::stoll(md.at("step"));
    for (size_t i = 0; i < g.names.size(); ++i) {
      auto restore = [&](const std::string& key, std::vector<float>& dst) {
        const Tensor t = st.get(key);
        check(t.dtype == DType::F32 && t.shape == g.shapes[i], path + ": " + key + " has the wrong dtype or shape");
        std::memcpy(dst.data(), t.data, dst.size() * sizeof(float));
      };
      restore("param." + g.names[i], g.values[i]);
      restore("adam_m." + g.names[i], opt.m[i]);
      restore("adam_v." + g.names[i], opt.v[i]);
    }
    opt.set_step(step);
  }

  const int64_t rows_per_step = o.batch * o.accum;
  // Threads over the batch: each micro-batch's rows are split between `workers` replicas of the
  // model (the same parameters, their own activations and gradients), one per thread; losses and
  // gradients are added in worker order, so a run is reproducible for a given thread count.
  // Layers then run single-threaded inside each worker (OpenMP does not nest by default).
  int64_t workers = 1;
#ifdef _OPENMP
  workers = std::min<int64_t>(o.batch, omp_get_max_threads());
#endif
  std::vector<GradModel<float>> replicas;
  replicas.reserve(size_t(workers - 1));
  for (int64_t w = 1; w < workers; ++w) replicas.emplace_back(cfg, params);
  int64_t epoch_cached = -1;
  std::vector<int64_t> order;
  auto rows_at = [&](int64_t first, int64_t count) {
    std::vector<int64_t> r;
    for (int64_t k = first; k < first + count; ++k) {
      const int64_t e = k / n_rows;
      if (e != epoch_cached) order = epoch_order(n_rows, o.seed, e), epoch_cached = e;
      r.push_back(order[size_t(k % n_rows)]);
    }
    return r;
  };
  auto do_eval = [&](int64_t s) {
    if (!o.eval_data.empty() && eval) eval(s, eval_loss(g, eval_data, o.seq_len, o.batch, o.eval_rows));
  };
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = step;
  double last_loss = NAN;
  for (; step < o.steps; ++step) {
    g.zero_grad();
    std::vector<Rows> micro;
    double count = 0;
    // micro[a · workers + w]: worker w's share of micro-batch a's rows (contiguous, in order).
    for (int64_t a = 0; a < o.accum; ++a) {
      const std::vector<int64_t> rows = rows_at(step * rows_per_step + a * o.batch, o.batch);
      for (int64_t w = 0; w < workers; ++w) {
        const auto r0 = rows.begin() + w * o.batch / workers, r1 = rows.begin() + (w + 1) * o.batch / workers;
        micro.push_back(make_rows(data, std::vector<int64_t>(r0, r1), o.seq_len));
        for (int32_t t : micro.back().targets) count += t >= 0;
      }
    }
    check(count > 0, o.data + ": a batch has no next-token targets (documents of one token?)");
    for (auto& r : replicas) {
      for (size_t i = 0; i < r.values.size(); ++i) std::copy(g.values[i].begin(), g.values[i].end(), r.values[i].begin());
      r.zero_grad();
    }
    std::vector<double> shard_loss(size_t(workers), 0.0);
#pragma omp parallel for num_threads(int(workers)) schedule(static, 1) if (workers > 1)
    for (int64_t w = 0; w < workers; ++w) {
      GradModel<float>& m = w == 0 ? g : replicas[size_t(w - 1)];
      for (int64_t a = 0; a < o.accum; ++a) {
        const Rows& b = micro[size_t(a * workers + w)];
        shard_loss[size_t(w)] += m.forward_backward(b.tokens, b.cu, b.targets, count);
      }
    }
    double loss = 0;
    for (double l : shard_loss) loss += l;
    for (const auto& r : replicas)
      for (size_t i = 0; i < g.grads.size(); ++i)
        for (size_t j = 0; j < g.grads[i].size(); ++j) g.grads[i][j] += r.grads[i][j];
    const double gnorm = clip_grad_norm(g.grads, o.clip);
    const double lr = sched.at(step);
    opt.update(g.values, g.grads, lr);
    last_loss = loss;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double done = double(step + 1 - first_step);
    if (report)
      report({step + 1, o.steps, loss, lr, gnorm, done * double(rows_per_step * o.seq_len) / el,
              el / done * double(o.steps - step - 1)});
    if (o.save_every > 0 && (step + 1) % o.save_every == 0 && step + 1 < o.steps)
      save_checkpoint(o.out, cfg, g, opt, step + 1, (step + 1) * rows_per_step, identity);
    if (o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < o.steps) do_eval(step + 1);
  }
  save_checkpoint(o.out, cfg, g, opt, step, step * rows_per_step, identity);
  do_eval(step);
  return last_loss;
}

double evaluate(const ModelConfig& cfg, const NamedTensors& params, const std::string& data, int64_t seq_len,
                int64_t batch, int64_t max_rows) {
  const TokenData d = read_token_file(data);
  check_vocab(d, cfg, data);
  GradModel<float> g(cfg, params);
  return eval_loss(g, d, seq_len, batch, max_rows);
}

}  // namespace m3::train
