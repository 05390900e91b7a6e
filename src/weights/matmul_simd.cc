// Highway SIMD kernels for MatMulRows (matmul.h), dispatched at runtime to the best target.
//
// Quantized weights (integer route, as llama.cpp): x arrives quantized per 32-value block as
// int16 codes in pair-split order (activations.h). A 16-bit load of weight bytes puts adjacent
// positions 2j and 2j+1 in one lane's low and high byte, so masks and shifts turn it into an
// "even" and an "odd" int16 vector of weight codes, lane j matching x code j of the even and of the
// odd half of the block. ReorderWidenMulAccumulate (madd) then forms exact int32 dot products;
// each 32-value block contributes one fp32 FMA of its int32 sum times (weight scale * x scale).
// Additive mins contribute min * (f32 sum of the x block), eight blocks per vector FMA.
//
// Lanes: the integer kernels work on a logical 16-lane int16 vector per 32 weight bytes. Targets
// with 256-bit vectors or wider use one such vector (CappedTag 16); 128-bit targets use two
// chunks of 8 lanes (offset o = 0, 8). Integer sums are exact, so the chunking cannot change a
// result; the fp32 operations per token are the same sequence for every tile size, which is why
// MatVec and a MatMul row agree bit for bit.
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
// per tile). 4 keeps the accumulators, sums and decoded codes within 16 vector registers.
constexpr int kTileTokens = 4;
// Tokens whose x codes stay cache-resident while every row of the range passes over them.
constexpr int64_t kTokenBlock = 16;

using DI16 = hn::CappedTag<int16_t, 16>;
using DU16 = hn::RebindToUnsigned<DI16>;
using DI32 = hn::Repartition<int32_t, DI16>;
using DF = hn::Repartition<float, DI16>;
using DF8 = hn::CappedTag<float, 8>;  // 8 blocks' scales at once
using VI16 = hn::Vec<DI16>;
using VU16 = hn::Vec<DU16>;
using VI32 = hn::Vec<DI32>;
using VF = hn::Vec<DF>;
using VF8 = hn::Vec<DF8>;

constexpr size_t kN = hn::MaxLanes(DI16());  // int16 lanes per chunk: 8 or 16
static_assert(kN == 8 || kN == 16, "kernels assume 128-bit or wider vectors");

struct TokenX {
  const int16_t* codes;  // [n_blocks][32] pair-split
  const float* scales;   // [block_stride]
  const float* sums;     // [block_stride]
};

uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

using weights_simd::F16ToF32Vec;

// One vector FMA per block: acc += float(int32 sum) * (weight scale * x scale).
HWY_INLINE VF ScaleAdd(VI32 s0, VI32 s1, float scale, VF acc) {
  const DF df;
  return hn::MulAdd(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(s0, s1)), hn::Set(df, scale), acc);
}

// Adds the dot products of one 16-lane chunk of weight codes with each token's x codes.
template <int kT>
HWY_INLINE void DotChunk(VI16 even, VI16 odd, const TokenX* tx, int64_t block, size_t o, VI32* s0,
                         VI32* s1) {
  const DI16 di16;
  const DI32 di32;
  for (int t = 0; t < kT; ++t) {
    const int16_t* xc = tx[t].codes + block * kActBlock;
    s0[t] = hn::ReorderWidenMulAccumulate(di32, even, hn::LoadU(di16, xc + o), s0[t], s1[t]);
    s0[t] = hn::ReorderWidenMulAccumulate(di32, odd, hn::LoadU(di16, xc + 16 + o), s0[t], s1[t]);
  }
}

template <class V>
HWY_INLINE V SelectHalf(size_t o, V lower, V upper) {
  // Logical lanes 0-7 take `lower`, 8-15 `upper`; chunk o covers logical lanes o .. o+kN-1.
  const hn::DFromV<V> d;
  if constexpr (kN == 16) {
    return hn::IfThenElse(hn::FirstN(d, 8), lower, upper);
  } else {
    return o == 0 ? lower : upper;
  }
}

// ---------------------------------------------------------------- 32-value block formats
// Each format says where its scale (and min) live and decodes chunk o of a block into even/odd
// int16 codes, already offset so that value = d * code (+ m).

// For formats whose 16 qs bytes hold value j in the low and j + 16 in the high nibble of byte j:
// logical lanes 0-7 are byte pairs 0-7 (low nibbles), lanes 8-15 the same pairs' high nibbles.
HWY_INLINE VU16 NibblePairs(const uint8_t* qs, size_t o) {
  const DU16 du;
  const uint16_t* p = reinterpret_cast<const uint16_t*>(qs);
  if constexpr (kN == 16) {
    const VU16 v = hn::LoadDup128(du, p);
    return hn::IfThenElse(hn::FirstN(du, 8), v, hn::ShiftRight<4>(v));
  } else {
    const VU16 v = hn::LoadU(du, p);
    return o == 0 ? v : hn::ShiftRight<4>(v);
  }
}

HWY_INLINE void SplitNibbles(VU16 u, VI16* even, VI16* odd) {
  const DU16 du;
  const DI16 di;
  const VU16 k15 = hn::Set(du, 0x000F);
  *even = hn::BitCast(di, hn::And(u, k15));
  *odd = hn::BitCast(di, hn::And(hn::ShiftRight<8>(u), k15));
}

// q5_0/q5_1 fifth bits: bit e of the uint32 qh is value e's. Lane j of the even vector holds
// value 2j (2j - 16 + 16 in the upper logical half), so it tests bit 2(j mod 8) of the matching
// 16-bit half of qh; the odd vector tests the next bit up.
HWY_INLINE void AddFifthBits(const uint8_t* qh_bytes, size_t o, VI16* even, VI16* odd) {
  const DU16 du;
  const DI16 di;
  static constexpr uint16_t kEvenBits[16] = {1, 4, 16, 64, 256, 1024, 4096, 16384,
                                             1, 4, 16, 64, 256, 1024, 4096, 16384};
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const VU16 h = SelectHalf(o, hn::Set(du, static_cast<uint16_t>(qh & 0xFFFF)),
                            hn::Set(du, static_cast<uint16_t>(qh >> 16)));
  const VU16 be = hn::LoadU(du, kEvenBits);
  const VU16 bo = hn::ShiftLeft<1>(be);
  const VU16 k16 = hn::Set(du, 16);
  *even = hn::Or(*even, hn::BitCast(di, hn::IfThenElseZero(hn::TestBit(h, be), k16)));
  *odd = hn::Or(*odd, hn::BitCast(di, hn::IfThenElseZero(hn::TestBit(h, bo), k16)));
}

struct FormatQ8_0 {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr bool kHasMin = false;
  static constexpr size_t kD = offsetof(BlockQ8_0, d), kM = 0;
  static void Decode(const uint8_t* blk, size_t o, VI16* even, VI16* odd) {
    const DI16 di;
    const VI16 v =
        hn::LoadU(di, reinterpret_cast<const int16_t*>(blk + offsetof(BlockQ8_0, qs)) + o);
    *even = hn::ShiftRight<8>(hn::ShiftLeft<8>(v));  // sign-extended low bytes
    *odd = hn::ShiftRight<8>(v);
  }
};

struct FormatQ4_0 {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr bool kHasMin = false;
  static constexpr size_t kD = offsetof(BlockQ4_0, d), kM = 0;
  static void Decode(const uint8_t* blk, size_t o, VI16* even, VI16* odd) {
    const DI16 di;
    SplitNibbles(NibblePairs(blk + offsetof(BlockQ4_0, qs), o), even, odd);
    *even = hn::Sub(*even, hn::Set(di, 8));
    *odd = hn::Sub(*odd, hn::Set(di, 8));
  }
};

struct FormatQ4_1 {
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  static constexpr bool kHasMin = true;
  static constexpr size_t kD = offsetof(BlockQ4_1, d), kM = offsetof(BlockQ4_1, m);
  static void Decode(const uint8_t* blk, size_t o, VI16* even, VI16* odd) {
    SplitNibbles(NibblePairs(blk + offsetof(BlockQ4_1, qs), o), even, odd);
  }
};

struct FormatQ5_0 {
  static constexpr size_t kBytes = sizeof(BlockQ5_0);
  static constexpr bool kHasMin = false;
  static constexpr size_t kD = offsetof(BlockQ5_0, d), kM = 0;
  static void Decode(const uint8_t* blk, size_t o, VI16* even, VI16* odd) {
    const DI16 di;
    SplitNibbles(NibblePairs(blk + offsetof(BlockQ5_0, qs), o), even, odd);
    AddFifthBits(blk + offsetof(BlockQ5_0, qh), o, even, odd);
    *even = hn::Sub(*even, hn::Set(di, 16));
    *odd = hn::Sub(*odd, hn::Set(di, 16));
  }
};

struct FormatQ5_1 {
  static constexpr size_t kBytes = sizeof(BlockQ5_1);
  static constexpr bool kHasMin = true;
  static constexpr size_t kD = offsetof(BlockQ5_1, d), kM = offsetof(BlockQ5_1, m);
  static void Decode(const uint8_t* blk, size_t o, VI16* even, VI16* odd) {
    SplitNibbles(NibblePairs(blk + offsetof(BlockQ5_1, qs), o), even, odd);
    AddFifthBits(blk + offsetof(BlockQ5_1, qh), o, even, odd);
  }
};

// One 32-value block for all tokens: acc[t] += (int32 dot of codes) * block_scale[t][i].
template <class Format, int kT>
HWY_INLINE void BlockDot32(const uint8_t* row, int64_t block, const TokenX* tx,
                           const float (*block_scale)[8], int i, VF* acc) {
  const uint8_t* blk = row + block * static_cast<int64_t>(Format::kBytes);
  VI32 s0[kT], s1[kT];
  for (int t = 0; t < kT; ++t) s0[t] = s1[t] = hn::Zero(DI32());
  for (size_t o = 0; o < 16; o += kN) {
    VI16 even, odd;
    Format::Decode(blk, o, &even, &odd);
    DotChunk<kT>(even, odd, tx, block, o, s0, s1);
  }
  for (int t = 0; t < kT; ++t) acc[t] = ScaleAdd(s0[t], s1[t], block_scale[t][i], acc[t]);
}

// Rows of 32-value blocks. Scales are handled 8 blocks at a time: one gather fetches the 32-bit
// word at each block's start (d, and m for the formats that have it, next to it), one vector
// converts the fp16 bits, times the 8 x scales of each token; the mins' contribution is one FMA
// with the 8 x sums. Two accumulators per token (even/odd blocks) halve the FMA latency chain.
template <class Format, int kT>
void RowBlocks32(const uint8_t* row, int64_t n_blocks, const TokenX* tx, float* out) {
  static_assert(Format::kD == 0 && (!Format::kHasMin || Format::kM == 2), "d (m) first");
  const DF df;
  const DF8 df8;
  const hn::RebindToSigned<DF8> di32;
  const hn::RebindToUnsigned<DF8> du32;
  constexpr size_t kN8 = hn::MaxLanes(DF8());
  constexpr int32_t kBytes = static_cast<int32_t>(Format::kBytes);
  VF acc0[kT], acc1[kT];
  VF8 macc[kT];
  for (int t = 0; t < kT; ++t) {
    acc0[t] = acc1[t] = hn::Zero(df);
    macc[t] = hn::Zero(df8);
  }
  alignas(32) float block_scale[kT][8];
  for (int64_t g = 0; g < n_blocks; g += 8) {
    const int64_t ng = std::min<int64_t>(8, n_blocks - g);
    const uint32_t* base = reinterpret_cast<const uint32_t*>(row + g * kBytes);
    for (size_t i = 0; i < 8; i += kN8) {
      // Past the last block, lanes re-read the last one (their scales go unused).
      const auto block = hn::Min(hn::Iota(di32, static_cast<int32_t>(i)),
                                 hn::Set(di32, static_cast<int32_t>(ng - 1)));
      const auto words = hn::GatherOffset(du32, base, hn::Mul(block, hn::Set(di32, kBytes)));
      const VF8 d = weights_simd::F16BitsToF32(df8, hn::And(words, hn::Set(du32, 0xFFFFu)));
      for (int t = 0; t < kT; ++t) {
        hn::Store(hn::Mul(d, hn::LoadU(df8, tx[t].scales + g + i)), df8, block_scale[t] + i);
      }
      if constexpr (Format::kHasMin) {
        const VF8 m = weights_simd::F16BitsToF32(df8, hn::ShiftRight<16>(words));
        for (int t = 0; t < kT; ++t) {
          macc[t] = hn::MulAdd(m, hn::LoadU(df8, tx[t].sums + g + i), macc[t]);
        }
      }
    }
    // Blocks in pairs, even blocks into acc0 and odd into acc1 (named, not indexed by i & 1,
    // so the accumulators stay in registers).
    for (int64_t i = 0; i < ng; i += 2) {
      BlockDot32<Format, kT>(row, g + i, tx, block_scale, static_cast<int>(i), acc0);
      if (i + 1 < ng) {
        BlockDot32<Format, kT>(row, g + i + 1, tx, block_scale, static_cast<int>(i + 1), acc1);
      }
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t])));
    if constexpr (Format::kHasMin) out[t] += hn::GetLane(hn::SumOfLanes(df8, macc[t]));
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
  const auto high = hn::And(hn::ShiftLeft<4>(hn::And(hn::ShiftRight<6>(hi_src),
                                                      hn::Set(d4, 0x03030303u))),
                            hn::Load(d4, kHighLanes));
  hn::Store(hn::BitCast(d8, hn::Or(low, high)), d8, out16);
}

// Per super-block setup shared by q4_K and q5_K: block_scale[t][s] = d * sc[s] * x scale of
// sub-block s; macc[t] += dmin * mn[s] * x sum of sub-block s (subtracted at the end).
template <int kT>
HWY_INLINE void ScalesK4(const uint8_t* blk, int64_t sb, const TokenX* tx,
                         float (*block_scale)[8], VF8* macc) {
  const DF8 df8;
  const hn::Rebind<int32_t, DF8> di32;
  const hn::Rebind<uint8_t, DF8> du8;
  const hn::Rebind<uint32_t, DF8> du32;
  constexpr size_t kN8 = hn::MaxLanes(DF8());
  // d and dmin are adjacent: convert both with one 32-bit load.
  uint32_t d_dmin;
  std::memcpy(&d_dmin, blk, 4);
  const VF8 d = weights_simd::F16BitsToF32(df8, hn::Set(du32, d_dmin & 0xFFFFu));
  const VF8 dmin = weights_simd::F16BitsToF32(df8, hn::Set(du32, d_dmin >> 16));
  alignas(16) uint8_t sm[16];
  UnpackScalesMinsK4(blk + 4, sm);
  for (size_t i = 0; i < 8; i += kN8) {
    const VF8 sc = hn::ConvertTo(df8, hn::PromoteTo(di32, hn::LoadU(du8, sm + i)));
    const VF8 mn = hn::ConvertTo(df8, hn::PromoteTo(di32, hn::LoadU(du8, sm + 8 + i)));
    const VF8 dsc = hn::Mul(d, sc);      // exact: 11 + 6 significant bits
    const VF8 mmin = hn::Mul(dmin, mn);  // exact likewise
    for (int t = 0; t < kT; ++t) {
      hn::Store(hn::Mul(dsc, hn::LoadU(df8, tx[t].scales + sb * 8 + i)), df8, block_scale[t] + i);
      macc[t] = hn::MulAdd(mmin, hn::LoadU(df8, tx[t].sums + sb * 8 + i), macc[t]);
    }
  }
}

// q4_K (kFifth false) and q5_K (kFifth true). Chunk c covers values 64c .. 64c+63: qs bytes
// 32c .. 32c+31 as 16-bit lanes give sub-block 2c's codes (low nibbles of the low/high byte:
// even/odd) and sub-block 2c+1's (high nibbles). q5_K's fifth bits: bit 2c (2c+1) of qh[l].
// Sub-blocks 2c and 2c+1 accumulate into separate registers (two FMA chains).
template <bool kFifth, int kT>
void RowK4(const uint8_t* row, int64_t n_sb, const TokenX* tx, float* out) {
  const DF df;
  const DF8 df8;
  const DU16 du;
  const DI16 di;
  constexpr size_t kBytes = kFifth ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr size_t kQs = kFifth ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);
  constexpr size_t kChunks = 16 / kN;
  VF acc[kT][2];
  VF8 macc[kT];
  for (int t = 0; t < kT; ++t) {
    acc[t][0] = acc[t][1] = hn::Zero(df);
    macc[t] = hn::Zero(df8);
  }
  alignas(32) float block_scale[kT][8];
  const VU16 k15 = hn::Set(du, 0x000F);
  const VU16 k16 = hn::Set(du, 0x0010);
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    const uint8_t* blk = row + sb * static_cast<int64_t>(kBytes);
    ScalesK4<kT>(blk, sb, tx, block_scale, macc);
    VU16 qh[kChunks];
    if constexpr (kFifth) {
      for (size_t k = 0; k < kChunks; ++k) {
        qh[k] = hn::LoadU(du, reinterpret_cast<const uint16_t*>(blk + offsetof(BlockQ5_K, qh)) +
                                  k * kN);
      }
    }
    for (int c = 0; c < 4; ++c) {
      VU16 v[kChunks];
      for (size_t k = 0; k < kChunks; ++k) {
        v[k] = hn::LoadU(du, reinterpret_cast<const uint16_t*>(blk + kQs + 32 * c) + k * kN);
      }
      for (int half = 0; half < 2; ++half) {  // sub-block 2c + half
        const int64_t xb = sb * 8 + 2 * c + half;
        VI32 s0[kT], s1[kT];
        for (int t = 0; t < kT; ++t) s0[t] = s1[t] = hn::Zero(DI32());
        for (size_t k = 0; k < kChunks; ++k) {
          VU16 even, odd;
          if (half == 0) {
            even = hn::And(v[k], k15);
            odd = hn::And(hn::ShiftRight<8>(v[k]), k15);
          } else {
            even = hn::And(hn::ShiftRight<4>(v[k]), k15);
            odd = hn::ShiftRight<12>(v[k]);
          }
          if constexpr (kFifth) {
            const VU16 h = hn::ShiftRightSame(qh[k], 2 * c + half);
            even = hn::Or(even, hn::And(hn::ShiftLeft<4>(h), k16));  // bit 0 (low byte)
            odd = hn::Or(odd, hn::And(hn::ShiftRight<4>(h), k16));   // bit 8 (high byte)
          }
          DotChunk<kT>(hn::BitCast(di, even), hn::BitCast(di, odd), tx, xb, k * kN, s0, s1);
        }
        for (int t = 0; t < kT; ++t) {
          acc[t][half] = ScaleAdd(s0[t], s1[t], block_scale[t][2 * c + half], acc[t][half]);
        }
      }
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[t][0], acc[t][1]))) -
             hn::GetLane(hn::SumOfLanes(df8, macc[t]));
  }
}

// q6_K plane k (0-3) of a half: values 32k .. 32k+31. Low 4 bits from ql bytes 32(k & 1) ..
// (nibble k >> 1), high 2 bits from bits 2k, 2k+1 of qh[l]; the odd (high) byte of a lane holds
// its bits 8 positions up.
template <int kK>
HWY_INLINE void DecodeQ6Plane(VU16 ql, VU16 qh, VI16* even, VI16* odd) {
  const DU16 du;
  const DI16 di;
  const VU16 k15 = hn::Set(du, 0x000F);
  const VU16 k48 = hn::Set(du, 0x0030);
  VU16 lo_e, lo_o, hi_e;
  if constexpr (kK < 2) {
    lo_e = hn::And(ql, k15);
    lo_o = hn::And(hn::ShiftRight<8>(ql), k15);
  } else {
    lo_e = hn::And(hn::ShiftRight<4>(ql), k15);
    lo_o = hn::ShiftRight<12>(ql);
  }
  // Bits 2k, 2k+1 to positions 4, 5.
  if constexpr (kK == 0) hi_e = hn::ShiftLeft<4>(qh);
  if constexpr (kK == 1) hi_e = hn::ShiftLeft<2>(qh);
  if constexpr (kK == 2) hi_e = qh;
  if constexpr (kK == 3) hi_e = hn::ShiftRight<2>(qh);
  const VU16 hi_o = hn::ShiftRight<4 + 2 * kK>(qh);
  const VI16 k32 = hn::Set(di, 32);
  *even = hn::Sub(hn::BitCast(di, hn::Or(lo_e, hn::And(hi_e, k48))), k32);
  *odd = hn::Sub(hn::BitCast(di, hn::Or(lo_o, hn::And(hi_o, k48))), k32);
}

// The int16 scale of each lane of plane kK, chunk o: logical lanes 0-7 (values 0-15 of the
// plane) use scales[2k], lanes 8-15 scales[2k+1]. `scales` holds the half's 8 scales as int16
// in every 128-bit block; a byte shuffle picks them.
template <int kK>
HWY_INLINE VI16 PlaneScales(VI16 scales, size_t o) {
  const hn::Repartition<uint8_t, DI16> d8;
  // Bytes 2s, 2s+1 for logical lane L, s = 2k + (L >= 8), s counted within the 128-bit block.
  alignas(32) static constexpr uint8_t kIdx[4][32] = {
      {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
      {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
      {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10,
       11, 10, 11, 10, 11},
      {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15, 14,
       15, 14, 15, 14, 15, 14, 15, 14, 15}};
  return hn::BitCast(DI16(), hn::TableLookupBytes(hn::BitCast(d8, scales),
                                                  hn::LoadU(d8, kIdx[kK] + 2 * o)));
}

// One q6_K plane for all tokens: codes times their 16-value sub-block scale (int16 products,
// |(q - 32) * scale| <= 32 * 128), madd with the x codes, one FMA with d * x scale.
template <int kK, int kT>
HWY_INLINE void PlaneQ6(const uint8_t* ql, const uint8_t* qh, VI16 scales, int64_t xb,
                        const TokenX* tx, const float (*block_scale)[8], int bi, VF (*acc)[2]) {
  const DU16 du;
  VI32 s0[kT], s1[kT];
  for (int t = 0; t < kT; ++t) s0[t] = s1[t] = hn::Zero(DI32());
  for (size_t o = 0; o < 16; o += kN) {
    const VU16 l = hn::LoadU(du, reinterpret_cast<const uint16_t*>(ql + 32 * (kK & 1)) + o);
    const VU16 h = hn::LoadU(du, reinterpret_cast<const uint16_t*>(qh) + o);
    VI16 even, odd;
    DecodeQ6Plane<kK>(l, h, &even, &odd);
    const VI16 s = PlaneScales<kK>(scales, o);
    DotChunk<kT>(hn::Mul(even, s), hn::Mul(odd, s), tx, xb, o, s0, s1);
  }
  for (int t = 0; t < kT; ++t) {
    acc[t][kK & 1] = ScaleAdd(s0[t], s1[t], block_scale[t][bi], acc[t][kK & 1]);
  }
}

template <int kT>
void RowQ6K(const uint8_t* row, int64_t n_sb, const TokenX* tx, float* out) {
  const DF df;
  const DF8 df8;
  const DI16 di;
  const hn::Full128<int16_t> di16x8;
  const hn::Full64<int8_t> di8x8;
  constexpr size_t kN8 = hn::MaxLanes(DF8());
  VF acc[kT][2];
  for (int t = 0; t < kT; ++t) acc[t][0] = acc[t][1] = hn::Zero(df);
  alignas(32) float block_scale[kT][8];
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    const uint8_t* blk = row + sb * static_cast<int64_t>(sizeof(BlockQ6_K));
    const VF8 d = hn::Set(df8, weights_simd::F16ToF32Scalar(blk + offsetof(BlockQ6_K, d)));
    for (size_t i = 0; i < 8; i += kN8) {
      for (int t = 0; t < kT; ++t) {
        hn::Store(hn::Mul(d, hn::LoadU(df8, tx[t].scales + sb * 8 + i)), df8, block_scale[t] + i);
      }
    }
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ6_K, scales));
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + offsetof(BlockQ6_K, ql) + 64 * h;
      const uint8_t* qh = blk + offsetof(BlockQ6_K, qh) + 32 * h;
      // The half's 8 scales as int16, repeated in every 128-bit block.
      alignas(16) int16_t sc16[8];
      hn::Store(hn::PromoteTo(di16x8, hn::LoadU(di8x8, scales + 8 * h)), di16x8, sc16);
      const VI16 sc = hn::LoadDup128(di, sc16);
      const int64_t xb = sb * 8 + 4 * h;
      PlaneQ6<0, kT>(ql, qh, sc, xb + 0, tx, block_scale, 4 * h + 0, acc);
      PlaneQ6<1, kT>(ql, qh, sc, xb + 1, tx, block_scale, 4 * h + 1, acc);
      PlaneQ6<2, kT>(ql, qh, sc, xb + 2, tx, block_scale, 4 * h + 2, acc);
      PlaneQ6<3, kT>(ql, qh, sc, xb + 3, tx, block_scale, 4 * h + 3, acc);
    }
  }
  for (int t = 0; t < kT; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[t][0], acc[t][1])));
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
        tx[t - t0] = {act.token_codes(t), act.token_scales(t), act.token_sums(t)};
      } else {
        tx[t - t0] = {nullptr, nullptr, nullptr};
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
