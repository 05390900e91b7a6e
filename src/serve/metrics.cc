#include "serve/metrics.h"

#include <cstdio>

namespace kvarn::serve {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

class Writer {
 public:
  explicit Writer(std::string labels) : labels_(std::move(labels)) {}
  void Head(const std::string& name, const char* type, const char* help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Sample(const std::string& name, double v, const std::string& extra = "") {
    std::string l = labels_;
    if (!extra.empty()) l += (l.empty() ? "" : ",") + extra;
    out_ += name + (l.empty() ? "" : "{" + l + "}") + " " + Num(v) + "\n";
  }
  void One(const std::string& name, const char* type, const char* help, double v) {
    Head(name, type, help);
    Sample(name, v);
  }
  void Hist(const std::string& name, const char* help, const Histogram& h) {
    Head(name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h.bounds().size(); ++i) {
      cum += h.counts()[i];
      Sample(name + "_bucket", double(cum), "le=\"" + Num(h.bounds()[i]) + "\"");
    }
    Sample(name + "_bucket", double(h.count()), "le=\"+Inf\"");
    Sample(name + "_sum", h.sum());
    Sample(name + "_count", double(h.count()));
  }
  std::string str() const { return out_; }

 private:
  std::string labels_;
  std::string out_;
};

// Label values: backslash, quote and newline escaped.
std::string Label(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

}  // namespace

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string RenderPrometheus(const EngineSnapshot& s, const HttpCounts& http,
                             const std::string& model_id, const std::string& cache_type) {
  Writer w("model=\"" + Label(model_id) + "\"");
  w.Head("kvarn_requests_total", "counter", "Requests that ended, by outcome.");
  w.Sample("kvarn_requests_total", double(s.finished_stop), "outcome=\"stop\"");
  w.Sample("kvarn_requests_total", double(s.finished_length), "outcome=\"length\"");
  w.Sample("kvarn_requests_total", double(s.cancelled), "outcome=\"cancelled\"");
  w.Sample("kvarn_requests_total", double(s.failed), "outcome=\"error\"");
  w.Head("kvarn_requests_refused_total", "counter",
         "Requests refused by the scheduler: queue full (429) or more than the KV budget (400).");
  w.Sample("kvarn_requests_refused_total", double(s.refused_queue_full), "reason=\"queue_full\"");
  w.Sample("kvarn_requests_refused_total", double(s.refused_budget), "reason=\"budget\"");
  w.One("kvarn_requests_waiting", "gauge", "Requests queued for admission.", s.waiting);
  w.One("kvarn_requests_running", "gauge", "Live sequences (admitted, prefilling or decoding).",
        s.running);
  w.One("kvarn_prompt_tokens_total", "counter", "Prompt tokens prefilled.",
        double(s.prompt_tokens));
  w.One("kvarn_prompt_tokens_cached_total", "counter",
        "Prompt tokens reused from the prefix cache instead of prefilled.",
        double(s.prompt_tokens_cached));
  w.One("kvarn_tokens_generated_total", "counter", "Tokens generated.", double(s.generated_tokens));
  w.One("kvarn_prompt_seconds_total", "counter", "Seconds spent in prefill chunks.",
        s.prefill_seconds);
  w.One("kvarn_decode_seconds_total", "counter", "Seconds spent in decode steps.",
        s.decode_seconds);
  w.One("kvarn_prompt_tokens_per_second", "gauge",
        "Prefill throughput over the server's life: prompt tokens / prefill seconds.",
        s.prefill_seconds > 0 ? double(s.prompt_tokens) / s.prefill_seconds : 0.0);
  w.One("kvarn_decode_tokens_per_second", "gauge",
        "Aggregate decode throughput over the server's life: tokens fed to decode steps / decode "
        "seconds.",
        s.decode_seconds > 0 ? double(s.decode_tokens) / s.decode_seconds : 0.0);
  w.One("kvarn_decode_steps_total", "counter",
        "Decode steps (one token of every decoding "
        "sequence each).",
        double(s.decode_steps));
  w.One("kvarn_decode_batch_last", "gauge", "Sequences in the last decode step.", s.last_batch);

  w.Head("kvarn_kv_cache_bytes", "gauge",
         "Bytes the KV cache holds, by kind (the cache's own accounting).");
  const std::string ct = "cache_type=\"" + Label(cache_type) + "\",";
  w.Sample("kvarn_kv_cache_bytes", double(s.cache.record_bytes), ct + "kind=\"records\"");
  w.Sample("kvarn_kv_cache_bytes", double(s.cache.sink_bytes), ct + "kind=\"sink_f16\"");
  w.Sample("kvarn_kv_cache_bytes", double(s.cache.tail_bytes), ct + "kind=\"tail_f16\"");
  w.Sample("kvarn_kv_cache_bytes", double(s.cache.row_bytes), ct + "kind=\"rows\"");
  w.Sample("kvarn_kv_cache_bytes", double(s.cache.scratch_bytes), ct + "kind=\"scratch\"");
  w.One("kvarn_kv_cache_budget_bytes", "gauge", "The KV cache's byte budget for pages.",
        double(s.cache.budget));
  w.One("kvarn_kv_cache_reserved_bytes", "gauge",
        "Worst-case page bytes reserved by admitted sequences.", double(s.reserved_bytes));
  w.One("kvarn_kv_cache_prefix_bytes", "gauge",
        "Page bytes of cached prompt prefixes (evicted when admission needs them).",
        double(s.prefix_bytes));
  const size_t pages = s.cache.total() - s.cache.scratch_bytes;
  w.One("kvarn_kv_cache_usage_ratio", "gauge", "Page bytes in use / budget.",
        s.cache.budget > 0 ? double(pages) / double(s.cache.budget) : 0.0);
  w.One("kvarn_kv_cache_tokens", "gauge", "Tokens stored, every sequence and cached prefix.",
        double(s.cache.tokens));
  w.One("kvarn_prefix_cache_entries", "gauge", "Cached prompt prefixes.", s.prefix_entries);
  w.Hist("kvarn_time_to_first_token_seconds", "Submission to first token.", s.time_to_first_token);
  w.Hist("kvarn_decode_step_seconds", "Duration of one decode step (every live sequence).",
         s.decode_step_seconds);
  w.Hist("kvarn_decode_batch_size", "Sequences per decode step.", s.decode_batch_size);
  std::string out = w.str();
  Writer h("");
  h.Head("kvarn_http_responses_total", "counter", "HTTP responses by route and status.");
  for (const auto& [key, n] : http)
    h.Sample("kvarn_http_responses_total", double(n),
             "route=\"" + Label(key.first) + "\",status=\"" + std::to_string(key.second) + "\"");
  return out + h.str();
}

}  // namespace kvarn::serve
