// Scalar reference dequantizers, one per type, mirroring ggml-quants.c dequantize_row_*.
// Blocks are copied out of the byte stream with memcpy: rows inside a GGUF file are not aligned
// for the block structs, and memcpy also keeps the reads free of aliasing questions.

#include <cstring>

#include "weights/dequant.h"
#include "weights/kquant_blocks.h"

namespace kvarn {
namespace {

template <typename Block>
Block ReadBlock(const uint8_t* data, int64_t i) {
  Block b;
  std::memcpy(&b, data + static_cast<size_t>(i) * sizeof(Block), sizeof(Block));
  return b;
}

void DequantF32(const uint8_t* data, int64_t n, float* out) {
  std::memcpy(out, data, static_cast<size_t>(n) * sizeof(float));
}

void DequantF16(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    f16_t h;
    std::memcpy(&h, data + 2 * i, 2);
    out[i] = F16ToF32(h);
  }
}

// bf16 is the top half of an f32.
void DequantBF16(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, data + 2 * i, 2);
    out[i] = BitsFloat(static_cast<uint32_t>(h) << 16);
  }
}

void DequantQ8_0(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const BlockQ8_0 b = ReadBlock<BlockQ8_0>(data, i);
    const float d = F16ToF32(b.d);
    for (int j = 0; j < kQK8_0; ++j) out[i * kQK8_0 + j] = static_cast<float>(b.qs[j]) * d;
  }
}

void DequantQ4_0(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const BlockQ4_0 b = ReadBlock<BlockQ4_0>(data, i);
    const float d = F16ToF32(b.d);
    float* y = out + i * kQK4_0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
      y[j + kQK4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const BlockQ4_1 b = ReadBlock<BlockQ4_1>(data, i);
    const float d = F16ToF32(b.d);
    const float m = F16ToF32(b.m);
    float* y = out + i * kQK4_1;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
      y[j + kQK4_1 / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

// The fifth bits of q5_0/q5_1: bit j of the little-endian uint32 qh belongs to element j.
uint32_t LoadQh(const uint8_t qh[4]) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 |
         static_cast<uint32_t>(qh[2]) << 16 | static_cast<uint32_t>(qh[3]) << 24;
}

void DequantQ5_0(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const BlockQ5_0 b = ReadBlock<BlockQ5_0>(data, i);
    const float d = F16ToF32(b.d);
    const uint32_t qh = LoadQh(b.qh);
    float* y = out + i * kQK5_0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int q0 = (b.qs[j] & 0xF) | static_cast<int>((qh >> j) & 1) << 4;
      const int q1 = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>(q0 - 16) * d;
      y[j + kQK5_0 / 2] = static_cast<float>(q1 - 16) * d;
    }
  }
}

void DequantQ5_1(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const BlockQ5_1 b = ReadBlock<BlockQ5_1>(data, i);
    const float d = F16ToF32(b.d);
    const float m = F16ToF32(b.m);
    const uint32_t qh = LoadQh(b.qh);
    float* y = out + i * kQK5_1;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int q0 = (b.qs[j] & 0xF) | static_cast<int>((qh >> j) & 1) << 4;
      const int q1 = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>(q0) * d + m;
      y[j + kQK5_1 / 2] = static_cast<float>(q1) * d + m;
    }
  }
}

void DequantQ4_K(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ4_K b = ReadBlock<BlockQ4_K>(data, i);
    const float d = F16ToF32(b.d);
    const float dmin = F16ToF32(b.dmin);
    float* y = out + i * kQK_K;
    for (int c = 0; c < 4; ++c) {  // 64 values: sub-blocks 2c (low nibbles), 2c+1 (high)
      uint8_t sc, mn;
      GetScaleMinK4(2 * c, b.scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      GetScaleMinK4(2 * c + 1, b.scales, &sc, &mn);
      const float d2 = d * sc, m2 = dmin * mn;
      const uint8_t* q = b.qs + 32 * c;
      for (int l = 0; l < 32; ++l) y[64 * c + l] = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) y[64 * c + 32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantQ5_K(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ5_K b = ReadBlock<BlockQ5_K>(data, i);
    const float d = F16ToF32(b.d);
    const float dmin = F16ToF32(b.dmin);
    float* y = out + i * kQK_K;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc, mn;
      GetScaleMinK4(2 * c, b.scales, &sc, &mn);
      const float d1 = d * sc, m1 = dmin * mn;
      GetScaleMinK4(2 * c + 1, b.scales, &sc, &mn);
      const float d2 = d * sc, m2 = dmin * mn;
      const uint8_t* q = b.qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        const int hi = (b.qh[l] >> (2 * c)) & 1;
        y[64 * c + l] = d1 * static_cast<float>((q[l] & 0xF) + 16 * hi) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int hi = (b.qh[l] >> (2 * c + 1)) & 1;
        y[64 * c + 32 + l] = d2 * static_cast<float>((q[l] >> 4) + 16 * hi) - m2;
      }
    }
  }
}

void DequantQ6_K(const uint8_t* data, int64_t n, float* out) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ6_K b = ReadBlock<BlockQ6_K>(data, i);
    const float d = F16ToF32(b.d);
    for (int h = 0; h < 2; ++h) {  // halves of 128 values
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* y = out + i * kQK_K + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        // (d * scale) * q, in ggml's order: d * scale is exact, the product with q rounds once.
        y[l] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

Status DequantizeRowRef(GgmlType type, const uint8_t* data, int64_t n, float* out) {
  size_t bytes = 0;
  KVARN_RETURN_IF_ERROR(GgmlRowBytes(type, n, &bytes));
  switch (type) {
    case GgmlType::kF32:
      DequantF32(data, n, out);
      break;
    case GgmlType::kF16:
      DequantF16(data, n, out);
      break;
    case GgmlType::kBF16:
      DequantBF16(data, n, out);
      break;
    case GgmlType::kQ8_0:
      DequantQ8_0(data, n, out);
      break;
    case GgmlType::kQ4_0:
      DequantQ4_0(data, n, out);
      break;
    case GgmlType::kQ4_1:
      DequantQ4_1(data, n, out);
      break;
    case GgmlType::kQ5_0:
      DequantQ5_0(data, n, out);
      break;
    case GgmlType::kQ5_1:
      DequantQ5_1(data, n, out);
      break;
    case GgmlType::kQ4_K:
      DequantQ4_K(data, n, out);
      break;
    case GgmlType::kQ5_K:
      DequantQ5_K(data, n, out);
      break;
    case GgmlType::kQ6_K:
      DequantQ6_K(data, n, out);
      break;
  }
  return Status::Ok();
}

}  // namespace kvarn
