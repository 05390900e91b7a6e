// Memory read bandwidth of this machine, measured: the yardstick that decode attention's
// bytes-per-second figures are quoted against (kvarn bench attention, kvarn_mem_bw).
//
// Threads read disjoint contiguous slices of one buffer with full-width SIMD loads, summing
// them so nothing is elided; the buffer should be several times the last-level cache so the
// reads come from DRAM, as a whole model's KV cache does in decode.
#pragma once

#include <cstddef>
#include <vector>

namespace kvarn {

struct MemBandwidth {
  double median_gbs = 0;         // median over the repetitions, GB/s (1e9 bytes)
  std::vector<double> runs_gbs;  // each repetition
  size_t bytes = 0;              // buffer size
  int threads = 0;
};

// Reads a buffer of `bytes` (rounded to 4 KiB) `reps` times with `threads` threads (the
// ParallelFor pool); the buffer is written once before the first timed read.
MemBandwidth MeasureReadBandwidth(size_t bytes, int threads, int reps);

// Size of the last-level cache in bytes from sysfs (0 if unknown).
size_t LastLevelCacheBytes();

}  // namespace kvarn
