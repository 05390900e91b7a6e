#include "common/membw.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/membw.cc"
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "common/parallel.h"
#include "hwy/aligned_allocator.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of the 64-bit words of [p, p + n) (n a multiple of 4 vectors): four independent
// accumulators so the loop is bound by loads.
uint64_t SumWordsT(const uint64_t* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<uint64_t> d;
  const size_t N = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  for (size_t i = 0; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(d, p + i));
    a1 = hn::Add(a1, hn::LoadU(d, p + i + N));
    a2 = hn::Add(a2, hn::LoadU(d, p + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(d, p + i + 3 * N));
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn {
HWY_EXPORT(SumWordsT);

MemBandwidth MeasureReadBandwidth(size_t bytes, int threads, int reps) {
  MemBandwidth r;
  r.threads = std::max(1, threads);
  const size_t words = std::max<size_t>(bytes / 4096, 1) * 4096 / sizeof(uint64_t);
  r.bytes = words * sizeof(uint64_t);
  auto buf = hwy::AllocateAligned<uint64_t>(words);
  // Write every page (first touch from the pool, as the reads will be).
  ParallelFor(r.threads, r.threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const size_t lo = words * size_t(t) / size_t(r.threads);
      const size_t hi = words * size_t(t + 1) / size_t(r.threads);
      for (size_t i = lo; i < hi; ++i) buf[i] = i;
    }
  });
  std::vector<uint64_t> sums(size_t(r.threads));
  for (int rep = 0; rep < std::max(1, reps); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    ParallelFor(r.threads, r.threads, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        // Slices of whole 256-byte groups (4 vectors of up to 64 bytes).
        const size_t groups = words / 32;
        const size_t lo = groups * size_t(t) / size_t(r.threads) * 32;
        const size_t hi = groups * size_t(t + 1) / size_t(r.threads) * 32;
        sums[size_t(t)] = HWY_DYNAMIC_DISPATCH(SumWordsT)(buf.get() + lo, hi - lo);
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.runs_gbs.push_back(double(r.bytes) / s / 1e9);
  }
  // The sums are checked so the reads cannot be optimized away.
  uint64_t total = 0;
  for (uint64_t x : sums) total += x;
  if (total == 1) std::abort();
  std::vector<double> sorted = r.runs_gbs;
  std::sort(sorted.begin(), sorted.end());
  r.median_gbs = sorted[sorted.size() / 2];
  return r;
}

size_t LastLevelCacheBytes() {
  size_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string s;
    if (!(f >> s) || s.empty()) continue;
    size_t v = std::strtoull(s.c_str(), nullptr, 10);
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    best = std::max(best, v);
  }
  return best;
}

}  // namespace kvarn
#endif
