// What /metrics reports: the scheduler's counters and gauges (a snapshot it publishes between
// steps; the cache is not thread-safe, so only the scheduler reads it), the HTTP front end's
// response counts, rendered in Prometheus' text format (version 0.0.4).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cache/kv_cache.h"

namespace kvarn::serve {

// A Prometheus histogram: counts per upper bound (cumulative when rendered), sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // last: above every bound
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

struct EngineSnapshot {
  // Requests by outcome.
  int64_t finished_stop = 0, finished_length = 0, cancelled = 0, failed = 0;
  int64_t refused_queue_full = 0, refused_budget = 0;
  // Work done.
  int64_t prompt_tokens = 0;         // prefilled
  int64_t prompt_tokens_cached = 0;  // reused from the prefix cache instead
  int64_t generated_tokens = 0;
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;  // tokens computed by decode steps (sequences x steps)
  double prefill_seconds = 0.0, decode_seconds = 0.0;
  // Now.
  int waiting = 0, running = 0, last_batch = 0, prefix_entries = 0;
  CacheStats cache;           // every byte the cache holds, by kind
  size_t reserved_bytes = 0;  // admitted sequences' worst cases
  size_t prefix_bytes = 0;    // pages of cached prefixes (evictable)
  Histogram time_to_first_token{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
  Histogram decode_step_seconds{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  Histogram decode_batch_size{{1, 2, 4, 8, 16, 32, 64, 128}};
};

// HTTP responses by (route, status).
using HttpCounts = std::map<std::pair<std::string, int>, int64_t>;

std::string RenderPrometheus(const EngineSnapshot& s, const HttpCounts& http,
                             const std::string& model_id, const std::string& cache_type);

}  // namespace kvarn::serve
