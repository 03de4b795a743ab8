#include "serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "m3/error.h"
#include "m3/sampler.h"
#include "serve/stop_matcher.h"

namespace m3::serve {

using Clock = std::chrono::steady_clock;

struct Scheduler::Choice {
  int64_t index = 0;
  SequenceState state;
  Sampler sampler;
  TextCodec::Decoder decoder;
  StopMatcher stop;
  std::unordered_map<int32_t, int64_t> counts;  // generated tokens, for the penalties
  int64_t generated = 0;
  int32_t next = -1;  // the token the next step feeds
  bool done = false;
  std::vector<TokenLogprob> logprobs;  // not yet sent with an event
  Clock::time_point last_token;
};

struct Scheduler::Job {
  std::vector<int32_t> prompt;
  GenerationParams params;
  std::shared_ptr<GenerationStream> out;
  Clock::time_point arrived;
  SequenceState prefill;  // the prompt's state while it is prefilled
  int64_t pos = 0;        // prompt tokens consumed
  bool decoding = false;
  int64_t held = 0;       // slots reserved for this job and not yet released
  int64_t completion_tokens = 0;
  std::vector<std::unique_ptr<Choice>> choices;
};

namespace {

SamplerOptions sampler_options(const GenerationParams& p, int64_t index) {
  SamplerOptions s;
  s.seed = p.seed + uint64_t(index);
  if (p.temperature == 0.0f || p.top_p == 0.0f) return s;  // top_k = 1: greedy
  s.top_k = 0;
  s.temperature = p.temperature;
  s.top_p = p.top_p;
  return s;
}

}  // namespace

Scheduler::Scheduler(Model& model, const TextCodec& codec, std::vector<int32_t> eos_ids, SchedulerOptions opt,
                     Metrics& metrics)
    : model_(model), codec_(codec), eos_(std::move(eos_ids)), opt_(opt), metrics_(metrics),
      cache_(opt.prefix_cache_bytes) {
  check(opt_.slots >= 1 && opt_.max_batch >= 1 && opt_.prefill_chunk >= 1 && opt_.max_queue >= 0,
        "scheduler options out of range");
  const size_t vp = size_t(model_.config().vocab_padded());
  logits_.resize(size_t(std::max<int64_t>(opt_.max_batch, 1)) * vp);
  scratch_.resize(vp);
  metrics_.slots_total = opt_.slots;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::optional<ApiError> Scheduler::submit(std::vector<int32_t> prompt, const GenerationParams& params,
                                          std::shared_ptr<GenerationStream> out) {
  if (params.n > opt_.slots)
    return bad_request("n = " + std::to_string(params.n) + " is more than the server's " + std::to_string(opt_.slots) +
                           " state slots",
                       "n");
  auto job = std::make_unique<Job>();
  job->prompt = std::move(prompt);
  job->params = params;
  job->out = std::move(out);
  job->arrived = Clock::now();
  {
    std::lock_guard lock(mu_);
    if (draining_ || stopping_) return ApiError{503, "the server is shutting down", "", ""};
    if (int64_t(queue_.size()) >= opt_.max_queue)
      return ApiError{429, "too many requests are waiting (" + std::to_string(queue_.size()) + "); retry later", "", ""};
    queue_.push_back(std::move(job));
    idle_ = false;
    metrics_.queue_depth = int64_t(queue_.size());
  }
  wake_.notify_all();
  return std::nullopt;
}

void Scheduler::drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  draining_ = true;
  idle_cv_.wait_for(lock, timeout, [&] { return idle_; });
  stopping_ = true;  // the loop cancels what is left and exits
  lock.unlock();
  wake_.notify_all();
}

int64_t Scheduler::free_slots() const { return opt_.slots - reserved_ - int64_t(cache_.entries()); }

void Scheduler::publish_gauges() {
  int64_t running = 0;
  for (const auto& j : jobs_) running += j->decoding ? j->held : 1;
  metrics_.running_sequences = running;
  metrics_.slots_in_use = reserved_ + int64_t(cache_.entries());
  metrics_.prefix_cache_bytes = int64_t(cache_.bytes());
  metrics_.prefix_cache_entries = int64_t(cache_.entries());
}

// Takes the job's slots (evicting cached prefixes if need be) and its starting state: the longest
// cached prefix of its prompt forked, or a zero state. False when the slots are not there yet.
bool Scheduler::admit(Job& job) {
  const SequenceState* hit =
      opt_.prefix_cache_bytes > 0 ? cache_.longest_prefix(job.prompt, opt_.prefill_chunk) : nullptr;
  while (free_slots() < job.params.n && cache_.evict_one(hit)) {
  }
  if (free_slots() < job.params.n) return false;
  if (hit) {
    job.prefill = *hit;  // a fork into a fresh slot
    job.pos = hit->n_tokens;
    ++metrics_.prefix_cache_hits;
    metrics_.prefix_cache_tokens_reused += uint64_t(job.pos);
  } else {
    job.prefill = model_.new_state();
    if (opt_.prefix_cache_bytes > 0) ++metrics_.prefix_cache_misses;
  }
  job.held = job.params.n;
  reserved_ += job.held;
  metrics_.prompt_tokens += job.prompt.size();
  return true;
}

void Scheduler::release(Job& job) {
  job.prefill = SequenceState();
  job.choices.clear();
  reserved_ -= job.held;
  job.held = 0;
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (jobs_.empty() && queue_.empty()) {
        idle_ = true;
        idle_cv_.notify_all();
      }
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty() || !queue_.empty(); });
      if (stopping_) break;
      while (!queue_.empty() && admit(*queue_.front())) {
        jobs_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.queue_depth = int64_t(queue_.size());
    }
    drop_finished_and_cancelled();
    if (!jobs_.empty()) {
      // Prompt chunks of prefilling requests in turn, up to prefill_chunk tokens in all (so that
      // short prompts arriving together start together), then one token for every decoding one.
      std::vector<Job*> prefilling;
      for (auto& j : jobs_)
        if (!j->decoding) prefilling.push_back(j.get());
      int64_t budget = opt_.prefill_chunk;
      for (size_t k = 0; k < prefilling.size() && budget > 0; ++k)
        budget -= prefill_step(*prefilling[next_prefill_++ % prefilling.size()]);
      decode_step();
      drop_finished_and_cancelled();
    }
    publish_gauges();
  }
  // Stopping: everything left is told so and released.
  std::lock_guard lock(mu_);
  for (auto& j : jobs_) {
    j->out->fail(ApiError{503, "the server shut down before the request finished", "", ""});
    release(*j);
  }
  jobs_.clear();
  for (auto& j : queue_) j->out->fail(ApiError{503, "the server shut down before the request started", "", ""});
  queue_.clear();
  idle_ = true;
  idle_cv_.notify_all();
}

void Scheduler::drop_finished_and_cancelled() {
  std::erase_if(jobs_, [&](std::unique_ptr<Job>& j) {
    const bool finished = j->decoding && j->held == 0;
    if (!finished && !j->out->cancelled()) return false;
    release(*j);
    return true;
  });
}

int64_t Scheduler::prefill_step(Job& job) {
  try {
    const int64_t n = int64_t(job.prompt.size()), chunk = opt_.prefill_chunk;
    // Chunks end at multiples of `chunk` counted from the prompt's start, whether the prompt began
    // from a cached prefix or from zero: the same computation either way.
    const int64_t end = std::min(n, (job.pos / chunk + 1) * chunk);
    const int64_t cu[2] = {0, end - job.pos};
    SequenceState* sp = &job.prefill;
    model_.forward(std::span<const int32_t>(job.prompt).subspan(size_t(job.pos), size_t(end - job.pos)), cu,
                   std::span<SequenceState* const>(&sp, 1), logits_.data(), true);
    const int64_t ran = end - job.pos;
    job.pos = end;
    if (end < n) {
      const std::span<const int32_t> prefix(job.prompt.data(), size_t(end));
      if (opt_.prefix_cache_bytes > 0 && !cache_.contains(prefix) && (free_slots() > 0 || cache_.evict_one()))
        cache_.insert(prefix, job.prefill);
      return ran;
    }
    // The prompt is in: choice 0 continues its state, the others fork it.
    for (int64_t i = 0; i < job.params.n; ++i) {
      auto c = std::make_unique<Choice>(Choice{i, i + 1 < job.params.n ? SequenceState(job.prefill) : std::move(job.prefill),
                                               Sampler(sampler_options(job.params, i)), TextCodec::Decoder(codec_),
                                               StopMatcher(job.params.stop), {}, 0, -1, false, {}, Clock::now()});
      job.choices.push_back(std::move(c));
    }
    job.decoding = true;
    for (auto& c : job.choices) sample_and_emit(job, *c, logits_.data());
    return ran;
  } catch (const Error& e) {
    job.out->fail(ApiError{500, std::string("prefill failed: ") + e.what(), "", ""});
    job.out->cancel();
    return 0;
  }
}

void Scheduler::decode_step() {
  std::vector<std::pair<Job*, Choice*>> running;
  for (auto& j : jobs_)
    if (j->decoding && !j->out->cancelled())
      for (auto& c : j->choices)
        if (!c->done) running.emplace_back(j.get(), c.get());
  const size_t vp = size_t(model_.config().vocab_padded());
  for (size_t b = 0; b < running.size(); b += size_t(opt_.max_batch)) {
    const size_t e = std::min(running.size(), b + size_t(opt_.max_batch));
    std::vector<int32_t> tokens;
    std::vector<SequenceState*> states;
    for (size_t i = b; i < e; ++i) {
      tokens.push_back(running[i].second->next);
      states.push_back(&running[i].second->state);
    }
    try {
      model_.step(tokens, states, logits_.data());
    } catch (const Error& err) {
      for (size_t i = b; i < e; ++i) {
        running[i].first->out->fail(ApiError{500, std::string("decode step failed: ") + err.what(), "", ""});
        running[i].first->out->cancel();
      }
      continue;
    }
    for (size_t i = b; i < e; ++i) sample_and_emit(*running[i].first, *running[i].second, logits_.data() + (i - b) * vp);
  }
}

void Scheduler::sample_and_emit(Job& job, Choice& c, const float* logits) {
  const size_t V = size_t(model_.config().vocab_size);
  std::copy(logits, logits + V, scratch_.begin());
  // OpenAI's penalties: subtract presence once per token that appeared, frequency per occurrence.
  if (job.params.presence_penalty != 0.0f || job.params.frequency_penalty != 0.0f)
    for (const auto& [tok, count] : c.counts)
      scratch_[size_t(tok)] -= job.params.presence_penalty + job.params.frequency_penalty * float(count);
  // Log-probabilities from the penalised logits, before the sampler's temperature and top_p (and
  // before it may change them in place).
  std::vector<float> lp;
  if (job.params.logprobs >= 0) {
    const float mx = *std::max_element(scratch_.begin(), scratch_.begin() + long(V));
    double sum = 0;
    for (size_t i = 0; i < V; ++i) sum += std::exp(double(scratch_[i]) - mx);
    const float lse = mx + float(std::log(sum));
    lp.resize(V);
    for (size_t i = 0; i < V; ++i) lp[i] = scratch_[i] - lse;
  }
  const int32_t tok = c.sampler.sample(std::span<float>(scratch_.data(), V), {});
  if (!lp.empty()) {
    TokenLogprob t{codec_.token_text(tok), lp[size_t(tok)], {}};
    std::vector<int32_t> idx(V);
    for (size_t i = 0; i < V; ++i) idx[i] = int32_t(i);
    const size_t k = std::min(size_t(job.params.logprobs), V);
    std::partial_sort(idx.begin(), idx.begin() + long(k), idx.end(),
                      [&](int32_t a, int32_t b) { return lp[size_t(a)] > lp[size_t(b)] || (lp[size_t(a)] == lp[size_t(b)] && a < b); });
    for (size_t i = 0; i < k; ++i) t.top.emplace_back(codec_.token_text(idx[i]), lp[size_t(idx[i])]);
    c.logprobs.push_back(std::move(t));
  }
  const auto now = Clock::now();
  if (c.generated == 0) {
    if (c.index == 0) metrics_.time_to_first_token.observe(std::chrono::duration<double>(now - job.arrived).count());
  } else {
    metrics_.inter_token_latency.observe(std::chrono::duration<double>(now - c.last_token).count());
  }
  c.last_token = now;
  ++c.generated;
  ++c.counts[tok];
  ++job.completion_tokens;
  ++metrics_.generated_tokens;
  if (std::find(eos_.begin(), eos_.end(), tok) != eos_.end()) {
    std::string rest = c.stop.push(c.decoder.flush());
    finish(job, c, "stop", rest + c.stop.flush());
    return;
  }
  std::string text = c.stop.push(c.decoder.push(tok));
  if (c.stop.stopped()) {
    finish(job, c, "stop", std::move(text));
    return;
  }
  if (c.generated >= job.params.max_tokens) {
    text += c.stop.push(c.decoder.flush());
    if (!c.stop.stopped()) text += c.stop.flush();
    finish(job, c, c.stop.stopped() ? "stop" : "length", std::move(text));
    return;
  }
  c.next = tok;
  if (!text.empty()) job.out->emit({c.index, std::move(text), "", std::exchange(c.logprobs, {})});
}

void Scheduler::finish(Job& job, Choice& c, const std::string& reason, std::string text) {
  c.done = true;
  c.state = SequenceState();
  --job.held;
  --reserved_;
  job.out->set_usage(int64_t(job.prompt.size()), job.completion_tokens);
  job.out->emit({c.index, std::move(text), reason, std::exchange(c.logprobs, {})});
}

}  // namespace m3::serve
