// Highway SIMD row dequantizer (DequantizeRow in dequant.h), dispatched at runtime.
//
// Each block's codes are unpacked with byte-vector masks and shifts into a small buffer in value
// order, then widened to int32, converted and scaled in f32 with the reference's operations:
// code * scale (+ min). Those products are exact (see dequant.h), so the floats are the
// reference's bit for bit.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "weights/dequant_kernel.h"
#include "weights/kquant_blocks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "weights/dequant_simd.cc"
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

using weights_simd::F16ToF32Vec;

using DU8 = hn::CappedTag<uint8_t, 16>;  // 16 code bytes per vector on every target here
using DI8 = hn::RebindToSigned<DU8>;
using DI32 = hn::CappedTag<int32_t, 8>;
using DF = hn::Rebind<float, DI32>;
using VU8 = hn::Vec<DU8>;
constexpr size_t kNF = hn::MaxLanes(DF());  // 4 or 8: divides 16
static_assert(hn::MaxLanes(DU8()) == 16, "kernels assume 128-bit or wider vectors");

template <typename Code>
HWY_INLINE hn::Vec<DF> CodesToF32(const Code* codes) {
  const DF df;
  const DI32 di32;
  return hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(hn::Rebind<Code, DI32>(), codes)));
}

// out[i] = float(codes[i]) * a, n a multiple of 16.
template <typename Code>
HWY_INLINE void EmitScaled(const Code* codes, int n, float a, float* out) {
  const DF df;
  for (int i = 0; i < n; i += static_cast<int>(kNF)) {
    hn::StoreU(hn::Mul(CodesToF32(codes + i), hn::Set(df, a)), df, out + i);
  }
}

// out[i] = float(codes[i]) * a + b.
HWY_INLINE void EmitAffine(const uint8_t* codes, int n, float a, float b, float* out) {
  const DF df;
  for (int i = 0; i < n; i += static_cast<int>(kNF)) {
    hn::StoreU(hn::Add(hn::Mul(CodesToF32(codes + i), hn::Set(df, a)), hn::Set(df, b)), df,
               out + i);
  }
}

// out[i] = float(codes[i]) * a - b (q4_K/q5_K: d1 * q - m1).
HWY_INLINE void EmitScaledMinusMin(const uint8_t* codes, int n, float a, float b, float* out) {
  const DF df;
  for (int i = 0; i < n; i += static_cast<int>(kNF)) {
    hn::StoreU(hn::Sub(hn::Mul(CodesToF32(codes + i), hn::Set(df, a)), hn::Set(df, b)), df,
               out + i);
  }
}

float LoadF16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

// Codes of a 32-value nibble block in value order: low nibbles are values 0-15, high 16-31.
HWY_INLINE void Nibbles32(const uint8_t* qs, uint8_t* codes) {
  const DU8 du;
  const VU8 v = hn::LoadU(du, qs);
  hn::StoreU(hn::And(v, hn::Set(du, 0x0F)), du, codes);
  hn::StoreU(hn::ShiftRight<4>(v), du, codes + 16);
}

// Adds 16 to codes[j] where bit j of the little-endian uint32 at qh is set (q5_0, q5_1).
HWY_INLINE void FifthBits32(const uint8_t* qh, uint8_t* codes) {
  const DU8 du;
  alignas(16) uint8_t bytes[16] = {qh[0], qh[1], qh[2], qh[3]};
  static constexpr uint8_t kLowIdx[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const VU8 b = hn::LoadU(du, bytes);
  const VU8 bit = hn::LoadU(du, kBit);
  const VU8 k16 = hn::Set(du, 16);
  for (int half = 0; half < 2; ++half) {  // values 0-15 use bytes 0-1, 16-31 bytes 2-3
    const VU8 idx = hn::Add(hn::LoadU(du, kLowIdx), hn::Set(du, static_cast<uint8_t>(2 * half)));
    const VU8 sel = hn::TableLookupBytes(b, idx);
    const VU8 hi = hn::IfThenElseZero(hn::TestBit(sel, bit), k16);
    hn::StoreU(hn::Or(hn::LoadU(du, codes + 16 * half), hi), du, codes + 16 * half);
  }
}

// Subtracts `offset` from 32 unsigned codes, giving signed codes.
HWY_INLINE void Center32(const uint8_t* codes, uint8_t offset, int8_t* out) {
  const DU8 du;
  const DI8 di;
  for (int i = 0; i < 32; i += 16) {
    hn::StoreU(hn::BitCast(di, hn::Sub(hn::LoadU(du, codes + i), hn::Set(du, offset))), di,
               out + i);
  }
}

void DequantQ8_0(const uint8_t* data, int64_t nb, float* out) {
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ8_0));
    const int8_t* qs = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ8_0, qs));
    EmitScaled(qs, 32, LoadF16(blk + offsetof(BlockQ8_0, d)), out + 32 * i);
  }
}

void DequantQ4_0(const uint8_t* data, int64_t nb, float* out) {
  alignas(32) uint8_t codes[32];
  alignas(32) int8_t centered[32];
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ4_0));
    Nibbles32(blk + offsetof(BlockQ4_0, qs), codes);
    Center32(codes, 8, centered);
    EmitScaled(centered, 32, LoadF16(blk + offsetof(BlockQ4_0, d)), out + 32 * i);
  }
}

void DequantQ4_1(const uint8_t* data, int64_t nb, float* out) {
  alignas(32) uint8_t codes[32];
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ4_1));
    Nibbles32(blk + offsetof(BlockQ4_1, qs), codes);
    EmitAffine(codes, 32, LoadF16(blk + offsetof(BlockQ4_1, d)),
               LoadF16(blk + offsetof(BlockQ4_1, m)), out + 32 * i);
  }
}

void DequantQ5_0(const uint8_t* data, int64_t nb, float* out) {
  alignas(32) uint8_t codes[32];
  alignas(32) int8_t centered[32];
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ5_0));
    Nibbles32(blk + offsetof(BlockQ5_0, qs), codes);
    FifthBits32(blk + offsetof(BlockQ5_0, qh), codes);
    Center32(codes, 16, centered);
    EmitScaled(centered, 32, LoadF16(blk + offsetof(BlockQ5_0, d)), out + 32 * i);
  }
}

void DequantQ5_1(const uint8_t* data, int64_t nb, float* out) {
  alignas(32) uint8_t codes[32];
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ5_1));
    Nibbles32(blk + offsetof(BlockQ5_1, qs), codes);
    FifthBits32(blk + offsetof(BlockQ5_1, qh), codes);
    EmitAffine(codes, 32, LoadF16(blk + offsetof(BlockQ5_1, d)),
               LoadF16(blk + offsetof(BlockQ5_1, m)), out + 32 * i);
  }
}

// q4_K (kFifth false) and q5_K: per 64 values, low nibbles of 32 qs bytes are sub-block 2c and
// high nibbles 2c+1; q5_K adds 16 where bit 2c (2c+1) of qh[l] is set.
template <bool kFifth>
void DequantK4(const uint8_t* data, int64_t nsb, float* out) {
  const DU8 du;
  constexpr size_t kBytes = kFifth ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr size_t kQs = kFifth ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);
  alignas(32) uint8_t codes[64];
  const VU8 k15 = hn::Set(du, 0x0F);
  const VU8 k1 = hn::Set(du, 1);
  for (int64_t i = 0; i < nsb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(kBytes);
    const float d = LoadF16(blk);
    const float dmin = LoadF16(blk + 2);
    const uint8_t* scales = blk + 4;
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; l += 16) {
        const VU8 v = hn::LoadU(du, blk + kQs + 32 * c + l);
        VU8 lo = hn::And(v, k15);
        VU8 hi = hn::ShiftRight<4>(v);
        if constexpr (kFifth) {
          const VU8 h = hn::LoadU(du, blk + offsetof(BlockQ5_K, qh) + l);
          lo = hn::Or(lo, hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, 2 * c), k1)));
          hi = hn::Or(hi, hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, 2 * c + 1), k1)));
        }
        hn::StoreU(lo, du, codes + l);
        hn::StoreU(hi, du, codes + 32 + l);
      }
      uint8_t sc, mn;
      GetScaleMinK4(2 * c, scales, &sc, &mn);
      EmitScaledMinusMin(codes, 32, d * sc, dmin * mn, out + 256 * i + 64 * c);
      GetScaleMinK4(2 * c + 1, scales, &sc, &mn);
      EmitScaledMinusMin(codes + 32, 32, d * sc, dmin * mn, out + 256 * i + 64 * c + 32);
    }
  }
}

void DequantQ6_K(const uint8_t* data, int64_t nsb, float* out) {
  const DU8 du;
  const DI8 di;
  alignas(32) int8_t codes[128];
  const VU8 k15 = hn::Set(du, 0x0F);
  const VU8 k3 = hn::Set(du, 3);
  const VU8 k32 = hn::Set(du, 32);
  for (int64_t i = 0; i < nsb; ++i) {
    const uint8_t* blk = data + i * static_cast<int64_t>(sizeof(BlockQ6_K));
    const float d = LoadF16(blk + offsetof(BlockQ6_K, d));
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ6_K, scales));
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + offsetof(BlockQ6_K, ql) + 64 * h;
      const uint8_t* qh = blk + offsetof(BlockQ6_K, qh) + 32 * h;
      for (int l = 0; l < 32; l += 16) {
        const VU8 a = hn::LoadU(du, ql + l);
        const VU8 b = hn::LoadU(du, ql + 32 + l);
        const VU8 hb = hn::LoadU(du, qh + l);
        const VU8 q1 = hn::Or(hn::And(a, k15), hn::ShiftLeft<4>(hn::And(hb, k3)));
        const VU8 q2 =
            hn::Or(hn::And(b, k15), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<2>(hb), k3)));
        const VU8 q3 =
            hn::Or(hn::ShiftRight<4>(a), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<4>(hb), k3)));
        const VU8 q4 = hn::Or(hn::ShiftRight<4>(b), hn::ShiftLeft<4>(hn::ShiftRight<6>(hb)));
        hn::StoreU(hn::BitCast(di, hn::Sub(q1, k32)), di, codes + l);
        hn::StoreU(hn::BitCast(di, hn::Sub(q2, k32)), di, codes + 32 + l);
        hn::StoreU(hn::BitCast(di, hn::Sub(q3, k32)), di, codes + 64 + l);
        hn::StoreU(hn::BitCast(di, hn::Sub(q4, k32)), di, codes + 96 + l);
      }
      // Values 16s .. 16s+15 of the half use scale 8h + s; (d * scale) first, as the reference.
      for (int s = 0; s < 8; ++s) {
        EmitScaled(codes + 16 * s, 16, d * scales[8 * h + s], out + 256 * i + 128 * h + 16 * s);
      }
    }
  }
}

void DequantF16(const uint8_t* data, int64_t n, float* out) {
  const DF df;
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kNF) <= n; i += static_cast<int64_t>(kNF)) {
    hn::StoreU(F16ToF32Vec(df, reinterpret_cast<const uint16_t*>(data) + i), df, out + i);
  }
  for (; i < n; ++i) out[i] = LoadF16(data + 2 * i);
}

void DequantBF16(const uint8_t* data, int64_t n, float* out) {
  const DF df;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::RebindToUnsigned<DF> du32;
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kNF) <= n; i += static_cast<int64_t>(kNF)) {
    const auto bits =
        hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(data) + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(bits)), df, out + i);
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, data + 2 * i, 2);
    out[i] = BitsFloat(static_cast<uint32_t>(h) << 16);
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

void DequantizeRowKernel(GgmlType type, const uint8_t* data, int64_t n, float* out) {
#if HWY_TARGET == HWY_SCALAR
  DequantizeRowScalarFallback(type, data, n, out);
#else
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, data, static_cast<size_t>(n) * 4);
      break;
    case GgmlType::kF16:
      DequantF16(data, n, out);
      break;
    case GgmlType::kBF16:
      DequantBF16(data, n, out);
      break;
    case GgmlType::kQ8_0:
      DequantQ8_0(data, n / 32, out);
      break;
    case GgmlType::kQ4_0:
      DequantQ4_0(data, n / 32, out);
      break;
    case GgmlType::kQ4_1:
      DequantQ4_1(data, n / 32, out);
      break;
    case GgmlType::kQ5_0:
      DequantQ5_0(data, n / 32, out);
      break;
    case GgmlType::kQ5_1:
      DequantQ5_1(data, n / 32, out);
      break;
    case GgmlType::kQ4_K:
      DequantK4<false>(data, n / kQK_K, out);
      break;
    case GgmlType::kQ5_K:
      DequantK4<true>(data, n / kQK_K, out);
      break;
    case GgmlType::kQ6_K:
      DequantQ6_K(data, n / kQK_K, out);
      break;
  }
#endif
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn {
HWY_EXPORT(DequantizeRowKernel);

void DequantizeRowSimd(GgmlType type, const uint8_t* data, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeRowKernel)(type, data, n, out);
}
}  // namespace kvarn
#endif
