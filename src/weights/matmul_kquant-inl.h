// Integer matmul rows of the k-quant formats: q4_K, q5_K, q6_K.
// Per-target code included by matmul_simd.cc inside its foreach_target passes (Highway's -inl.h
// pattern: the guard toggles so each target's pass compiles it once).

#if defined(KVARN_WEIGHTS_MATMUL_KQUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_WEIGHTS_MATMUL_KQUANT_INL_H_
#undef KVARN_WEIGHTS_MATMUL_KQUANT_INL_H_
#else
#define KVARN_WEIGHTS_MATMUL_KQUANT_INL_H_
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
    // Software prefetch a few super-blocks ahead: rows are streamed once per product, and the
    // hardware prefetcher alone leaves the qs loads waiting on memory.
    for (size_t off = 0; off < kBytes; off += 64) hwy::Prefetch(blk + kPrefetchBytes + off);
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
    for (size_t off = 0; off < sizeof(BlockQ6_K); off += 64)
      hwy::Prefetch(blk + kPrefetchBytes + off);
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

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_WEIGHTS_MATMUL_KQUANT_INL_H_
