#include "weights/activations.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace kvarn {
namespace {

// Quantizes one block of 32 values. Scalar on purpose: it is O(cols) per token against the
// kernels' O(rows * cols), and one readable version serves every SIMD target.
void QuantizeBlock(const float* x, int16_t* codes, float* scale, float* sum) {
  float amax = 0.0f;
  float s = 0.0f;
  for (int i = 0; i < kActBlock; ++i) {
    amax = std::max(amax, std::fabs(x[i]));
    s += x[i];
  }
  const float d = amax / 127.0f;
  // A subnormal d can have an infinite inverse; its block then quantizes to zeros (the values
  // are below 127 * 2^-126, far under anything a model's activations carry).
  float id = d != 0.0f ? 1.0f / d : 0.0f;
  if (std::isinf(id)) id = 0.0f;
  for (int i = 0; i < kActBlock; ++i) {
    // round-half-even (the default rounding mode); the clamp only guards the ulp by which
    // x * id can exceed 127 when x is the block maximum.
    const float q = std::clamp(std::nearbyint(x[i] * id), -127.0f, 127.0f);
    const int16_t code = static_cast<int16_t>(q);
    const int pair_split = (i % 2) * (kActBlock / 2) + i / 2;
    codes[pair_split] = code;
  }
  *scale = d;
  *sum = s;
}

}  // namespace

Status PrepareActivations(GgmlType weight_type, const float* x, int64_t n_tok, int64_t cols,
                          PreparedActivations* out) {
  size_t row_bytes = 0;
  KVARN_RETURN_IF_ERROR(GgmlRowBytes(weight_type, cols, &row_bytes));
  if (n_tok < 0) return InvalidArgument("negative token count " + std::to_string(n_tok));
  const GgmlTypeInfo* info = FindGgmlTypeInfo(weight_type);
  out->weight_type = weight_type;
  out->n_tok = n_tok;
  out->cols = cols;
  out->x = x;
  out->quantized = info->quantized;
  if (!info->quantized) {
    out->n_blocks = out->block_stride = 0;
    return Status::Ok();
  }
  out->n_blocks = cols / kActBlock;
  out->block_stride = (out->n_blocks + 7) / 8 * 8;
  const size_t n_codes = static_cast<size_t>(n_tok * out->n_blocks * kActBlock);
  const size_t n_scales = static_cast<size_t>(n_tok * out->block_stride);
  // Buffers are reused across calls (a decode step prepares hundreds of vectors).
  if (out->codes.size() < n_codes) out->codes.Resize(n_codes);
  if (out->scales.size() < n_scales) {
    out->scales.Resize(n_scales);
    out->sums.Resize(n_scales);
  }
  for (int64_t t = 0; t < n_tok; ++t) {
    int16_t* codes = out->codes.data() + t * out->n_blocks * kActBlock;
    float* scales = out->scales.data() + t * out->block_stride;
    float* sums = out->sums.data() + t * out->block_stride;
    for (int64_t b = 0; b < out->n_blocks; ++b) {
      QuantizeBlock(x + t * cols + b * kActBlock, codes + b * kActBlock, scales + b, sums + b);
    }
    // The kernels read scales and sums 8 blocks at a time: the padding must be zero.
    for (int64_t b = out->n_blocks; b < out->block_stride; ++b) scales[b] = sums[b] = 0.0f;
  }
  return Status::Ok();
}

float DequantizedActivation(const PreparedActivations& act, int64_t t, int64_t c) {
  if (!act.quantized) return act.x[t * act.cols + c];
  const int64_t b = c / kActBlock;
  const int i = static_cast<int>(c % kActBlock);
  const int pair_split = (i % 2) * (kActBlock / 2) + i / 2;
  return act.token_scales(t)[b] *
         static_cast<float>(act.token_codes(t)[b * kActBlock + pair_split]);
}

}  // namespace kvarn
