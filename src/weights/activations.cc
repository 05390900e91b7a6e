#include "weights/activations.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace kvarn {
namespace {

// Quantizes one block of 32 values. Scalar on purpose: it is O(cols) per token against the
// kernels' O(rows * cols), and one readable version serves every SIMD target.
void QuantizeBlock(const float* x, int8_t* codes, float* scale, float* sum, float* code_sum,
                   int16_t* code_sums16) {
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
  int half_sums[2] = {0, 0};
  for (int i = 0; i < kActBlock; ++i) {
    // round-half-even (the default rounding mode); the clamp only guards the ulp by which
    // x * id can exceed 127 when x is the block maximum.
    const float q = std::clamp(std::nearbyint(x[i] * id), -127.0f, 127.0f);
    codes[i] = static_cast<int8_t>(q);
    half_sums[i / 16] += codes[i];
  }
  *scale = d;
  *sum = s;
  *code_sum = static_cast<float>(half_sums[0] + half_sums[1]);  // |sum| <= 4064: exact
  code_sums16[0] = static_cast<int16_t>(half_sums[0]);
  code_sums16[1] = static_cast<int16_t>(half_sums[1]);
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
    out->code_sums.Resize(n_scales);
    out->code_sums16.Resize(2 * n_scales);
  }
  for (int64_t t = 0; t < n_tok; ++t) {
    int8_t* codes = out->codes.data() + t * out->n_blocks * kActBlock;
    float* scales = out->scales.data() + t * out->block_stride;
    float* sums = out->sums.data() + t * out->block_stride;
    float* code_sums = out->code_sums.data() + t * out->block_stride;
    int16_t* code_sums16 = out->code_sums16.data() + t * 2 * out->block_stride;
    for (int64_t b = 0; b < out->n_blocks; ++b) {
      QuantizeBlock(x + t * cols + b * kActBlock, codes + b * kActBlock, scales + b, sums + b,
                    code_sums + b, code_sums16 + 2 * b);
    }
    // The kernels read these 8 blocks at a time: the padding must be zero.
    for (int64_t b = out->n_blocks; b < out->block_stride; ++b) {
      scales[b] = sums[b] = code_sums[b] = 0.0f;
      code_sums16[2 * b] = code_sums16[2 * b + 1] = 0;
    }
  }
  return Status::Ok();
}

float DequantizedActivation(const PreparedActivations& act, int64_t t, int64_t c) {
  if (!act.quantized) return act.x[t * act.cols + c];
  return act.token_scales(t)[c / kActBlock] * static_cast<float>(act.token_codes(t)[c]);
}

}  // namespace kvarn
