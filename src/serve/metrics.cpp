#include "serve/metrics.h"

#include <algorithm>
#include <sstream>

namespace m3::serve {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  const size_t b = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[b];
  sum_ += v;
  ++n_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mu_);
  std::ostringstream o;
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    o << name << "_bucket{le=\"" << bounds_[i] << "\"} " << cum << "\n";
  }
  o << name << "_bucket{le=\"+Inf\"} " << n_ << "\n" << name << "_sum " << sum_ << "\n" << name << "_count " << n_ << "\n";
  return o.str();
}

namespace {

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

void line(std::ostringstream& o, const char* name, const char* type, const char* help, double v) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << v << "\n";
}

}  // namespace

Metrics::Metrics() : time_to_first_token(kLatencyBounds), inter_token_latency(kLatencyBounds) {}

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{path, status}];
}

std::string Metrics::render() const {
  std::ostringstream o;
  o << "# HELP m3_requests_total HTTP requests answered, by path and status\n# TYPE m3_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      o << "m3_requests_total{path=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
  }
  line(o, "m3_prompt_tokens_total", "counter", "prompt tokens of admitted requests", double(prompt_tokens));
  line(o, "m3_generated_tokens_total", "counter", "tokens generated", double(generated_tokens));
  line(o, "m3_queue_depth", "gauge", "requests waiting for a state slot", double(queue_depth));
  line(o, "m3_running_sequences", "gauge", "sequences in the running batch (prefilling or decoding)", double(running_sequences));
  line(o, "m3_state_slots_in_use", "gauge", "state-pool slots held by sequences and the prefix cache", double(slots_in_use));
  line(o, "m3_state_slots", "gauge", "state-pool slots in all", double(slots_total));
  line(o, "m3_prefix_cache_hits_total", "counter", "requests that resumed from a cached prefix state", double(prefix_cache_hits));
  line(o, "m3_prefix_cache_misses_total", "counter", "requests with no cached prefix state", double(prefix_cache_misses));
  line(o, "m3_prefix_cache_tokens_reused_total", "counter", "prompt tokens not prefilled thanks to the cache", double(prefix_cache_tokens_reused));
  line(o, "m3_prefix_cache_bytes", "gauge", "bytes of state held by the prefix cache", double(prefix_cache_bytes));
  line(o, "m3_prefix_cache_entries", "gauge", "prefix states cached", double(prefix_cache_entries));
  o << time_to_first_token.render("m3_time_to_first_token_seconds", "from a request's arrival to its first generated token");
  o << inter_token_latency.render("m3_inter_token_latency_seconds", "between consecutive tokens of a sequence");
  return o.str();
}

}  // namespace m3::serve
