// llama.cpp / ggml block formats shared by the KV-cache baselines (q8_0, q4_0, q4_1: quant
// layer) and the GGUF weight loader (model layer). Byte layouts match ggml-common.h exactly;
// the static_asserts pin them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/fp16.h"

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

}  // namespace kvarn
