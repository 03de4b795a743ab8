// The server's counters, gauges and latency histograms, rendered in Prometheus' text format for
// GET /metrics. Safe to update from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace m3::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Prometheus lines for metric `name` (buckets, sum, count).
  std::string render(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; one more for +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

struct Metrics {
  Metrics();
  // Requests answered, by endpoint path and HTTP status.
  void count_request(const std::string& path, int status);

  std::atomic<uint64_t> prompt_tokens{0}, generated_tokens{0};
  std::atomic<uint64_t> prefix_cache_hits{0}, prefix_cache_misses{0}, prefix_cache_tokens_reused{0};
  // Gauges the scheduler sets after each step.
  std::atomic<int64_t> queue_depth{0}, running_sequences{0}, slots_in_use{0}, slots_total{0};
  std::atomic<int64_t> prefix_cache_bytes{0}, prefix_cache_entries{0};
  Histogram time_to_first_token, inter_token_latency;

  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
};

}  // namespace m3::serve
