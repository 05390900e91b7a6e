// Scalar reference row codecs: llama.cpp's quantize_row_{q8_0,q4_0,q4_1}_ref and
// dequantize_row_* (ggml-quants.c), operation for operation, so the rounding is theirs. The SIMD
// kernels (ggml_blocks_simd.cc) are tested byte for byte against these.

// x * id + c is two roundings in the C source; GCC contracts it into an FMA in C++ whenever the
// target has FMA (e.g. -march=native), which would change codes at rounding ties.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "quant/ggml_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "common/check.h"
#include "common/fp16.h"

namespace kvarn {
namespace {

// Block rows are written through byte offsets and memcpy: the caller's buffer need not be
// aligned for the blocks' f16_t fields.
void StoreF16(uint8_t* p, float v) {
  const f16_t h = F32ToF16(v);
  std::memcpy(p, &h, sizeof(h));
}
float LoadF16(const uint8_t* p) {
  f16_t h;
  std::memcpy(&h, p, sizeof(h));
  return F16ToF32(h);
}

void QuantizeQ8_0(const float* x, int n, uint8_t* out) {
  for (int b = 0; b < n / kQK8_0; ++b) {
    const float* xb = x + b * kQK8_0;
    uint8_t* blk = out + b * sizeof(BlockQ8_0);
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = ggml_detail::InverseScale(d);
    StoreF16(blk + offsetof(BlockQ8_0, d), d);
    // Codes use the fp32 id, not the fp16-rounded d that decoding multiplies by (as llama.cpp).
    // roundf rounds half away from zero; |x * id| <= 127 * (1 + 3 eps) so the cast is in range.
    int8_t* qs = reinterpret_cast<int8_t*>(blk + offsetof(BlockQ8_0, qs));
    for (int j = 0; j < kQK8_0; ++j) qs[j] = static_cast<int8_t>(std::roundf(xb[j] * id));
  }
}

void QuantizeQ4_0(const float* x, int n, uint8_t* out) {
  for (int b = 0; b < n / kQK4_0; ++b) {
    const float* xb = x + b * kQK4_0;
    uint8_t* blk = out + b * sizeof(BlockQ4_0);
    // The signed value of largest magnitude; on ties the first one wins (strict <), and an
    // all-zero block keeps max = +0, so d = +0 / -8 = -0 (fp16 0x8000, as llama.cpp stores).
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    // max itself maps exactly to code 0 (q - 8 = -8), so the side holding the largest magnitude
    // gets the asymmetric range's extra step; -max would be code 16 and clamps to 15.
    const float d = max / -8.0f;
    const float id = ggml_detail::InverseScale(d);
    StoreF16(blk + offsetof(BlockQ4_0, d), d);
    uint8_t* qs = blk + offsetof(BlockQ4_0, qs);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // Truncation after + 8.5f is round half up for x*id in [-8, 8]; the sum is >= 0.49 so
      // the cast truncates a non-negative value, and only -max (code 16) needs the clamp.
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 =
          std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + kQK4_0 / 2] * id + 8.5f)));
      qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeQ4_1(const float* x, int n, uint8_t* out) {
  for (int b = 0; b < n / kQK4_1; ++b) {
    const float* xb = x + b * kQK4_1;
    uint8_t* blk = out + b * sizeof(BlockQ4_1);
    // Strict comparisons: min and max are the first elements attaining them (this decides the
    // sign of a zero min, which the fp16 m keeps).
    float min = 3.402823466e+38f;
    float max = -3.402823466e+38f;
    for (int j = 0; j < kQK4_1; ++j) {
      if (xb[j] < min) min = xb[j];
      if (xb[j] > max) max = xb[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = ggml_detail::InverseScale(d);
    StoreF16(blk + offsetof(BlockQ4_1, d), d);
    // m is the fp16-rounded min: decoded values can sit below the block's true min by up to
    // half an fp16 ulp of min.
    StoreF16(blk + offsetof(BlockQ4_1, m), min);
    uint8_t* qs = blk + offsetof(BlockQ4_1, qs);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((xb[j] - min) * id + 0.5f)));
      const int q1 = std::min(
          15, static_cast<int>(static_cast<int8_t>((xb[j + kQK4_1 / 2] - min) * id + 0.5f)));
      qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void DequantizeQ8_0(const uint8_t* in, int n, float* out) {
  for (int b = 0; b < n / kQK8_0; ++b) {
    const uint8_t* blk = in + b * sizeof(BlockQ8_0);
    const float d = LoadF16(blk + offsetof(BlockQ8_0, d));
    const int8_t* qs = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ8_0, qs));
    for (int j = 0; j < kQK8_0; ++j) out[b * kQK8_0 + j] = static_cast<float>(qs[j]) * d;
  }
}

void DequantizeQ4_0(const uint8_t* in, int n, float* out) {
  for (int b = 0; b < n / kQK4_0; ++b) {
    const uint8_t* blk = in + b * sizeof(BlockQ4_0);
    const float d = LoadF16(blk + offsetof(BlockQ4_0, d));
    const uint8_t* qs = blk + offsetof(BlockQ4_0, qs);
    float* ob = out + b * kQK4_0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      ob[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      ob[j + kQK4_0 / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4_1(const uint8_t* in, int n, float* out) {
  for (int b = 0; b < n / kQK4_1; ++b) {
    const uint8_t* blk = in + b * sizeof(BlockQ4_1);
    const float d = LoadF16(blk + offsetof(BlockQ4_1, d));
    const float m = LoadF16(blk + offsetof(BlockQ4_1, m));
    const uint8_t* qs = blk + offsetof(BlockQ4_1, qs);
    float* ob = out + b * kQK4_1;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      // Multiply, then add: two roundings, as llama.cpp's scalar code (no FMA contraction).
      const float p0 = static_cast<float>(qs[j] & 0x0F) * d;
      const float p1 = static_cast<float>(qs[j] >> 4) * d;
      ob[j] = p0 + m;
      ob[j + kQK4_1 / 2] = p1 + m;
    }
  }
}

}  // namespace

size_t GgmlRowBytes(CodecKind kind, int n) {
  KVARN_CHECK(n >= 0);
  const size_t un = static_cast<size_t>(n);
  switch (kind) {
    case CodecKind::kF32:
      return un * sizeof(float);
    case CodecKind::kF16:
      return un * sizeof(f16_t);
    case CodecKind::kQ8_0:
      KVARN_CHECK(n % kQK8_0 == 0);
      return un / kQK8_0 * sizeof(BlockQ8_0);
    case CodecKind::kQ4_0:
      KVARN_CHECK(n % kQK4_0 == 0);
      return un / kQK4_0 * sizeof(BlockQ4_0);
    case CodecKind::kQ4_1:
      KVARN_CHECK(n % kQK4_1 == 0);
      return un / kQK4_1 * sizeof(BlockQ4_1);
    case CodecKind::kTile:
      break;
  }
  KVARN_CHECK(false && "GgmlRowBytes: not a per-token row codec");
  return 0;
}

void QuantizeRowRef(CodecKind kind, const float* x, int n, uint8_t* out) {
  (void)GgmlRowBytes(kind, n);  // checks kind and n
  switch (kind) {
    case CodecKind::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case CodecKind::kF16:
      for (int i = 0; i < n; ++i) StoreF16(out + i * sizeof(f16_t), x[i]);
      return;
    case CodecKind::kQ8_0:
      return QuantizeQ8_0(x, n, out);
    case CodecKind::kQ4_0:
      return QuantizeQ4_0(x, n, out);
    case CodecKind::kQ4_1:
      return QuantizeQ4_1(x, n, out);
    case CodecKind::kTile:
      return;  // rejected by GgmlRowBytes
  }
}

void DequantizeRowRef(CodecKind kind, const uint8_t* in, int n, float* out) {
  (void)GgmlRowBytes(kind, n);
  switch (kind) {
    case CodecKind::kF32:
      std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case CodecKind::kF16:
      for (int i = 0; i < n; ++i) out[i] = LoadF16(in + i * sizeof(f16_t));
      return;
    case CodecKind::kQ8_0:
      return DequantizeQ8_0(in, n, out);
    case CodecKind::kQ4_0:
      return DequantizeQ4_0(in, n, out);
    case CodecKind::kQ4_1:
      return DequantizeQ4_1(in, n, out);
    case CodecKind::kTile:
      return;
  }
}

}  // namespace kvarn
