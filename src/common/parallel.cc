#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace kvarn {
namespace {

// Caps the pool; more threads than this would only oversubscribe the machines kvarn targets.
constexpr int kMaxThreads = 256;

thread_local bool tls_in_pool_worker = false;

int64_t ChunkBegin(int64_t n_items, int n_chunks, int i) { return n_items * i / n_chunks; }

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a worker waiting for the next job, and the caller waiting for its workers, spin
// before sleeping on the condition variable. A decode step issues a few hundred short jobs
// (one per matvec and attention call); waking a sleeping thread through the kernel costs tens
// of microseconds each on a VM and made the step time jittery. KVARN_SPIN_US overrides the
// default (0: always sleep, e.g. on an oversubscribed machine).
std::chrono::microseconds SpinBudget() {
  static const std::chrono::microseconds budget = [] {
    long us = 200;
    if (const char* e = std::getenv("KVARN_SPIN_US")) {
      char* end = nullptr;
      const long v = std::strtol(e, &end, 10);
      if (end != e && *end == '\0' && v >= 0 && v <= 1000000) us = v;
    }
    return std::chrono::microseconds(us);
  }();
  return budget;
}

// Spins until pred() or the spin budget is spent; returns pred().
template <class Pred>
bool SpinUntil(Pred pred) {
  const auto budget = SpinBudget();
  if (budget.count() == 0) return pred();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (pred()) return true;
    CpuRelax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() - t0 > budget) return pred();
  }
}

// Workers wait for a job (a generation counter) by spinning briefly, then sleeping on a
// condition variable. The job is published under the mutex and read under it, so workers read
// it race-free; each runs at most one chunk. Completion is an atomic count the caller spins on
// before sleeping; the last worker notifies under the mutex, so no wakeup is lost.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  // Runs the job if the pool is free; returns false (running nothing) if it is busy.
  bool TryRun(int n_chunks, int64_t n_items, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> busy(busy_mu_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (static_cast<int>(workers_.size()) < n_chunks - 1) {
        // A new worker starts one generation behind, so it joins the job published below.
        const int index = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back(
            [this, index, seen = generation_.load()] { WorkerLoop(index, seen); });
      }
      fn_ = &fn;
      n_items_ = n_items;
      n_chunks_ = n_chunks;
      pending_.store(n_chunks - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    const int64_t end0 = ChunkBegin(n_items, n_chunks, 1);
    if (end0 > 0) fn(0, end0);
    if (!SpinUntil([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = nullptr;
    return true;
  }

 private:
  void WorkerLoop(int index, uint64_t seen) {
    tls_in_pool_worker = true;
    for (;;) {
      const std::function<void(int64_t, int64_t)>* fn = nullptr;
      int64_t begin = 0, end = 0;
      SpinUntil([&] {
        return generation_.load(std::memory_order_acquire) != seen ||
               stop_.load(std::memory_order_acquire);
      });
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
        if (stop_.load()) return;
        seen = generation_.load();
        if (index >= n_chunks_) continue;  // this job needs fewer threads
        fn = fn_;
        begin = ChunkBegin(n_items_, n_chunks_, index);
        end = ChunkBegin(n_items_, n_chunks_, index + 1);
      }
      if (begin < end) (*fn)(begin, end);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu_);
        done_.notify_one();
      }
    }
  }

  std::mutex busy_mu_;  // held for a whole job: one job at a time
  std::mutex mu_;       // guards everything below
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_items_ = 0;
  int n_chunks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

Pool& GlobalPool() {
  static Pool pool;
  return pool;
}

}  // namespace

void ParallelFor(int n_threads, int64_t n_items,
                 const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n_items <= 0) return;
  const int n_chunks = static_cast<int>(std::clamp<int64_t>(n_threads, 1, kMaxThreads));
  if (n_chunks > 1 && !tls_in_pool_worker && GlobalPool().TryRun(n_chunks, n_items, fn)) return;
  for (int i = 0; i < n_chunks; ++i) {
    const int64_t begin = ChunkBegin(n_items, n_chunks, i);
    const int64_t end = ChunkBegin(n_items, n_chunks, i + 1);
    if (begin < end) fn(begin, end);
  }
}

int DefaultThreadCount() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min<unsigned>(n, kMaxThreads));
}

}  // namespace kvarn
