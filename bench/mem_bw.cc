// The machine's memory read bandwidth, the yardstick beside kvarn_fma_peak: decode attention at
// long contexts reads the whole KV cache once per token, so its speed limit is this figure.
// Reads a buffer of 4x the last-level cache (at least 512 MiB) with 1 and with all threads.
//
// Usage: kvarn_mem_bw [repetitions] [MiB]   prints each run and the median per thread count.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "common/membw.h"
#include "common/parallel.h"

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const size_t llc = kvarn::LastLevelCacheBytes();
  size_t bytes = std::max<size_t>(size_t(512) << 20, 4 * llc);
  if (argc > 2) bytes = size_t(std::max(1, std::atoi(argv[2]))) << 20;
  const int all = kvarn::DefaultThreadCount();
  for (int threads : {1, all}) {
    const kvarn::MemBandwidth bw = kvarn::MeasureReadBandwidth(bytes, threads, reps);
    for (size_t i = 0; i < bw.runs_gbs.size(); ++i)
      std::printf("threads %d run %zu: %.2f GB/s\n", threads, i, bw.runs_gbs[i]);
    std::printf("read bandwidth, %d thread(s), %.0f MiB buffer (LLC %.0f MiB): median %.2f GB/s\n",
                threads, double(bw.bytes) / double(1 << 20), double(llc) / double(1 << 20),
                bw.median_gbs);
    if (threads == all) break;
  }
  return 0;
}
