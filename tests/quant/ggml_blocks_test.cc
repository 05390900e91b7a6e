// Tests of the llama.cpp row codecs (q8_0, q4_0, q4_1, f16, f32): hand-derived blocks, error
// bounds that follow from the format, and SIMD == reference byte for byte on every target.
#include "quant/ggml_blocks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/dispatch.h"
#include "common/fp16.h"
#include "common/rng.h"
#include "hwy/targets.h"

namespace kvarn {
namespace {

constexpr CodecKind kBlockKinds[] = {CodecKind::kQ8_0, CodecKind::kQ4_0, CodecKind::kQ4_1};
constexpr CodecKind kAllKinds[] = {CodecKind::kQ8_0, CodecKind::kQ4_0, CodecKind::kQ4_1,
                                   CodecKind::kF16, CodecKind::kF32};
constexpr int kLengths[] = {32, 64, 96, 128, 256};
// fp32 unit roundoff.
constexpr double kU = 0x1p-24;

const char* KindName(CodecKind kind) {
  switch (kind) {
    case CodecKind::kQ8_0:
      return "q8_0";
    case CodecKind::kQ4_0:
      return "q4_0";
    case CodecKind::kQ4_1:
      return "q4_1";
    case CodecKind::kF16:
      return "f16";
    case CodecKind::kF32:
      return "f32";
    case CodecKind::kTile:
      break;
  }
  return "?";
}

size_t BlockBytes(CodecKind kind) { return GgmlRowBytes(kind, 32); }

f16_t ReadF16(const uint8_t* p) {
  f16_t h;
  std::memcpy(&h, p, sizeof(h));
  return h;
}

std::vector<uint8_t> Quantize(CodecKind kind, const std::vector<float>& x, bool fast) {
  const int n = static_cast<int>(x.size());
  std::vector<uint8_t> out(GgmlRowBytes(kind, n), 0xA5);  // poison: every byte must be written
  if (fast) {
    QuantizeRow(kind, x.data(), n, out.data());
  } else {
    QuantizeRowRef(kind, x.data(), n, out.data());
  }
  return out;
}

std::vector<float> Dequantize(CodecKind kind, const std::vector<uint8_t>& q, int n, bool fast) {
  std::vector<float> out(static_cast<size_t>(n), std::nanf(""));
  if (fast) {
    DequantizeRow(kind, q.data(), n, out.data());
  } else {
    DequantizeRowRef(kind, q.data(), n, out.data());
  }
  return out;
}

// ---- Test rows -------------------------------------------------------------------------------

enum class RowType { kNormal, kHeavyTail, kConstant, kNegConstant, kZero, kTiny, kOutlier, kTies };
constexpr RowType kRowTypes[] = {RowType::kNormal,      RowType::kHeavyTail, RowType::kConstant,
                                 RowType::kNegConstant, RowType::kZero,      RowType::kTiny,
                                 RowType::kOutlier,     RowType::kTies};

std::vector<float> MakeRow(RowType type, int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    float v = 0.0f;
    switch (type) {
      case RowType::kNormal:
        v = static_cast<float>(rng.Normal());
        break;
      case RowType::kHeavyTail:
        v = static_cast<float>(3.0 * rng.HeavyTail());
        break;
      case RowType::kConstant:
        v = 0.37f;
        break;
      case RowType::kNegConstant:
        v = -2.5f;
        break;
      case RowType::kZero:
        v = 0.0f;
        break;
      case RowType::kTiny:
        // fp16 cannot hold these scales: every block decodes to 0.
        v = static_cast<float>(1e-30 * rng.Normal());
        break;
      case RowType::kOutlier:
        v = static_cast<float>(rng.Normal());
        if (i % 37 == static_cast<int>(seed % 37)) v = (i % 2 == 0) ? 80.0f : -80.0f;
        break;
      case RowType::kTies:
        // Exact rounding ties, where rounding modes differ; the anchor is set below.
        // seed % 3 == 1: halves in [-127, 127], anchor +-127 (q8_0: d = 1, x * id = k + 0.5).
        // seed % 3 == 2: quarters in [-8, 8], anchor +-8 (q4_0: d = -+1, x * id + 8.5 hits
        //   integers; +-8 also tie in magnitude).
        // seed % 3 == 0: multiples of 1.5 in [-24, 24], anchor +-24 (q4_0: d = -+3, inexact
        //   id = 1/3: fl(x * id) + 8.5 and a fused x * id + 8.5 truncate differently, e.g. at
        //   x = -22.5 with max = -24, so FMA contraction shows up as wrong codes).
        if (seed % 3 == 1) {
          v = static_cast<float>(static_cast<int>(rng.Next() % 509) - 254) * 0.5f;
        } else if (seed % 3 == 2) {
          v = static_cast<float>(static_cast<int>(rng.Next() % 65) - 32) * 0.25f;
        } else {
          v = static_cast<float>(static_cast<int>(rng.Next() % 33) - 16) * 1.5f;
        }
        break;
    }
    x[static_cast<size_t>(i)] = v;
  }
  if (type == RowType::kTies) {
    for (int b = 0; b < n / 32; ++b) {
      // Alternate anchors so both signs of the q4_0 max occur.
      const float anchor = seed % 3 == 1 ? 127.0f : (seed % 3 == 2 ? 8.0f : 24.0f);
      x[static_cast<size_t>(b * 32 + static_cast<int>(seed % 32))] =
          (b % 2 == 0) ? -anchor : anchor;
    }
  }
  return x;
}

// ---- Hand-derived blocks ---------------------------------------------------------------------

TEST(GgmlRowBytes, MatchesGgmlBlockSizes) {
  EXPECT_EQ(GgmlRowBytes(CodecKind::kQ8_0, 128), 4u * 34u);
  EXPECT_EQ(GgmlRowBytes(CodecKind::kQ4_0, 128), 4u * 18u);
  EXPECT_EQ(GgmlRowBytes(CodecKind::kQ4_1, 96), 3u * 20u);
  EXPECT_EQ(GgmlRowBytes(CodecKind::kF16, 7), 14u);
  EXPECT_EQ(GgmlRowBytes(CodecKind::kF32, 7), 28u);
  EXPECT_EQ(GgmlRowBytes(CodecKind::kQ8_0, 0), 0u);
}

TEST(GgmlBlocks, Q8_0HandDerived) {
  // amax = 127 gives d = 127/127 = 1, id = 1, so q = roundf(x), half away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;       // q = 127
  x[1] = 2.5f;         // 3 (ties to even would give 2)
  x[2] = -2.5f;        // -3
  x[3] = 0.5f;         // 1 (ties to even: 0)
  x[4] = -126.5f;      // -127
  x[5] = 0.49999997f;  // largest float below 0.5: 0
  x[6] = -1.25f;       // -1
  const std::vector<int8_t> expected_q = {127, 3, -3, 1, -127, 0, -1};
  for (bool fast : {false, true}) {
    const std::vector<uint8_t> q = Quantize(CodecKind::kQ8_0, x, fast);
    EXPECT_EQ(ReadF16(q.data()), 0x3C00u);  // 1.0
    for (size_t j = 0; j < 32; ++j) {
      const int expect = j < expected_q.size() ? expected_q[j] : 0;
      EXPECT_EQ(static_cast<int8_t>(q[2 + j]), expect) << "j=" << j << " fast=" << fast;
    }
    const std::vector<float> y = Dequantize(CodecKind::kQ8_0, q, 32, fast);
    for (size_t j = 0; j < 32; ++j) {
      EXPECT_EQ(y[j], static_cast<float>(j < expected_q.size() ? expected_q[j] : 0));
    }
  }
}

TEST(GgmlBlocks, Q4_0HandDerived) {
  // The largest magnitude is x[0] = -8 (negative), so d = -8 / -8 = 1, id = 1 and
  // q = min(15, trunc(x + 8.5)): round half up, offset 8; +8 would be 16 and clamps to 15.
  std::vector<float> x(32, 0.0f);  // zeros: code 8
  x[0] = -8.0f;                    // 0
  x[1] = 8.0f;                     // 16 -> 15 (decodes to 7: the clamped side loses a step)
  x[2] = 0.5f;                     // 9   (half up)
  x[3] = -0.5f;                    // 8   (half up: -0.5 -> 0)
  x[4] = 1.49f;                    // 9
  x[16] = 3.0f;                    // 11  (high nibble of byte 0)
  x[17] = -3.0f;                   // 5   (high nibble of byte 1)
  const uint8_t expected[16] = {0xB0, 0x5F, 0x89, 0x88, 0x89, 0x88, 0x88, 0x88,
                                0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
  const float decoded_low[5] = {-8.0f, 7.0f, 1.0f, 0.0f, 1.0f};
  for (bool fast : {false, true}) {
    const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_0, x, fast);
    EXPECT_EQ(ReadF16(q.data()), 0x3C00u);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(q[2 + j], expected[j]) << "j=" << j;
    const std::vector<float> y = Dequantize(CodecKind::kQ4_0, q, 32, fast);
    for (int j = 0; j < 5; ++j) EXPECT_EQ(y[j], decoded_low[j]);
    EXPECT_EQ(y[16], 3.0f);
    EXPECT_EQ(y[17], -3.0f);
  }
  // Positive extreme: d = 8 / -8 = -1 (fp16 0xBC00); 8 -> code 0, which decodes to (0-8)*-1 = 8.
  std::vector<float> p(32, 0.0f);
  p[0] = 8.0f;
  for (bool fast : {false, true}) {
    const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_0, p, fast);
    EXPECT_EQ(ReadF16(q.data()), 0xBC00u);
    EXPECT_EQ(q[2], 0x80);  // code 0 for x[0], code 8 for x[16]
    EXPECT_EQ(Dequantize(CodecKind::kQ4_0, q, 32, fast)[0], 8.0f);
  }
}

TEST(GgmlBlocks, Q4_0TieTakesFirstLargestMagnitude) {
  // +2 and -2 tie for the largest magnitude; the first one sets the sign of d (strict <).
  for (bool negative_first : {true, false}) {
    std::vector<float> x(32, 0.0f);
    x[3] = negative_first ? -2.0f : 2.0f;
    x[20] = -x[3];
    const f16_t expected_d = negative_first ? 0x3400u : 0xB400u;  // +0.25 or -0.25
    for (bool fast : {false, true}) {
      const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_0, x, fast);
      EXPECT_EQ(ReadF16(q.data()), expected_d) << negative_first << fast;
      const std::vector<float> y = Dequantize(CodecKind::kQ4_0, q, 32, fast);
      EXPECT_EQ(y[3], x[3]);                  // the anchor is exact (code 0)
      EXPECT_EQ(y[20], -x[3] * 7.0f / 8.0f);  // the other clamps at 7 steps
    }
  }
}

TEST(GgmlBlocks, Q4_0RoundsTheProductBeforeAddingTheOffset) {
  // max = -24: d = 3, id = fl(1/3) = 0.333333343. For x = -22.5 the exact x * id is
  // -7.50000022, which rounds to -7.5f; -7.5f + 8.5f = 1.0 gives code 1 (llama.cpp's C source:
  // two roundings). A fused multiply-add would give 0.99999978, code 0.
  std::vector<float> x(32, 0.0f);
  x[0] = -24.0f;
  x[1] = -22.5f;
  const float id = 1.0f / 3.0f;
  ASSERT_EQ(static_cast<int>(std::fmaf(x[1], id, 8.5f)), 0);  // the case discriminates
  for (bool fast : {false, true}) {
    const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_0, x, fast);
    EXPECT_EQ(q[2 + 1] & 0x0F, 1) << "fast=" << fast;
  }
}

TEST(GgmlBlocks, Q4_1HandDerived) {
  // min = -3, max = 12: d = 15/15 = 1, id = 1, m = -3, q = min(15, trunc(x + 3 + 0.5)).
  std::vector<float> x(32, 0.0f);  // zeros: trunc(3.5) = 3
  x[0] = -3.0f;                    // 0
  x[1] = 12.0f;                    // 15
  x[2] = 0.5f;                     // 4  (3.5 + 0.5: half up)
  x[3] = 0.49f;                    // 3
  x[16] = 4.5f;                    // 8  (high nibble of byte 0)
  x[17] = -2.6f;                   // 0  (high nibble of byte 1)
  const uint8_t expected[16] = {0x80, 0x0F, 0x34, 0x33, 0x33, 0x33, 0x33, 0x33,
                                0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33};
  for (bool fast : {false, true}) {
    const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_1, x, fast);
    EXPECT_EQ(ReadF16(q.data()), 0x3C00u);      // d = 1
    EXPECT_EQ(ReadF16(q.data() + 2), 0xC200u);  // m = -3
    for (int j = 0; j < 16; ++j) EXPECT_EQ(q[4 + j], expected[j]) << "j=" << j;
    const std::vector<float> y = Dequantize(CodecKind::kQ4_1, q, 32, fast);
    EXPECT_EQ(y[0], -3.0f);
    EXPECT_EQ(y[1], 12.0f);
    EXPECT_EQ(y[2], 1.0f);
    EXPECT_EQ(y[16], 5.0f);
    EXPECT_EQ(y[17], -3.0f);
  }
}

TEST(GgmlBlocks, Q4_1ZeroMinKeepsSignOfFirstZero) {
  // All values >= 0 with both signed zeros: the reference's min is the first zero it meets,
  // and fp16 m keeps its sign. SIMD min could pick either; it must match.
  for (bool negative_first : {true, false}) {
    std::vector<float> x(32, 1.0f);
    x[5] = negative_first ? -0.0f : 0.0f;
    x[9] = negative_first ? 0.0f : -0.0f;
    for (bool fast : {false, true}) {
      const std::vector<uint8_t> q = Quantize(CodecKind::kQ4_1, x, fast);
      EXPECT_EQ(ReadF16(q.data() + 2), negative_first ? 0x8000u : 0x0000u) << fast;
    }
  }
}

TEST(GgmlBlocks, AllZeroBlocks) {
  const std::vector<float> x(64, 0.0f);
  for (bool fast : {false, true}) {
    // q8_0: amax = 0 -> d = +0, id = 0, codes 0.
    std::vector<uint8_t> q = Quantize(CodecKind::kQ8_0, x, fast);
    for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(q[i], 0u) << i;
    // q4_0: max stays +0, d = +0 / -8 = -0 (fp16 0x8000), id = 0, codes trunc(8.5) = 8.
    q = Quantize(CodecKind::kQ4_0, x, fast);
    for (int b = 0; b < 2; ++b) {
      EXPECT_EQ(ReadF16(q.data() + b * 18), 0x8000u);
      for (int j = 0; j < 16; ++j) EXPECT_EQ(q[b * 18 + 2 + j], 0x88u);
    }
    // q4_1: d = 0, m = 0, codes trunc(0.5) = 0.
    q = Quantize(CodecKind::kQ4_1, x, fast);
    for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(q[i], 0u) << i;
    for (CodecKind kind : kBlockKinds) {
      for (float v : Dequantize(kind, Quantize(kind, x, fast), 64, fast)) EXPECT_EQ(v, 0.0f);
    }
  }
}

TEST(GgmlBlocks, SubnormalScaleWhoseInverseOverflows) {
  // amax = 1e-39: d = amax/127 (and amax/-8) is a subnormal whose inverse overflows to inf.
  // llama.cpp would cast inf/NaN to int8_t (undefined); kvarn uses id = 0, the codes of an
  // all-zero block. The fp16 scale is 0 either way, so everything decodes to (+-)0.
  std::vector<float> x(32, 0.0f);
  x[0] = 1e-39f;
  x[7] = -0.5e-39f;
  ASSERT_TRUE(std::isinf(1.0f / (x[0] / 127.0f)));
  for (bool fast : {false, true}) {
    std::vector<uint8_t> q = Quantize(CodecKind::kQ8_0, x, fast);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(q[2 + j], 0u);
    q = Quantize(CodecKind::kQ4_0, x, fast);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(q[2 + j], 0x88u);
    q = Quantize(CodecKind::kQ4_1, x, fast);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(q[4 + j], 0u);
    for (CodecKind kind : kBlockKinds) {
      for (float v : Dequantize(kind, Quantize(kind, x, fast), 32, fast)) EXPECT_EQ(v, 0.0f);
    }
  }
}

TEST(GgmlBlocks, ConstantRows) {
  for (bool fast : {false, true}) {
    for (float c : {0.37f, -2.5f, 1000.0f}) {
      const std::vector<float> x(96, c);
      // q4_1: min == max -> d = 0 and every value decodes to m = fp16(c), exactly.
      for (float v : Dequantize(CodecKind::kQ4_1, Quantize(CodecKind::kQ4_1, x, fast), 96, fast)) {
        EXPECT_EQ(v, RoundToF16(c));
      }
      // q8_0: every value is amax: code 127, decodes to 127 * fp16(c / 127).
      const std::vector<uint8_t> q8 = Quantize(CodecKind::kQ8_0, x, fast);
      for (int j = 0; j < 32; ++j) EXPECT_EQ(static_cast<int8_t>(q8[2 + j]), c > 0 ? 127 : -127);
      // q4_0: every value is the max: code 0, decodes to (0 - 8) * fp16(c / -8).
      for (float v : Dequantize(CodecKind::kQ4_0, Quantize(CodecKind::kQ4_0, x, fast), 96, fast)) {
        EXPECT_EQ(v, -8.0f * RoundToF16(c / -8.0f));
      }
    }
  }
}

// ---- Error bounds from the format ------------------------------------------------------------

// The fp32 scale (and min) the format defines for one block, computed here independently.
struct BlockScale {
  float d = 0.0f;
  float m = 0.0f;  // q4_1 only
};

BlockScale ExpectedScale(CodecKind kind, const float* xb) {
  BlockScale s;
  if (kind == CodecKind::kQ8_0) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    s.d = amax / 127.0f;
  } else if (kind == CodecKind::kQ4_0) {
    float signed_max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(xb[j]) > std::fabs(signed_max)) signed_max = xb[j];
    }
    s.d = signed_max / -8.0f;
  } else {
    float lo = xb[0], hi = xb[0];
    for (int j = 1; j < 32; ++j) {
      lo = std::min(lo, xb[j]);
      hi = std::max(hi, xb[j]);
    }
    s.d = (hi - lo) / 15.0f;
    s.m = lo;
  }
  return s;
}

// Per element, with d the fp32 scale, dh its fp16 rounding, and c the code:
//   q8_0: |x - xq| <= 0.5|d|                 + 127 |d - dh|
//   q4_0: |x - xq| <= max(0.5, x/d - 7) |d|  + 8 |d - dh|      (x/d > 7.5 is clamped at 15;
//                                                               x/d <= 8, so at most |d|)
//   q4_1: |x - xq| <= 0.5 d                  + 15 |d - dh| + |m - mh|
// plus fp32 rounding: at most 5 roundings (1/d, x*id, + offset, c*dh, + m), each <= u relative
// to a magnitude <= |x| + 16|d| + |m|; 8u covers them.
void CheckRoundTripBound(CodecKind kind, const std::vector<float>& x, const std::string& what) {
  const int n = static_cast<int>(x.size());
  const std::vector<uint8_t> q = Quantize(kind, x, /*fast=*/true);
  const std::vector<float> y = Dequantize(kind, q, n, /*fast=*/true);
  const size_t bb = BlockBytes(kind);
  for (int b = 0; b < n / 32; ++b) {
    const float* xb = x.data() + b * 32;
    const uint8_t* blk = q.data() + static_cast<size_t>(b) * bb;
    const BlockScale s = ExpectedScale(kind, xb);
    const f16_t dh_bits = ReadF16(blk);
    ASSERT_EQ(dh_bits, F32ToF16(s.d)) << what << " block " << b;
    const double d = s.d, dh = F16ToF32(dh_bits);
    double mh = 0.0;
    if (kind == CodecKind::kQ4_1) {
      ASSERT_EQ(ReadF16(blk + 2), F32ToF16(s.m)) << what << " block " << b;
      mh = F16ToF32(ReadF16(blk + 2));
    }
    for (int j = 0; j < 32; ++j) {
      const double xv = xb[j];
      const double yv = y[static_cast<size_t>(b * 32 + j)];
      double bound = 0.0;
      if (kind == CodecKind::kQ8_0) {
        bound = 0.5 * std::fabs(d) + 127.0 * std::fabs(d - dh);
      } else if (kind == CodecKind::kQ4_0) {
        const double t = d != 0.0 ? xv / d : 0.0;
        bound = std::max(0.5, t - 7.0) * std::fabs(d) + 8.0 * std::fabs(d - dh);
      } else {
        bound = 0.5 * d + 15.0 * std::fabs(d - dh) + std::fabs(s.m - mh);
      }
      bound += 8.0 * kU * (std::fabs(xv) + 16.0 * std::fabs(d) + std::fabs(s.m));
      EXPECT_LE(std::fabs(xv - yv), bound)
          << what << " element " << b * 32 + j << " x=" << xv << " xq=" << yv;
    }
  }
}

TEST(GgmlBlocks, RoundTripWithinFormatBound) {
  for (CodecKind kind : kBlockKinds) {
    for (int n : kLengths) {
      for (RowType type : kRowTypes) {
        for (uint64_t seed = 1; seed <= 8; ++seed) {
          const std::string what = std::string(KindName(kind)) + " n=" + std::to_string(n) +
                                   " type=" + std::to_string(static_cast<int>(type)) +
                                   " seed=" + std::to_string(seed);
          CheckRoundTripBound(kind, MakeRow(type, n, seed), what);
        }
      }
    }
  }
}

TEST(GgmlBlocks, BoundIsTightEnoughToCatchAnOffByOneCode) {
  // The bound is only useful if a wrong code breaks it: one step of d exceeds 0.5|d| + slack.
  const std::vector<float> x = MakeRow(RowType::kNormal, 32, 3);
  std::vector<uint8_t> q = Quantize(CodecKind::kQ8_0, x, false);
  const double d = F16ToF32(ReadF16(q.data()));
  std::vector<float> y = Dequantize(CodecKind::kQ8_0, q, 32, false);
  const double err_ok = std::fabs(static_cast<double>(x[4]) - y[4]);
  q[2 + 4] = static_cast<uint8_t>(static_cast<int8_t>(q[2 + 4]) + 1);
  y = Dequantize(CodecKind::kQ8_0, q, 32, false);
  const double err_bad = std::fabs(static_cast<double>(x[4]) - y[4]);
  EXPECT_LE(err_ok, 0.5 * d * (1 + 1e-3));
  EXPECT_GT(err_bad, 0.5 * d * (1 + 1e-3));
}

TEST(GgmlBlocks, F16AndF32Rows) {
  const std::vector<float> x = MakeRow(RowType::kHeavyTail, 100, 5);
  for (bool fast : {false, true}) {
    EXPECT_EQ(Dequantize(CodecKind::kF32, Quantize(CodecKind::kF32, x, fast), 100, fast), x);
    const std::vector<float> y =
        Dequantize(CodecKind::kF16, Quantize(CodecKind::kF16, x, fast), 100, fast);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], RoundToF16(x[i])) << i;
  }
}

// ---- SIMD == reference -----------------------------------------------------------------------

// Restricts Highway's dispatch to one target for the scope, then restores the CPU's own set.
class ScopedTarget {
 public:
  explicit ScopedTarget(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~ScopedTarget() { hwy::SetSupportedTargetsForTest(0); }
  ScopedTarget(const ScopedTarget&) = delete;
  ScopedTarget& operator=(const ScopedTarget&) = delete;
};

// Bitwise equality of floats, except that any two NaNs are equal (NaN payloads through a
// multiply are not something either path promises).
bool SameFloat(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return FloatBits(a) == FloatBits(b);
}

// Finite floats across fp16's whole range: subnormals, exact rounding ties, overflow to inf.
std::vector<float> MakeF16StressRow(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    switch (rng.Next() % 4) {
      case 0:  // random bits in fp16's exponent range and a little beyond
        v = std::ldexp(static_cast<float>(rng.Uniform()), static_cast<int>(rng.Next() % 50) - 30);
        break;
      case 1: {  // an exact tie between two fp16 values
        const uint32_t h = static_cast<uint32_t>(rng.Next() % 0x7BFF);
        v = BitsFloat(FloatBits(F16ToF32(static_cast<f16_t>(h))) + 0x1000u);
        break;
      }
      case 2:
        v = static_cast<float>(rng.Normal() * 1e5);  // some overflow to inf
        break;
      default:
        v = static_cast<float>(rng.Normal() * 1e-6);  // fp16 subnormals
        break;
    }
    if (rng.Next() % 2) v = -v;
  }
  return x;
}

void ExpectFastMatchesRef(CodecKind kind, const std::vector<float>& x, const std::string& what) {
  const int n = static_cast<int>(x.size());
  const std::vector<uint8_t> ref = Quantize(kind, x, false);
  const std::vector<uint8_t> fast = Quantize(kind, x, true);
  ASSERT_EQ(ref, fast) << what;
  const std::vector<float> yr = Dequantize(kind, ref, n, false);
  const std::vector<float> yf = Dequantize(kind, ref, n, true);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(SameFloat(yr[static_cast<size_t>(i)], yf[static_cast<size_t>(i)]))
        << what << " element " << i;
  }
}

TEST(GgmlBlocksSimd, MatchesReferenceOnEveryTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    ScopedTarget scoped(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (CodecKind kind : kAllKinds) {
      for (int n : kLengths) {
        for (RowType type : kRowTypes) {
          for (uint64_t seed = 1; seed <= 12; ++seed) {
            ExpectFastMatchesRef(kind, MakeRow(type, n, seed),
                                 std::string(KindName(kind)) + " n=" + std::to_string(n) +
                                     " type=" + std::to_string(static_cast<int>(type)));
          }
        }
      }
    }
    for (int n : {1, 7, 31, 32, 33, 100, 256}) {
      for (uint64_t seed = 1; seed <= 8; ++seed) {
        ExpectFastMatchesRef(CodecKind::kF16, MakeF16StressRow(n, seed),
                             "f16 stress n=" + std::to_string(n));
      }
    }
  }
}

TEST(GgmlBlocksSimd, DecodesArbitraryBytesLikeReference) {
  // Every code and scale bit pattern, including fp16 inf/NaN/subnormal scales.
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    ScopedTarget scoped(target);
    SCOPED_TRACE(hwy::TargetName(target));
    Rng rng(77);
    for (CodecKind kind : kAllKinds) {
      for (int n : kLengths) {
        for (int rep = 0; rep < 20; ++rep) {
          std::vector<uint8_t> bytes(GgmlRowBytes(kind, n));
          for (auto& byte : bytes) byte = static_cast<uint8_t>(rng.Next());
          const std::vector<float> yr = Dequantize(kind, bytes, n, false);
          const std::vector<float> yf = Dequantize(kind, bytes, n, true);
          for (int i = 0; i < n; ++i) {
            ASSERT_TRUE(SameFloat(yr[static_cast<size_t>(i)], yf[static_cast<size_t>(i)]))
                << KindName(kind) << " n=" << n << " element " << i;
          }
        }
      }
    }
  }
}

TEST(GgmlBlocksSimd, UnalignedBuffers) {
  // Rows live at arbitrary byte offsets inside cache records.
  const std::vector<float> x = MakeRow(RowType::kNormal, 129, 9);
  for (CodecKind kind : kBlockKinds) {
    const std::vector<float> row(x.begin() + 1, x.begin() + 129);
    const std::vector<uint8_t> ref = Quantize(kind, row, false);
    std::vector<uint8_t> buf(ref.size() + 1);
    QuantizeRow(kind, x.data() + 1, 128, buf.data() + 1);
    EXPECT_TRUE(std::equal(ref.begin(), ref.end(), buf.begin() + 1)) << KindName(kind);
    std::vector<float> out(129);
    DequantizeRow(kind, buf.data() + 1, 128, out.data() + 1);
    const std::vector<float> yr = Dequantize(kind, ref, 128, false);
    EXPECT_TRUE(std::equal(yr.begin(), yr.end(), out.begin() + 1)) << KindName(kind);
  }
}

TEST(GgmlBlocksSimd, ForceReferenceRoutesToReference) {
  const bool saved = ForceReference();
  SetForceReference(true);
  const std::vector<float> x = MakeRow(RowType::kOutlier, 128, 4);
  for (CodecKind kind : kAllKinds) {
    EXPECT_EQ(Quantize(kind, x, true), Quantize(kind, x, false)) << KindName(kind);
  }
  SetForceReference(saved);
}

}  // namespace
}  // namespace kvarn
