// Continuous batching. One thread owns the Model and runs it in steps: between steps queued
// requests join (when state slots are free) and finished or cancelled ones leave; each step
// prefills prompt chunks of waiting requests in turn, up to --prefill-chunk tokens in all (so a
// long prompt does not stall the running streams), then advances every decoding sequence by one
// token in batched Model::step calls. Each prompt chunk is its own Model::forward call, cut at
// multiples of the chunk size from the prompt's start, so a request computes the same alone, in
// a batch or resumed from the prefix cache.
// Each sequence holds a slot of the model's fixed state pool; the prefix cache holds the rest.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "m3/model.h"
#include "serve/generation.h"
#include "serve/generation_stream.h"
#include "serve/metrics.h"
#include "serve/prefix_cache.h"
#include "serve/text_codec.h"

namespace m3::serve {

struct SchedulerOptions {
  int64_t slots = 16;            // sequences (and cached prefixes) the state pool holds
  int64_t max_queue = 64;        // requests waiting for slots before new ones get 429
  int64_t prefill_chunk = 256;   // prompt tokens per prefill step
  int64_t max_batch = 64;        // sequences per Model::step call
  size_t prefix_cache_bytes = size_t(64) << 20;  // 0: no prefix cache
};

class Scheduler {
 public:
  // The model's state pool must already be fixed to opt.slots slots (Model::fix_state_pool).
  Scheduler(Model& model, const TextCodec& codec, std::vector<int32_t> eos_ids, SchedulerOptions opt, Metrics& metrics);
  ~Scheduler();  // cancels whatever still runs (503 to its clients) and joins the thread

  // Queues a request; nullopt when queued, else why not (503 draining, 429 queue full, 400 more
  // choices than slots). Prompt ids must be in the vocabulary and non-empty.
  std::optional<ApiError> submit(std::vector<int32_t> prompt, const GenerationParams& params,
                                 std::shared_ptr<GenerationStream> out);
  // Refuses new requests and waits until the admitted and queued ones have finished, or until
  // `timeout`; what remains then is cancelled.
  void drain(std::chrono::milliseconds timeout);

 private:
  struct Choice;
  struct Job;
  void loop();
  bool admit(Job& job);
  int64_t prefill_step(Job& job);  // one chunk of the job's prompt; returns its tokens
  void decode_step();
  void sample_and_emit(Job& job, Choice& c, const float* logits);
  void finish(Job& job, Choice& c, const std::string& reason, std::string text);
  void release(Job& job);
  void drop_finished_and_cancelled();
  int64_t free_slots() const;
  void publish_gauges();

  Model& model_;
  const TextCodec& codec_;
  std::vector<int32_t> eos_;
  SchedulerOptions opt_;
  Metrics& metrics_;
  PrefixCache cache_;

  std::mutex mu_;  // guards queue_, draining_, stopping_ and idle_
  std::condition_variable wake_, idle_cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool draining_ = false, stopping_ = false, idle_ = true;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Job>> jobs_;  // admitted: prefilling or decoding
  size_t next_prefill_ = 0;                 // round robin over prefilling jobs
  int64_t reserved_ = 0;                    // slots held or promised to admitted jobs
  std::vector<float> logits_, scratch_;
  std::thread thread_;
};

}  // namespace m3::serve
