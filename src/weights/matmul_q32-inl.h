// Integer matmul rows of the 32-value block formats: q8_0, q4_0, q4_1, q5_0, q5_1.
// Per-target code included by matmul_simd.cc inside its foreach_target passes (Highway's -inl.h
// pattern: the guard toggles so each target's pass compiles it once).

#if defined(KVARN_WEIGHTS_MATMUL_Q32_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_WEIGHTS_MATMUL_Q32_INL_H_
#undef KVARN_WEIGHTS_MATMUL_Q32_INL_H_
#else
#define KVARN_WEIGHTS_MATMUL_Q32_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "weights/f16_simd-inl.h"
#include "weights/kquant_blocks.h"
#include "weights/matmul_int-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

#if HWY_TARGET != HWY_SCALAR

// ---------------------------------------------------------------- 32-value block formats

// Codes of a nibble block (value j: low nibble of qs[j], value j + 16: high nibble), chunk o.
// A template on D so the 256-bit branch is only instantiated where it applies.
template <class D>
HWY_INLINE hn::Vec<D> NibbleCodes(D d, const uint8_t* qs, size_t o) {
  const auto k15 = hn::Set(d, 0x0F);
  if constexpr (hn::MaxLanes(D()) == 32) {
    const hn::Half<D> dh;
    const auto v = hn::LoadU(dh, qs);
    return hn::And(hn::Combine(d, hn::ShiftRight<4>(v), v), k15);
  } else {
    const auto v = hn::LoadU(d, qs);
    return o == 0 ? hn::And(v, k15) : hn::And(hn::ShiftRight<4>(v), k15);
  }
}

// q5_0/q5_1: 16 where bit j of the little-endian uint32 qh is set, for values j of chunk o. A byte
// shuffle copies qh's byte j / 8 to lane j, a bit test picks bit j % 8.
HWY_INLINE VU8 FifthBits(const uint8_t* qh_bytes, size_t o) {
  const DU8 d;
  alignas(32) static constexpr uint8_t kByte[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  alignas(32) static constexpr uint8_t kBit[32] = {1,  2,   4,  8,  16,  32, 64, 128, 1,  2,  4,
                                                   8,  16,  32, 64, 128, 1,  2,  4,   8,  16, 32,
                                                   64, 128, 1,  2,  4,   8,  16, 32,  64, 128};
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  // qh in every 32-bit lane, so every 128-bit block (pshufb's reach) holds its 4 bytes.
  const VU8 bytes = hn::BitCast(d, hn::Set(hn::Repartition<uint32_t, DU8>(), qh));
  const VU8 sel = hn::TableLookupBytes(bytes, hn::LoadU(d, kByte + o));
  return hn::IfThenElseZero(hn::TestBit(sel, hn::LoadU(d, kBit + o)), hn::Set(d, 16));
}

// Each format: block bytes, offsets of d (and m), the fixed code offset (value = d * (code -
// offset) [+ m]), whether codes are signed, and chunk o's codes.
struct FormatQ8_0 {
  static constexpr int32_t kBytes = sizeof(BlockQ8_0);
  static constexpr bool kHasMin = false, kSigned = true;
  static constexpr int kOffset = 0;
  static VI8 Codes(const uint8_t* blk, size_t o) {
    return hn::LoadU(DI8(), reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ8_0, qs)) + o);
  }
};

struct FormatQ4_0 {
  static constexpr int32_t kBytes = sizeof(BlockQ4_0);
  static constexpr bool kHasMin = false, kSigned = false;
  static constexpr int kOffset = 8;
  static VU8 Codes(const uint8_t* blk, size_t o) {
    return NibbleCodes(DU8(), blk + offsetof(BlockQ4_0, qs), o);
  }
};

struct FormatQ4_1 {
  static constexpr int32_t kBytes = sizeof(BlockQ4_1);
  static constexpr bool kHasMin = true, kSigned = false;
  static constexpr int kOffset = 0;
  static VU8 Codes(const uint8_t* blk, size_t o) {
    return NibbleCodes(DU8(), blk + offsetof(BlockQ4_1, qs), o);
  }
};

struct FormatQ5_0 {
  static constexpr int32_t kBytes = sizeof(BlockQ5_0);
  static constexpr bool kHasMin = false, kSigned = false;
  static constexpr int kOffset = 16;
  static VU8 Codes(const uint8_t* blk, size_t o) {
    return hn::Or(NibbleCodes(DU8(), blk + offsetof(BlockQ5_0, qs), o),
                  FifthBits(blk + offsetof(BlockQ5_0, qh), o));
  }
};

struct FormatQ5_1 {
  static constexpr int32_t kBytes = sizeof(BlockQ5_1);
  static constexpr bool kHasMin = true, kSigned = false;
  static constexpr int kOffset = 0;
  static VU8 Codes(const uint8_t* blk, size_t o) {
    return hn::Or(NibbleCodes(DU8(), blk + offsetof(BlockQ5_1, qs), o),
                  FifthBits(blk + offsetof(BlockQ5_1, qh), o));
  }
};

// The 32-bit words at the start of blocks g .. g+7 (d, and m next to it; zero past the end).
// Scalar loads into a small array: fetched one group ahead of use, so the vector load that reads
// them finds the narrow stores long retired (a gather is slower on the CPUs at hand, and an
// immediate reload of narrow stores stalls on store forwarding).
template <class Format>
HWY_INLINE void FetchScaleWords(const uint8_t* row, int64_t g, int64_t n_blocks, uint32_t* words) {
  for (int64_t i = 0; i < 8; ++i) {
    uint32_t w = 0;
    if (g + i < n_blocks) std::memcpy(&w, row + (g + i) * Format::kBytes, 4);
    words[i] = w;
  }
}

// Rows of 32-value blocks. Scales are handled 8 blocks at a time: one vector converts the fp16
// bits and multiplies the 8 x scales of each token; the code offset (times the x code sums) and
// the mins (times the x sums) are one FMA each. Two accumulators per token (even/odd blocks)
// halve the FMA latency chain.
template <class Format, int kT>
void RowBlocks32(const uint8_t* row, int64_t n_blocks, const TokenX* tx, float* out) {
  static_assert(offsetof(BlockQ4_1, m) == 2 && offsetof(BlockQ5_1, m) == 2, "m next to d");
  const DF df;
  const hn::RebindToUnsigned<DF> du32;
  VF acc0[kT], acc1[kT], macc[kT];
  for (int t = 0; t < kT; ++t) acc0[t] = acc1[t] = macc[t] = hn::Zero(df);
  alignas(32) float block_scale[kT][8];
  alignas(32) uint32_t words[2][8];
  FetchScaleWords<Format>(row, 0, n_blocks, words[0]);
  for (int64_t g = 0; g < n_blocks; g += 8) {
    const uint32_t* cur = words[(g / 8) & 1];
    const uint8_t* group = row + g * Format::kBytes;
    for (int32_t off = 0; off < 8 * Format::kBytes; off += 64) {
      hwy::Prefetch(group + kPrefetchBytes + off);
    }
    for (size_t i = 0; i < 8; i += kN8) {
      const auto w = hn::Load(du32, cur + i);
      const VF d = F16BitsToF32(df, hn::And(w, hn::Set(du32, 0xFFFFu)));
      for (int t = 0; t < kT; ++t) {
        const VF bs = hn::Mul(d, hn::LoadU(df, tx[t].scales + g + i));
        hn::Store(bs, df, block_scale[t] + i);
        if constexpr (Format::kOffset != 0) {
          const VF off = hn::Mul(hn::LoadU(df, tx[t].code_sums + g + i),
                                 hn::Set(df, -static_cast<float>(Format::kOffset)));
          macc[t] = hn::MulAdd(bs, off, macc[t]);
        }
      }
      if constexpr (Format::kHasMin) {
        const VF m = F16BitsToF32(df, hn::ShiftRight<16>(w));
        for (int t = 0; t < kT; ++t) {
          macc[t] = hn::MulAdd(m, hn::LoadU(df, tx[t].sums + g + i), macc[t]);
        }
      }
    }
    if (g + 8 < n_blocks) FetchScaleWords<Format>(row, g + 8, n_blocks, words[(g / 8 + 1) & 1]);
    ReloadScalesFromMemory();
    const int64_t ng = std::min<int64_t>(8, n_blocks - g);
    // Blocks in pairs, even blocks into acc0 and odd into acc1 (named, not indexed by i & 1,
    // so the accumulators stay in registers).
    for (int64_t i = 0; i < ng; i += 2) {
      for (int k = 0; k < 2 && i + k < ng; ++k) {
        const uint8_t* blk = row + (g + i + k) * Format::kBytes;
        const auto chunk = [blk](size_t o) { return Format::Codes(blk, o); };
        BlockDot<kT, Format::kSigned>(chunk, Ones, tx, g + i + k, block_scale,
                                      static_cast<int>(i + k), k == 0 ? acc0 : acc1);
      }
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t]))) +
             hn::GetLane(hn::SumOfLanes(df, macc[t]));
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_WEIGHTS_MATMUL_Q32_INL_H_
