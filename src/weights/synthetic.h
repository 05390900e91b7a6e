// Synthetic weight rows for tests and benchmarks: valid blocks of any GgmlType with random codes
// and random finite fp16 scales (never NaN/Inf, so kernels are timed and compared on data a real
// model could hold).
#pragma once

#include <cstdint>

#include "common/rng.h"
#include "weights/ggml_type.h"

namespace kvarn {

// Fills GgmlRowBytes(type, n) bytes at out with n / block_size random blocks. Scales are fp16
// normals with magnitudes around `scale` (sign random where the format allows negative scales);
// float types get values of magnitude ~scale. n must be a multiple of the block size.
void FillRandomRow(GgmlType type, int64_t n, float scale, Rng& rng, uint8_t* out);

}  // namespace kvarn
