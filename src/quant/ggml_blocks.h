// llama.cpp / ggml block formats shared by the KV-cache baselines (q8_0, q4_0, q4_1: quant
// layer) and the GGUF weight loader (model layer). Byte layouts match ggml-common.h exactly;
// the static_asserts pin them.
//
// Row codecs: one row of n values (one token of one KV head) is n/32 consecutive blocks, quantized
// with llama.cpp's reference arithmetic (ggml-quants.c quantize_row_*_ref, dequantize_row_*), so
// kvarn's baselines are the cache types llama.cpp users actually run.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/fp16.h"
#include "quant/codec_spec.h"

namespace kvarn {

inline constexpr int kQK8_0 = 32;  // values per q8_0 block
inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;

struct BlockQ8_0 {
  f16_t d;             // scale: x = d * q
  int8_t qs[kQK8_0];   // quants
};
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block size");

struct BlockQ4_0 {
  f16_t d;                  // scale: x = d * (q - 8)
  uint8_t qs[kQK4_0 / 2];   // low nibble: element j, high nibble: element j + 16
};
static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block size");

struct BlockQ4_1 {
  f16_t d;                  // scale
  f16_t m;                  // min: x = d * q + m
  uint8_t qs[kQK4_1 / 2];   // nibbles as in q4_0
};
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block size");

// Bytes of one row of n values. kind is kQ8_0, kQ4_0, kQ4_1 (n % 32 == 0), kF16 or kF32 (any
// n >= 0); anything else is a kvarn bug (callers validate with ValidateCodec) and aborts.
size_t GgmlRowBytes(CodecKind kind, int n);

// Quantizes x [n] into GgmlRowBytes(kind, n) bytes at out (no alignment needed). x must be finite
// (Codec::Encode rejects NaN/Inf before calling): llama.cpp's float->int8 casts are undefined
// for non-finite values, and so are these.
void QuantizeRowRef(CodecKind kind, const float* x, int n, uint8_t* out);
// Decodes GgmlRowBytes(kind, n) bytes at in into out [n].
void DequantizeRowRef(CodecKind kind, const uint8_t* in, int n, float* out);

// Fast paths: Highway SIMD with runtime dispatch, or the Ref functions when ForceReference().
// For finite input they produce the same bytes (and the same floats) as the Ref functions.
void QuantizeRow(CodecKind kind, const float* x, int n, uint8_t* out);
void DequantizeRow(CodecKind kind, const uint8_t* in, int n, float* out);

namespace ggml_detail {
// The inverse scale used to quantize: llama.cpp's `d ? 1.0f/d : 0.0f`, except that an inverse
// that overflows to inf (|d| < ~2.9e-39, a subnormal scale) also gives 0. llama.cpp then casts
// inf/NaN to int8_t, which is undefined behaviour (the codes it gets are compiler-dependent);
// with 0 the block gets the codes of an all-zero block. The stored fp16
// scale of such a block is 0 either way, so every value decodes to 0 exactly as in llama.cpp.
// Shared by the reference and the SIMD kernels so both make the same choice.
inline float InverseScale(float d) {
  if (d == 0.0f) return 0.0f;
  const float id = 1.0f / d;
  return std::isinf(id) ? 0.0f : id;
}
}  // namespace ggml_detail

}  // namespace kvarn
