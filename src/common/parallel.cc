#include "common/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace kvarn {
namespace {

// Caps the pool; more threads than this would only oversubscribe the machines kvarn targets.
constexpr int kMaxThreads = 256;

thread_local bool tls_in_pool_worker = false;

int64_t ChunkBegin(int64_t n_items, int n_chunks, int i) { return n_items * i / n_chunks; }

// Workers sleep on a condition variable and wake per job (a generation counter). The job is
// published under the mutex, so workers read it race-free; each runs at most one chunk.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
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
        workers_.emplace_back([this, index, seen = generation_] { WorkerLoop(index, seen); });
      }
      fn_ = &fn;
      n_items_ = n_items;
      n_chunks_ = n_chunks;
      pending_ = n_chunks - 1;
      ++generation_;
    }
    wake_.notify_all();
    const int64_t end0 = ChunkBegin(n_items, n_chunks, 1);
    if (end0 > 0) fn(0, end0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
    return true;
  }

 private:
  void WorkerLoop(int index, uint64_t seen) {
    tls_in_pool_worker = true;
    for (;;) {
      const std::function<void(int64_t, int64_t)>* fn = nullptr;
      int64_t begin = 0, end = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= n_chunks_) continue;  // this job needs fewer threads
        fn = fn_;
        begin = ChunkBegin(n_items_, n_chunks_, index);
        end = ChunkBegin(n_items_, n_chunks_, index + 1);
      }
      if (begin < end) (*fn)(begin, end);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (--pending_ == 0) done_.notify_one();
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
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
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
