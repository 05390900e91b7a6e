#include "common/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace kvarn {
namespace {

// Every item is visited exactly once, in the documented contiguous chunks.
TEST(ParallelFor, CoversEachItemOnceInDocumentedChunks) {
  for (int threads : {1, 2, 3, 7, 16}) {
    for (int64_t n : {0, 1, 2, 5, 100, 1001}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      std::mutex mu;
      std::set<std::pair<int64_t, int64_t>> chunks;
      ParallelFor(threads, n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) seen[static_cast<size_t>(i)]++;
        std::lock_guard<std::mutex> lock(mu);
        chunks.insert({begin, end});
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1);
      std::set<std::pair<int64_t, int64_t>> expected;
      for (int i = 0; i < threads; ++i) {
        const int64_t b = n * i / threads, e = n * (i + 1) / threads;
        if (b < e) expected.insert({b, e});
      }
      EXPECT_EQ(chunks, expected) << threads << " threads, " << n << " items";
    }
  }
}

TEST(ParallelFor, NestedAndConcurrentCallsComplete) {
  std::atomic<int64_t> total{0};
  ParallelFor(4, 4, [&](int64_t, int64_t) {
    ParallelFor(3, 10, [&](int64_t b, int64_t e) { total += e - b; });
  });
  EXPECT_EQ(total.load(), 40);

  total = 0;
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        ParallelFor(3, 9, [&](int64_t b, int64_t e) { total += e - b; });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 9);
}

TEST(ParallelFor, DefaultThreadCountIsPositive) { EXPECT_GE(DefaultThreadCount(), 1); }

}  // namespace
}  // namespace kvarn
