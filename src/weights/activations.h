// Activations x [n_tok][cols] prepared once per matvec/matmul call for the weight type's kernel.
//
// Float weights (f32, f16, bf16) use x as it is. Quantized weights use llama.cpp's route: x is
// quantized per 32-value block to int8 codes (q8_0-like: scale = max|x| / 127, code =
// round(x / scale) in [-127, 127]) so the kernels multiply integer weight codes by integer x codes
// exactly and apply both scales once per block. Per block the f32 sum of x is kept too, for the
// weight formats with an additive min (min * sum of x), and the sums of the codes, for the
// formats whose codes carry a fixed offset (q4_0's -8: the kernels multiply the unsigned code and
// subtract offset * code sum).
//
// Error this adds (the tests' bound): |x - scale * code| <= scale / 2 per value (plus a few fp32
// ulps from forming 1/scale), so a dot product moves by at most
// sum_i |w_i| * scale_b(i) / 2 ~ max|x_block| / 254 * sum|w|.
#pragma once

#include <cstdint>

#include "common/aligned.h"
#include "common/status.h"
#include "weights/ggml_type.h"

namespace kvarn {

// Values per activation block (every quantized weight block size is a multiple of it).
inline constexpr int kActBlock = 32;

struct PreparedActivations {
  GgmlType weight_type = GgmlType::kF32;
  int64_t n_tok = 0;
  int64_t cols = 0;
  // The caller's activations [n_tok][cols]; the float kernels and the reference read them, so
  // they must stay alive (and unchanged) while this is used.
  const float* x = nullptr;

  // Only for quantized weight types:
  bool quantized = false;
  int64_t n_blocks = 0;                // cols / kActBlock
  int64_t block_stride = 0;            // n_blocks rounded up to a multiple of 8 (zero padding)
  AlignedBuffer<int8_t> codes;         // [n_tok][n_blocks][32] in value order
  AlignedBuffer<float> scales;         // [n_tok][block_stride]: x ~= scale * code
  AlignedBuffer<float> sums;           // [n_tok][block_stride]: f32 sum of the block's x, in order
  AlignedBuffer<float> code_sums;      // [n_tok][block_stride]: sum of the block's 32 codes
  AlignedBuffer<int16_t> code_sums16;  // [n_tok][2 * block_stride]: sums of codes 0-15, 16-31

  const int8_t* token_codes(int64_t t) const { return codes.data() + t * n_blocks * kActBlock; }
  const float* token_scales(int64_t t) const { return scales.data() + t * block_stride; }
  const float* token_sums(int64_t t) const { return sums.data() + t * block_stride; }
  const float* token_code_sums(int64_t t) const { return code_sums.data() + t * block_stride; }
  const int16_t* token_code_sums16(int64_t t) const {
    return code_sums16.data() + t * 2 * block_stride;
  }
};

// Prepares x [n_tok][cols] for a weight matrix of `weight_type` with `cols` columns.
// kInvalidArgument if cols is not a whole number of weight blocks or a count is negative.
// x is not checked for NaN/Inf (hot path); non-finite x gives non-finite outputs.
Status PrepareActivations(GgmlType weight_type, const float* x, int64_t n_tok, int64_t cols,
                          PreparedActivations* out);

// The value the quantized kernels use in place of x[t][c] (scale * code); for tests.
float DequantizedActivation(const PreparedActivations& act, int64_t t, int64_t c);

}  // namespace kvarn
