// The ggml weight block formats beyond quant/ggml_blocks.h (which holds q8_0, q4_0, q4_1):
// q5_0, q5_1 (32 values) and the k-quants q4_K, q5_K, q6_K (256-value super-blocks).
// Byte layouts match ggml-common.h exactly; the static_asserts pin them. Fields are documented
// with the value they decode to, as ggml-quants.c dequantize_row_* computes it.
#pragma once

#include <cstdint>

#include "common/fp16.h"
#include "quant/ggml_blocks.h"

namespace kvarn {

inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK_K = 256;       // values per k-quant super-block
inline constexpr int kKScaleSize = 12;  // bytes of packed 6-bit scales and mins (q4_K, q5_K)

// x[j] = d * (q[j] - 16), q[j] = low/high nibble of qs (as q4_0) | (bit j of qh) << 4.
struct BlockQ5_0 {
  f16_t d;
  uint8_t qh[4];  // fifth bits, little-endian uint32: bit j belongs to element j
  uint8_t qs[kQK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "q5_0 block size");

// x[j] = d * q[j] + m, q[j] as in q5_0.
struct BlockQ5_1 {
  f16_t d;
  f16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "q5_1 block size");

// 8 sub-blocks of 32. Sub-block s has a 6-bit scale sc[s] and min mn[s] (GetScaleMinK4):
// x = d * sc[s] * q - dmin * mn[s]. The 64 values 64c .. 64c+63 take their 4-bit codes from
// qs[32c .. 32c+31]: low nibbles are sub-block 2c, high nibbles sub-block 2c+1.
struct BlockQ4_K {
  f16_t d;
  f16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "q4_K block size");

// As q4_K with a fifth bit: value l of sub-block 2c (2c+1) adds 16 when bit 2c (2c+1) of qh[l]
// is set.
struct BlockQ5_K {
  f16_t d;
  f16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "q5_K block size");

// 16 sub-blocks of 16 with signed 8-bit scales: x = d * scales[s] * (q - 32), q a 6-bit code.
// Each half of 128 values (h = 0, 1) uses ql[64h ..], qh[32h ..], scales[8h ..]; within it,
// value l + 32k (l < 32, k < 4) has low bits (ql[l + 32(k & 1)] >> 4(k >> 1)) & 15 and high
// bits (qh[l] >> 2k) & 3.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  f16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "q6_K block size");

// ggml's get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 packed bytes. Scales
// and mins 0-3 are the low 6 bits of bytes 0-3 and 4-7; 4-7 keep their low 4 bits in bytes
// 8-11 (scale: low nibble, min: high nibble) and their top 2 bits in the spare top bits of
// bytes 0-3 (scales) and 4-7 (mins).
inline void GetScaleMinK4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace kvarn
