// Highway SIMD kernels for MatMulRows (matmul.h), dispatched at runtime to the best target.
//
// Quantized weights take llama.cpp's integer route: x arrives quantized per 32-value block to
// int8 codes (activations.h). Weight codes are unpacked to unsigned bytes in value order, and
// multiplied with the x codes by pmaddubsw (u8 x i8 products summed in pairs to i16; every bound
// below keeps those sums < 2^15, so it never saturates) and pmaddwd (i16 pairs to i32, by 1 or by
// a sub-block scale). Each 32-value block then adds one fp32 FMA: float(int32 sum) times
// (weight scale * x scale). Fixed code offsets (q4_0's -8, q5_0's -16, q6_K's -32) and additive
// mins are applied per 8 blocks with the x code sums or x sums: one vector FMA each.
//
// Lanes: a logical 32-byte vector holds one block's codes. Targets with 256-bit vectors (or
// wider, capped) use one; 128-bit targets two chunks of 16 (o = 0, 16). The integer sums are
// exact, so the chunking cannot change a result; the fp32 operations per token are the same
// sequence for every tile size, which is why MatVec and a MatMul row agree bit for bit.
//
// Float weights (f32, f16, bf16): two f32 FMA accumulators per token over x as given.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "weights/activations.h"
#include "weights/kquant_blocks.h"
#include "weights/matmul_kernel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "weights/matmul_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "weights/f16_simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// Internal linkage: other SIMD files define their own helpers in the same per-target namespaces.
namespace {

#if HWY_TARGET != HWY_SCALAR

// Tokens whose outputs one pass over a weight row produces (each weight block is decoded once
// per tile). 4 keeps the accumulators and decoded codes within 16 vector registers.
constexpr int kTileTokens = 4;
// Tokens whose x codes stay cache-resident while every row of the range passes over them.
constexpr int64_t kTokenBlock = 16;

using DU8 = hn::CappedTag<uint8_t, 32>;
using DI8 = hn::RebindToSigned<DU8>;
using DI16 = hn::Repartition<int16_t, DU8>;
using DI32 = hn::Repartition<int32_t, DU8>;
using DF = hn::Repartition<float, DU8>;
// The 8 blocks of a scale group take 8 / kN8 vectors (kN8 = 8 or 4, the f32 lanes per chunk).
using DF8 = DF;
using VU8 = hn::Vec<DU8>;
using VI8 = hn::Vec<DI8>;
using VI16 = hn::Vec<DI16>;
using VI32 = hn::Vec<DI32>;
using VF = hn::Vec<DF>;
using VF8 = hn::Vec<DF8>;

constexpr size_t kN = hn::MaxLanes(DU8());  // code bytes per chunk: 16 or 32
static_assert(kN == 16 || kN == 32, "kernels assume 128-bit or wider vectors");
constexpr size_t kN8 = hn::MaxLanes(DF8());

using weights_simd::F16BitsToF32;
using weights_simd::F16ToF32Vec;

struct TokenX {
  const int8_t* codes;         // [n_blocks][32]
  const float* scales;         // [block_stride]
  const float* sums;           // [block_stride]
  const float* code_sums;      // [block_stride]
  const int16_t* code_sums16;  // [2 * block_stride]
};

uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---------------------------------------------------------------- integer products
// Highway 1.0.3 has no u8 x i8 pair product; x86 has had one since SSSE3 (every x86 target
// compiled here), other targets get the portable definition.

#undef KVARN_WEIGHTS_X86_INTRINSICS
#undef KVARN_WEIGHTS_256
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3
#define KVARN_WEIGHTS_X86_INTRINSICS 1
#else
#define KVARN_WEIGHTS_X86_INTRINSICS 0
#endif
// AVX2 and AVX3 (whose 32-byte CappedTag vectors are 256-bit).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define KVARN_WEIGHTS_256 1
#else
#define KVARN_WEIGHTS_256 0
#endif
static_assert((kN == 32) == (KVARN_WEIGHTS_256 == 1), "vector width and intrinsics agree");

// Lane j = w[2j] * x[2j] + w[2j+1] * x[2j+1] (w unsigned, x signed). Callers keep |lane| < 2^15.
HWY_INLINE VI16 MulPairsU8I8(VU8 w, VI8 x) {
#if KVARN_WEIGHTS_X86_INTRINSICS && KVARN_WEIGHTS_256
  return VI16{_mm256_maddubs_epi16(w.raw, x.raw)};
#elif KVARN_WEIGHTS_X86_INTRINSICS
  return VI16{_mm_maddubs_epi16(w.raw, x.raw)};
#else
  const DI16 d16;
  const hn::RebindToUnsigned<DI16> du16;
  const auto w16 = hn::BitCast(du16, w);
  const VI16 x16 = hn::BitCast(d16, x);
  const VI16 we = hn::BitCast(d16, hn::And(w16, hn::Set(du16, 0xFF)));
  const VI16 wo = hn::BitCast(d16, hn::ShiftRight<8>(w16));
  const VI16 xe = hn::ShiftRight<8>(hn::ShiftLeft<8>(x16));
  const VI16 xo = hn::ShiftRight<8>(x16);
  return hn::Add(hn::Mul(we, xe), hn::Mul(wo, xo));
#endif
}

// Lane j = a[2j] * b[2j] + a[2j+1] * b[2j+1] in int32 (pmaddwd).
HWY_INLINE VI32 MulPairsI16(VI16 a, VI16 b) {
#if KVARN_WEIGHTS_X86_INTRINSICS && KVARN_WEIGHTS_256
  return VI32{_mm256_madd_epi16(a.raw, b.raw)};
#elif KVARN_WEIGHTS_X86_INTRINSICS
  return VI32{_mm_madd_epi16(a.raw, b.raw)};
#else
  const DI32 d32;
  const VI32 a32 = hn::BitCast(d32, a);
  const VI32 b32 = hn::BitCast(d32, b);
  const VI32 ae = hn::ShiftRight<16>(hn::ShiftLeft<16>(a32));
  const VI32 be = hn::ShiftRight<16>(hn::ShiftLeft<16>(b32));
  return hn::Add(hn::Mul(ae, be), hn::Mul(hn::ShiftRight<16>(a32), hn::ShiftRight<16>(b32)));
#endif
}

// x with its sign flipped where w is negative (psignb; lanes where w == 0 do not matter to the
// callers, which multiply them by |w| = 0).
HWY_INLINE VI8 SignLike(VI8 x, VI8 w) {
#if KVARN_WEIGHTS_X86_INTRINSICS && KVARN_WEIGHTS_256
  return VI8{_mm256_sign_epi8(x.raw, w.raw)};
#elif KVARN_WEIGHTS_X86_INTRINSICS
  return VI8{_mm_sign_epi8(x.raw, w.raw)};
#else
  return hn::IfThenElse(hn::Lt(w, hn::Zero(DI8())), hn::Neg(x), x);
#endif
}

HWY_INLINE VI16 Ones(size_t /*o*/) { return hn::Set(DI16(), 1); }

// A compiler barrier after the block scales are stored: the broadcasts that follow then load
// each scale from memory (a load-port broadcast) instead of shuffling it out of the register
// the compiler remembers it in (two shuffle-port operations per block on AVX2).
HWY_INLINE void ReloadScalesFromMemory() {
#if defined(__GNUC__)
  asm volatile("" ::: "memory");
#endif
}

// Lanes holding values 0-15 of a 32-value block take `lower`, values 16-31 `upper`; chunk o
// covers values o .. o+kN-1.
template <class V>
HWY_INLINE V SelectHalf16(size_t o, V lower, V upper) {
  const hn::DFromV<V> d;
  if constexpr (kN == 32) {
    return hn::IfThenElse(hn::FirstN(d, 16 / sizeof(hn::TFromV<V>)), lower, upper);
  } else {
    return o == 0 ? lower : upper;
  }
}

// One block (or plane) of 32 codes for all tokens: acc[t] += float(sum_j w_j x_j) * scale[t].
// `chunk(o)` gives chunk o's codes: unsigned (VU8), or for kSigned (q8_0) signed (VI8), which
// are multiplied as |w| times x with w's sign. `pair_weight(o)` is the int16 factor of each
// pair of products (1, or q6_K's sub-block scales).
template <int kT, bool kSigned, class Chunk, class PairWeight>
HWY_INLINE void BlockDot(const Chunk& chunk, const PairWeight& pair_weight, const TokenX* tx,
                         int64_t xb, const float (*block_scale)[8], int bi, VF* acc) {
  VI32 sum[kT];
  for (int t = 0; t < kT; ++t) sum[t] = hn::Zero(DI32());
  for (size_t o = 0; o < 32; o += kN) {
    const auto c = chunk(o);
    const VI16 pw = pair_weight(o);
    for (int t = 0; t < kT; ++t) {
      VI8 x = hn::LoadU(DI8(), tx[t].codes + xb * kActBlock + o);
      VI16 pairs;
      if constexpr (kSigned) {
        pairs = MulPairsU8I8(hn::BitCast(DU8(), hn::Abs(c)), SignLike(x, c));
      } else {
        pairs = MulPairsU8I8(c, x);
      }
      sum[t] = hn::Add(sum[t], MulPairsI16(pairs, pw));
    }
  }
  for (int t = 0; t < kT; ++t) {
    acc[t] = hn::MulAdd(hn::ConvertTo(DF(), sum[t]), hn::Set(DF(), block_scale[t][bi]), acc[t]);
  }
}

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

// ---------------------------------------------------------------- k-quants

// The 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a q4_K/q5_K super-block, as
// GetScaleMinK4 gives them, written with one 16-byte store (so the narrower loads that follow
// are forwarded from it). Viewing the 12 packed bytes as words w0 w1 w2:
//   scales 0-3 = w0 & 0x3F..        scales 4-7 = (w2 & 0x0F..) | ((w0 >> 6) & 0x03..) << 4
//   mins 0-3   = w1 & 0x3F..        mins 4-7   = ((w2 >> 4) & 0x0F..) | ((w1 >> 6) & 0x03..) << 4
HWY_INLINE void UnpackScalesMinsK4(const uint8_t* packed, uint8_t* out16) {
  const hn::Full128<uint32_t> d4;
  const hn::Full128<uint8_t> d8;
  alignas(16) static constexpr uint32_t kLowIdx[4] = {0, 2, 1, 2};   // source of the low bits
  alignas(16) static constexpr uint32_t kHighIdx[4] = {0, 0, 0, 1};  // source of the top bits
  alignas(16) static constexpr uint32_t kLowMask[4] = {0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F,
                                                       0x0F0F0F0F};
  alignas(16) static constexpr uint32_t kHighLanes[4] = {0, 0xFFFFFFFF, 0, 0xFFFFFFFF};
  // 16 bytes from a 12-byte field: the block continues with qs/qh, so the read stays inside it.
  const auto w = hn::LoadU(d4, reinterpret_cast<const uint32_t*>(packed));
  const auto lo_src = hn::TableLookupLanes(w, hn::SetTableIndices(d4, kLowIdx));
  const auto hi_src = hn::TableLookupLanes(w, hn::SetTableIndices(d4, kHighIdx));
  const auto lane3 = hn::Eq(hn::Iota(d4, 0), hn::Set(d4, 3u));
  const auto low =
      hn::And(hn::IfThenElse(lane3, hn::ShiftRight<4>(lo_src), lo_src), hn::Load(d4, kLowMask));
  const auto high =
      hn::And(hn::ShiftLeft<4>(hn::And(hn::ShiftRight<6>(hi_src), hn::Set(d4, 0x03030303u))),
              hn::Load(d4, kHighLanes));
  hn::Store(hn::BitCast(d8, hn::Or(low, high)), d8, out16);
}

// Per super-block setup shared by q4_K and q5_K: block_scale[t][s] = d * sc[s] * x scale of
// sub-block s; macc[t] -= dmin * mn[s] * x sum of sub-block s.
template <int kT>
HWY_INLINE void ScalesK4(const uint8_t* blk, int64_t sb, const TokenX* tx, float (*block_scale)[8],
                         VF* macc) {
  const DF df;
  const hn::RebindToSigned<DF> di32;
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint8_t, DF> du8;
  // d and dmin are adjacent: one 32-bit load.
  uint32_t d_dmin;
  std::memcpy(&d_dmin, blk, 4);
  const VF d = F16BitsToF32(df, hn::Set(du32, d_dmin & 0xFFFFu));
  const VF dmin = F16BitsToF32(df, hn::Set(du32, d_dmin >> 16));
  alignas(16) uint8_t sm[16];
  UnpackScalesMinsK4(blk + 4, sm);
  for (size_t i = 0; i < 8; i += kN8) {
    const VF sc = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(du8, sm + i)));
    const VF mn = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(du8, sm + 8 + i)));
    const VF dsc = hn::Mul(d, sc);      // exact: 11 + 6 significant bits
    const VF mmin = hn::Mul(dmin, mn);  // exact likewise
    for (int t = 0; t < kT; ++t) {
      hn::Store(hn::Mul(dsc, hn::LoadU(df, tx[t].scales + sb * 8 + i)), df, block_scale[t] + i);
      macc[t] = hn::NegMulAdd(mmin, hn::LoadU(df, tx[t].sums + sb * 8 + i), macc[t]);
    }
  }
}

// q4_K (kFifth false) and q5_K (kFifth true). Values 64c .. 64c+63 take their codes from qs
// bytes 32c .. 32c+31: low nibbles are sub-block 2c, high nibbles 2c+1, both in value order.
// q5_K adds 16 where bit 2c (2c+1) of qh[l] is set. Sub-blocks 2c and 2c+1 accumulate into
// separate registers (two FMA chains).
template <bool kFifth, int kT>
void RowK4(const uint8_t* row, int64_t n_sb, const TokenX* tx, float* out) {
  const DF df;
  const DU8 du;
  constexpr size_t kBytes = kFifth ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr size_t kQs = kFifth ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);
  VF acc0[kT], acc1[kT], macc[kT];
  for (int t = 0; t < kT; ++t) acc0[t] = acc1[t] = macc[t] = hn::Zero(df);
  alignas(32) float block_scale[kT][8];
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    const uint8_t* blk = row + sb * static_cast<int64_t>(kBytes);
    ScalesK4<kT>(blk, sb, tx, block_scale, macc);
    ReloadScalesFromMemory();
    for (int c = 0; c < 4; ++c) {
      const uint8_t* qs = blk + kQs + 32 * c;
      const auto low = [&](size_t o) {
        VU8 v = hn::And(hn::LoadU(du, qs + o), hn::Set(du, 0x0F));
        if constexpr (kFifth) {
          const VU8 h = hn::LoadU(du, blk + offsetof(BlockQ5_K, qh) + o);
          const VU8 bit = hn::Set(du, static_cast<uint8_t>(1u << (2 * c)));
          v = hn::Or(v, hn::IfThenElseZero(hn::TestBit(h, bit), hn::Set(du, 16)));
        }
        return v;
      };
      const auto high = [&](size_t o) {
        VU8 v = hn::And(hn::ShiftRight<4>(hn::LoadU(du, qs + o)), hn::Set(du, 0x0F));
        if constexpr (kFifth) {
          const VU8 h = hn::LoadU(du, blk + offsetof(BlockQ5_K, qh) + o);
          const VU8 bit = hn::Set(du, static_cast<uint8_t>(2u << (2 * c)));
          v = hn::Or(v, hn::IfThenElseZero(hn::TestBit(h, bit), hn::Set(du, 16)));
        }
        return v;
      };
      BlockDot<kT, false>(low, Ones, tx, sb * 8 + 2 * c, block_scale, 2 * c, acc0);
      BlockDot<kT, false>(high, Ones, tx, sb * 8 + 2 * c + 1, block_scale, 2 * c + 1, acc1);
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t]))) +
             hn::GetLane(hn::SumOfLanes(df, macc[t]));
  }
}

// q6_K plane k (0-3) of a half: values 32k .. 32k+31, code = low 4 bits from ql bytes
// 32(k & 1) .. (nibble k >> 1) | bits 2k, 2k+1 of qh[l] at positions 4, 5 - unsigned 0..63;
// the -32 offset is applied with the x code sums.
template <int kK>
HWY_INLINE VU8 Q6PlaneCodes(const uint8_t* ql, const uint8_t* qh, size_t o) {
  const DU8 d;
  const VU8 l = hn::LoadU(d, ql + 32 * (kK & 1) + o);
  const VU8 h = hn::LoadU(d, qh + o);
  const VU8 low = kK < 2 ? hn::And(l, hn::Set(d, 0x0F)) : hn::ShiftRight<4>(l);
  VU8 high;
  if constexpr (kK == 0) high = hn::ShiftLeft<4>(h);
  if constexpr (kK == 1) high = hn::ShiftLeft<2>(h);
  if constexpr (kK == 2) high = h;
  if constexpr (kK == 3) high = hn::ShiftRight<2>(h);
  return hn::Or(low, hn::And(high, hn::Set(d, 0x30)));
}

// One q6_K plane for all tokens. Its values 0-15 are sub-block 2k of the half, 16-31 sub-block
// 2k+1: the pair products (< 2 * 63 * 127) are weighted by those int8 scales in the int16 x
// int16 step (|sum| <= 2 * 16002 * 128 per lane).
template <int kK, int kT>
HWY_INLINE void PlaneQ6(const uint8_t* ql, const uint8_t* qh, const int8_t* scales, int64_t xb,
                        const TokenX* tx, const float (*block_scale)[8], int bi, VF* acc) {
  const DI16 d16;
  const auto chunk = [&](size_t o) { return Q6PlaneCodes<kK>(ql, qh, o); };
  const auto pair_weight = [&](size_t o) {
    return SelectHalf16(o, hn::Set(d16, scales[2 * kK]), hn::Set(d16, scales[2 * kK + 1]));
  };
  BlockDot<kT, false>(chunk, pair_weight, tx, xb, block_scale, bi, acc);
}

template <int kT>
void RowQ6K(const uint8_t* row, int64_t n_sb, const TokenX* tx, float* out) {
  const DF df;
  const DI16 d16;
  const hn::Rebind<int8_t, DI16> d8;
  VF acc0[kT], acc1[kT], macc[kT];
  for (int t = 0; t < kT; ++t) acc0[t] = acc1[t] = macc[t] = hn::Zero(df);
  alignas(32) float block_scale[kT][8];
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    const uint8_t* blk = row + sb * static_cast<int64_t>(sizeof(BlockQ6_K));
    const VF d = hn::Set(df, weights_simd::F16ToF32Scalar(blk + offsetof(BlockQ6_K, d)));
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ6_K, scales));
    for (size_t i = 0; i < 8; i += kN8) {
      // The -32 offset of x-block b: -32 * (scale 2b * code sum 0-15 + scale 2b+1 * sum 16-31).
      const VI16 sc = hn::PromoteTo(d16, hn::LoadU(d8, scales + 2 * i));
      for (int t = 0; t < kT; ++t) {
        const VF bs = hn::Mul(d, hn::LoadU(df, tx[t].scales + sb * 8 + i));
        hn::Store(bs, df, block_scale[t] + i);
        const VI16 cs = hn::LoadU(d16, tx[t].code_sums16 + 2 * (sb * 8 + i));
        const VF off = hn::Mul(hn::ConvertTo(df, MulPairsI16(sc, cs)), hn::Set(df, -32.0f));
        macc[t] = hn::MulAdd(bs, off, macc[t]);
      }
    }
    ReloadScalesFromMemory();
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + offsetof(BlockQ6_K, ql) + 64 * h;
      const uint8_t* qh = blk + offsetof(BlockQ6_K, qh) + 32 * h;
      const int8_t* sc = scales + 8 * h;
      const int64_t xb = sb * 8 + 4 * h;
      PlaneQ6<0, kT>(ql, qh, sc, xb + 0, tx, block_scale, 4 * h + 0, acc0);
      PlaneQ6<1, kT>(ql, qh, sc, xb + 1, tx, block_scale, 4 * h + 1, acc1);
      PlaneQ6<2, kT>(ql, qh, sc, xb + 2, tx, block_scale, 4 * h + 2, acc0);
      PlaneQ6<3, kT>(ql, qh, sc, xb + 3, tx, block_scale, 4 * h + 3, acc1);
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t]))) +
             hn::GetLane(hn::SumOfLanes(df, macc[t]));
  }
}

// ---------------------------------------------------------------- float weights

using DFF = hn::CappedTag<float, 16>;

template <GgmlType kType>
HWY_INLINE hn::Vec<DFF> LoadWeights(const uint8_t* row, int64_t i) {
  const DFF df;
  if constexpr (kType == GgmlType::kF32) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + i);
  } else if constexpr (kType == GgmlType::kF16) {
    return F16ToF32Vec(df, reinterpret_cast<const uint16_t*>(row) + i);
  } else {
    const hn::Rebind<hwy::bfloat16_t, DFF> dbf;
    return hn::PromoteTo(df, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(row) + i));
  }
}

float ScalarWeight(GgmlType type, const uint8_t* row, int64_t i) {
  if (type == GgmlType::kF32) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
  if (type == GgmlType::kF16) return weights_simd::F16ToF32Scalar(row + 2 * i);
  return BitsFloat(static_cast<uint32_t>(Load16(row + 2 * i)) << 16);
}

template <GgmlType kType, int kT>
void RowFloat(const uint8_t* row, int64_t cols, const float* const* x, float* out) {
  const DFF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<DFF> acc0[kT], acc1[kT];
  for (int t = 0; t < kT; ++t) acc0[t] = acc1[t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * n <= cols; i += 2 * n) {
    const auto w0 = LoadWeights<kType>(row, i);
    const auto w1 = LoadWeights<kType>(row, i + n);
    for (int t = 0; t < kT; ++t) {
      acc0[t] = hn::MulAdd(w0, hn::LoadU(df, x[t] + i), acc0[t]);
      acc1[t] = hn::MulAdd(w1, hn::LoadU(df, x[t] + i + n), acc1[t]);
    }
  }
  if (i + n <= cols) {
    const auto w0 = LoadWeights<kType>(row, i);
    for (int t = 0; t < kT; ++t) acc0[t] = hn::MulAdd(w0, hn::LoadU(df, x[t] + i), acc0[t]);
    i += n;
  }
  for (int t = 0; t < kT; ++t) {
    float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t])));
    for (int64_t j = i; j < cols; ++j) sum += ScalarWeight(kType, row, j) * x[t][j];
    out[t] = sum;
  }
}

// ---------------------------------------------------------------- dispatch over formats

template <int kT>
void RowKernel(GgmlType type, const uint8_t* row, int64_t cols, const TokenX* tx,
               const float* const* x, float* out) {
  const int64_t nb = cols / kActBlock;
  const int64_t nsb = cols / kQK_K;
  switch (type) {
    case GgmlType::kF32:
      return RowFloat<GgmlType::kF32, kT>(row, cols, x, out);
    case GgmlType::kF16:
      return RowFloat<GgmlType::kF16, kT>(row, cols, x, out);
    case GgmlType::kBF16:
      return RowFloat<GgmlType::kBF16, kT>(row, cols, x, out);
    case GgmlType::kQ8_0:
      return RowBlocks32<FormatQ8_0, kT>(row, nb, tx, out);
    case GgmlType::kQ4_0:
      return RowBlocks32<FormatQ4_0, kT>(row, nb, tx, out);
    case GgmlType::kQ4_1:
      return RowBlocks32<FormatQ4_1, kT>(row, nb, tx, out);
    case GgmlType::kQ5_0:
      return RowBlocks32<FormatQ5_0, kT>(row, nb, tx, out);
    case GgmlType::kQ5_1:
      return RowBlocks32<FormatQ5_1, kT>(row, nb, tx, out);
    case GgmlType::kQ4_K:
      return RowK4<false, kT>(row, nsb, tx, out);
    case GgmlType::kQ5_K:
      return RowK4<true, kT>(row, nsb, tx, out);
    case GgmlType::kQ6_K:
      return RowQ6K<kT>(row, nsb, tx, out);
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

void MatMulRowsKernel(const MatMulKernelArgs& a) {
#if HWY_TARGET == HWY_SCALAR
  MatMulRowsScalarFallback(a);
#else
  const PreparedActivations& act = *a.x;
  const int64_t n_tok = act.n_tok;
  for (int64_t t0 = 0; t0 < n_tok; t0 += kTokenBlock) {
    const int64_t t1 = std::min(n_tok, t0 + kTokenBlock);
    TokenX tx[kTokenBlock];
    const float* xf[kTokenBlock];
    for (int64_t t = t0; t < t1; ++t) {
      if (act.quantized) {
        tx[t - t0] = {act.token_codes(t), act.token_scales(t), act.token_sums(t),
                      act.token_code_sums(t), act.token_code_sums16(t)};
      } else {
        tx[t - t0] = {nullptr, nullptr, nullptr, nullptr, nullptr};
      }
      xf[t - t0] = act.x + t * act.cols;
    }
    for (int64_t r = a.row_begin; r < a.row_end; ++r) {
      const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
      for (int64_t t = t0; t < t1; t += kTileTokens) {
        const int64_t k = t - t0;
        float out[kTileTokens];
        const int n = static_cast<int>(std::min<int64_t>(kTileTokens, t1 - t));
        switch (n) {
          case 1:
            RowKernel<1>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          case 2:
            RowKernel<2>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          case 3:
            RowKernel<3>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          default:
            RowKernel<4>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
        }
        for (int j = 0; j < n; ++j) a.y[(t + j) * a.ldy + r] = out[j];
      }
    }
  }
#endif
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn {
HWY_EXPORT(MatMulRowsKernel);

void MatMulRowsSimd(const MatMulKernelArgs& args) { HWY_DYNAMIC_DISPATCH(MatMulRowsKernel)(args); }
}  // namespace kvarn
#endif
