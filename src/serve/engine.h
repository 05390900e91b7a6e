// Engine: the scheduler of `kvarn serve`. One thread owns the model's KV cache and runs, in a
// loop: drop cancelled requests (their pages are freed at once), admit waiting requests whose
// worst case fits the byte budget, prefill up to one chunk's worth of prompt rows (the next
// chunks of the oldest admitted prompts, each its own forward pass), and one decode step of
// every decoding sequence together (Model::DecodeBatch: the weights are read once per tile of
// sequences, not once per sequence). A long prompt thus delays the others' next token by one
// chunk per step, never by its whole prefill.
//
// Determinism. Every request's tokens are exactly what it would get alone, whatever else runs:
//  - prefill chunks end at multiples of the chunk size (absolute positions, as `kvarn run -b`
//    chunks), so a prompt token's K/V never depend on load; the row count of a chunk selects the
//    matrix-product path (docs/deviations.md) and which blocks are still fp16 while it runs,
//    so it is fixed by position, never by the schedule;
//  - a decode step computes each sequence's products by the per-token route, bit-identical to a
//    step of that sequence alone (tested for 18 sequences);
//  - prefix reuse copies only whole chunks that a cold prefill computes identically (the common
//    prefix rounded down to a multiple of lcm(chunk, block)), taken from the prompt part of
//    another sequence (KvCache::CopyPrefix); what follows is prefilled at the same positions.
//
// Admission. A request is admitted when its worst case (PeakSequenceBytes of its plan: prompt
// plus max_tokens, chunked prefill, commit-rule transients) fits in budget - reserved - cached
// prefixes, after evicting least recently used prefixes; otherwise it waits in a bounded queue
// (full: 429). One whose worst case exceeds the whole budget is refused (400). Reservations
// never exceed the budget, so a live sequence can never run out of pages.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "serve/admission.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "serve/stop_matcher.h"

namespace kvarn::serve {

struct EngineOptions {
  int n_threads = 1;
  int chunk = 256;  // prefill chunk (-b): chunks end at multiples of it
  // Prompt rows prefilled per step, over one or more requests' chunks (at least one chunk);
  // 0: one chunk's worth. Bounds how long a step's prefill delays the decoding streams.
  int prefill_rows_per_step = 0;
  int max_running = 8;       // --parallel: live sequences at most
  int max_waiting = 32;      // --queue: waiting requests at most (then 429)
  bool prefix_reuse = true;  // --no-prefix-cache turns it off
  int max_prefix_entries = 32;
};

class Engine {
 public:
  // The cache must outlive the engine; after Start() only the engine thread touches it.
  Engine(const Model& model, const Tokenizer& tokenizer, KvCache& cache, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void Start();
  // Ends the loop; every waiting or running job gets a 503 event.
  void Stop();

  // Queues the job, or refuses it: the queue is full (429), its worst case exceeds the whole
  // budget (400), the engine has stopped (503).
  std::optional<ApiError> Submit(std::shared_ptr<Job> job);

  EngineSnapshot Snapshot() const;
  // Prefix reuse granularity: lcm(chunk, cache block).
  int prefix_align() const { return align_; }
  // Peak bytes of a cold request of prompt_tokens + max_tokens (what admission reserves).
  size_t ColdPeakBytes(int prompt_tokens, int max_tokens) const;

 private:
  struct Running;
  struct Prefix {
    int seq = -1;
    std::vector<int32_t> tokens;
    size_t bytes = 0;
    uint64_t used = 0;
  };

  void Loop();
  void ReapCancelled();
  void Admit();
  void PrefillStep();
  void DecodeStep();
  // Samples from logits and moves the request on; false once it has finished.
  bool HandleToken(Running& r, float* logits);
  void Finish(Running& r, const std::string& reason, std::string text);
  void Fail(Running& r, const ApiError& error);
  void Retire(Running& r);  // frees (or caches the prefix of) its sequence
  void RemovePrefix(size_t i);
  void Publish(bool force);
  std::vector<BlockKind> BlockKinds(int seq, int n_blocks) const;

  const Model& model_;
  const Tokenizer& tok_;
  KvCache& cache_;
  EngineOptions opt_;
  int align_ = 0;

  mutable std::mutex mu_;  // guards waiting_, stop_, stats_ counters touched by Submit
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  bool stop_ = false;
  bool started_ = false;
  std::thread thread_;

  // Engine thread only.
  std::vector<std::unique_ptr<Running>> running_;
  std::vector<Prefix> prefixes_;
  size_t reserved_ = 0;
  size_t prefix_bytes_ = 0;
  uint64_t tick_ = 0;
  EngineSnapshot stats_;  // counters and histograms (refused_* live below, under mu_)
  int64_t refused_queue_full_ = 0, refused_budget_ = 0;  // guarded by mu_
  std::chrono::steady_clock::time_point last_publish_{};

  mutable std::mutex snap_mu_;
  EngineSnapshot snapshot_;
};

}  // namespace kvarn::serve
