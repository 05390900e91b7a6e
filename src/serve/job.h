// Job: one request's channel between the HTTP handler that submitted it and the scheduler that
// runs it. The scheduler pushes events (released text, logprobs, the finish); the handler waits
// for them and may cancel (client gone), which the scheduler notices at its next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "serve/api_error.h"
#include "serve/request.h"

namespace kvarn::serve {

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;                        // log-softmax of the raw logits
  std::vector<std::pair<int32_t, float>> top;  // the top_logprobs best, best first
};

struct Usage {
  int prompt_tokens = 0;
  int cached_tokens = 0;      // of the prompt, reused from the prefix cache
  int completion_tokens = 0;  // sampled tokens (the end-of-generation token is not counted)
};

struct JobEvent {
  std::string text;                    // text released by this event (valid UTF-8)
  std::vector<TokenLogprob> logprobs;  // tokens sampled since the last event (when asked)
  std::string finish_reason;           // "" while running; "stop" or "length" at the end
  bool failed = false;                 // the run failed after admission: error says why
  ApiError error;
  Usage usage;  // complete in the last event
};

class Job {
 public:
  explicit Job(CompletionRequest request) : request_(std::move(request)) {}

  const CompletionRequest& request() const { return request_; }

  // Handler side. Waits up to timeout for events; moves all pending ones into *out.
  bool Wait(std::vector<JobEvent>* out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
    if (events_.empty()) return false;
    for (JobEvent& e : events_) out->push_back(std::move(e));
    events_.clear();
    return true;
  }
  void Cancel() { cancelled_.store(true); }

  // Scheduler side.
  bool cancelled() const { return cancelled_.load(); }
  void Push(JobEvent e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  // Timestamps (scheduler side, read by the handler after the last event).
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();

 private:
  CompletionRequest request_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace kvarn::serve
