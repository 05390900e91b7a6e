// The SIMD row dequantizer against the scalar reference (bit-exact, dequant.h says why), on every
// SIMD target, awkward lengths, misaligned rows and edge-case scales; plus hand-decoded blocks
// that pin the reference to ggml's formulas independently of the oracle vectors.
#include "weights/dequant.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/dispatch.h"
#include "weights/weight_matrix.h"
#include "weights_test_util.h"

namespace kvarn {
namespace {

using weights_test::BlockSize;
using weights_test::ForEachSimdTarget;
using weights_test::kAllTypes;
using weights_test::RandomRows;
using weights_test::RowBytes;
using weights_test::SameFloat;
using weights_test::TypeName;

void ExpectSimdMatchesRef(GgmlType type, const uint8_t* data, int64_t n, const char* what) {
  std::vector<float> ref(static_cast<size_t>(n)), fast(static_cast<size_t>(n) + 1, -7.0f);
  ASSERT_TRUE(DequantizeRowRef(type, data, n, ref.data()).ok());
  ASSERT_TRUE(DequantizeRow(type, data, n, fast.data()).ok());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(SameFloat(fast[i], ref[i])) << TypeName(type) << " " << what << " n=" << n
                                            << " i=" << i << ": " << fast[i] << " vs " << ref[i];
  }
  EXPECT_EQ(fast[n], -7.0f) << "wrote past the row";
}

TEST(Dequant, SimdMatchesReferenceOnRandomRows) {
  ForEachSimdTarget([](const char* target) {
    for (GgmlType type : kAllTypes) {
      const int64_t bs = BlockSize(type);
      for (int64_t blocks : {int64_t{1}, int64_t{2}, int64_t{3}, 2048 / bs + 1}) {
        for (size_t misalign : {size_t{0}, size_t{2}, size_t{1}}) {
          const int64_t n = blocks * bs;
          const auto rows = RandomRows(type, 1, n, 1000 + static_cast<uint64_t>(n), misalign);
          ExpectSimdMatchesRef(type, rows.data(), n, target);
        }
      }
    }
  });
}

// Random bytes everywhere except chosen scale fields: zero, negative zero, the smallest
// subnormal, the largest finite fp16, and inf/NaN (which the float formats may also hold).
void PatchScale(GgmlType type, uint8_t* blk, f16_t d, f16_t m) {
  size_t d_off = 0, m_off = 2;
  bool has_m = false;
  switch (type) {
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_1:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
      has_m = true;
      break;
    case GgmlType::kQ6_K:
      d_off = offsetof(BlockQ6_K, d);
      break;
    default:
      break;
  }
  std::memcpy(blk + d_off, &d, 2);
  if (has_m) std::memcpy(blk + m_off, &m, 2);
}

TEST(Dequant, SimdMatchesReferenceOnEdgeScales) {
  const f16_t scales[] = {0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x3C00, 0x7C00, 0x7E00};
  Rng rng(7);
  ForEachSimdTarget([&](const char* target) {
    for (GgmlType type : kAllTypes) {
      const GgmlTypeInfo* info = FindGgmlTypeInfo(type);
      const int64_t n = 3 * info->block_size;
      std::vector<uint8_t> data(RowBytes(type, n));
      for (f16_t d : scales) {
        for (f16_t m : scales) {
          for (uint8_t& b : data) b = static_cast<uint8_t>(rng.Next());
          if (info->quantized) {
            for (int64_t i = 0; i < 3; ++i)
              PatchScale(type, data.data() + i * info->block_bytes, d, m);
          } else if (type == GgmlType::kF16) {
            std::memcpy(data.data(), &d, 2);  // raw f16 values: subnormals, inf, NaN
            std::memcpy(data.data() + 2, &m, 2);
          }
          ExpectSimdMatchesRef(type, data.data(), n, target);
        }
      }
    }
  });
}

TEST(Dequant, RejectsPartialBlocks) {
  std::vector<uint8_t> data(1024);
  std::vector<float> out(1024);
  EXPECT_EQ(DequantizeRow(GgmlType::kQ4_0, data.data(), 31, out.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeRowRef(GgmlType::kQ6_K, data.data(), 128, out.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(DequantizeRow(GgmlType::kQ6_K, data.data(), 0, out.data()).ok());
}

TEST(Dequant, ForceReferenceRunsTheReference) {
  const auto rows = RandomRows(GgmlType::kQ4_K, 1, 512, 3);
  std::vector<float> ref(512), forced(512);
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ4_K, rows.data(), 512, ref.data()).ok());
  SetForceReference(true);
  ASSERT_TRUE(DequantizeRow(GgmlType::kQ4_K, rows.data(), 512, forced.data()).ok());
  SetForceReference(false);
  EXPECT_EQ(ref, forced);
}

TEST(Dequant, GetWeightRowIsTheRowsDequantization) {
  const int64_t rows = 5, cols = 96;
  const auto data = RandomRows(GgmlType::kQ5_1, rows, cols, 11);
  const WeightMatrix w{GgmlType::kQ5_1, data.data(), rows, cols};
  std::vector<float> got(cols), want(cols);
  ASSERT_TRUE(GetWeightRow(w, 3, got.data()).ok());
  ASSERT_TRUE(
      DequantizeRowRef(GgmlType::kQ5_1, data.data() + 3 * RowBytes(w.type, cols), cols, want.data())
          .ok());
  EXPECT_EQ(got, want);
  EXPECT_EQ(GetWeightRow(w, 5, got.data()).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(GetWeightRow(w, -1, got.data()).code(), StatusCode::kOutOfRange);
}

// ---- Hand-decoded blocks: ggml-quants.c's formulas applied by hand to chosen bytes ----------

TEST(DequantRef, Q4_0AndQ4_1Nibbles) {
  BlockQ4_0 b{};
  b.d = F32ToF16(0.5f);
  b.qs[0] = 0x2F;  // value 0: 15 - 8, value 16: 2 - 8
  float y[32];
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ4_0, reinterpret_cast<uint8_t*>(&b), 32, y).ok());
  EXPECT_EQ(y[0], 3.5f);
  EXPECT_EQ(y[16], -3.0f);
  EXPECT_EQ(y[1], -4.0f);  // code 0

  BlockQ4_1 c{};
  c.d = F32ToF16(0.25f);
  c.m = F32ToF16(-1.0f);
  c.qs[15] = 0xA3;  // value 15: 3, value 31: 10
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ4_1, reinterpret_cast<uint8_t*>(&c), 32, y).ok());
  EXPECT_EQ(y[15], -0.25f);
  EXPECT_EQ(y[31], 1.5f);
}

TEST(DequantRef, Q5_0FifthBit) {
  BlockQ5_0 b{};
  b.d = F32ToF16(1.0f);
  const uint32_t qh = (1u << 3) | (1u << 20);  // values 3 and 20
  std::memcpy(b.qh, &qh, 4);
  b.qs[3] = 0x01;  // value 3: 1 | 16, value 19: 0
  b.qs[4] = 0x70;  // value 20: 7 | 16
  float y[32];
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ5_0, reinterpret_cast<uint8_t*>(&b), 32, y).ok());
  EXPECT_EQ(y[3], 1.0f);  // 17 - 16
  EXPECT_EQ(y[19], -16.0f);
  EXPECT_EQ(y[20], 7.0f);  // 23 - 16
}

TEST(DequantRef, Q4_KScalesAndMins) {
  BlockQ4_K b{};
  b.d = F32ToF16(0.5f);
  b.dmin = F32ToF16(0.25f);
  // Sub-block 1: scale 5 (byte 1), min 3 (byte 5). Sub-block 6: scale 0b10'0111 = 39: low
  // nibble 7 in byte 10, top bits 2 in byte 2's bits 6-7; min 0b01'0010 = 18: high nibble 2 in
  // byte 10, top bits 1 in byte 6's bits 6-7.
  b.scales[1] = 5;
  b.scales[5] = 3;
  b.scales[10] = 0x27;
  b.scales[2] = 2 << 6;
  b.scales[6] = 1 << 6;
  b.qs[0] = 0x90;   // value 0 (sub-block 0): 0, value 32 (sub-block 1): 9
  b.qs[96] = 0x04;  // value 192 (sub-block 6): 4
  float y[256];
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ4_K, reinterpret_cast<uint8_t*>(&b), 256, y).ok());
  EXPECT_EQ(y[32], 0.5f * 5 * 9 - 0.25f * 3);
  EXPECT_EQ(y[192], 0.5f * 39 * 4 - 0.25f * 18);
  EXPECT_EQ(y[0], 0.0f);  // sub-block 0: scale 0, min 0 (byte 0 and 4 are 0)
}

TEST(DequantRef, Q6_KPlanes) {
  BlockQ6_K b{};
  b.d = F32ToF16(2.0f);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s - 8);
  // Second half, value 128 + 64 + 17 = 209: plane 2 (high nibble of ql[64 + 17]), qh[32 + 17]
  // bits 4-5, scale 8 + 4 + 1 = 13.
  b.ql[64 + 17] = 0xB0;  // low bits 11
  b.qh[32 + 17] = 0x30;  // high bits 3 -> code 11 | 48 = 59
  float y[256];
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kQ6_K, reinterpret_cast<uint8_t*>(&b), 256, y).ok());
  EXPECT_EQ(y[209], 2.0f * (13 - 8) * (59 - 32));
  EXPECT_EQ(y[0], 2.0f * (0 - 8) * (0 - 32));
}

}  // namespace
}  // namespace kvarn
