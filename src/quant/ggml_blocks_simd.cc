// Highway SIMD row codecs for q8_0 / q4_0 / q4_1 / f16 / f32, dispatched at runtime to the best
// target. They reproduce the scalar reference (ggml_blocks.cc) byte for byte: the same fp32
// operations in the same order, the reductions only where order cannot matter (max/min), and
// scalar code for the few decisions that depend on which element came first.

// x * id + c must stay two roundings, as in the reference: GCC contracts it into an FMA on FMA
// targets (AVX2 and up) in C++ even under -std=c++20, which changes codes at rounding ties.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/dispatch.h"
#include "common/fp16.h"
#include "quant/ggml_blocks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/ggml_blocks_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// Internal linkage: other SIMD files define their own helpers in the same per-target namespaces.
namespace {

// At most 16 float lanes, so one vector never spans more than half a 32-value block (the nibble
// packing pairs element j with j + 16). Lanes are a power of two, so they divide 16.
using DF = hn::CappedTag<float, 16>;

// Highway 1.0.3 converts f32<->f16 exactly (round to nearest even) only with F16C; its
// emulation for older targets truncates. Without F16C the f16 rows stay scalar.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
#define KVARN_GGML_EXACT_F16 1
#else
#define KVARN_GGML_EXACT_F16 0
#endif

inline void StoreF16(uint8_t* p, float v) {
  const f16_t h = F32ToF16(v);
  std::memcpy(p, &h, sizeof(h));
}
inline float LoadF16(const uint8_t* p) {
  f16_t h;
  std::memcpy(&h, p, sizeof(h));
  return F16ToF32(h);
}

// roundf (half away from zero) of v as int32, exactly: truncate, then step away from zero when
// the dropped fraction is at least one half. v - trunc(v) is exact in fp32, so no new rounding.
// Highway's Round/NearestInt round half to even and would differ at .5.
template <class V>
HWY_INLINE auto RoundHalfAwayToInt(DF df, V v) {
  const hn::RebindToSigned<DF> di;
  const auto t = hn::ConvertTo(di, v);  // toward zero
  const auto frac = hn::Sub(v, hn::ConvertTo(df, t));
  const auto one = hn::Set(di, 1);
  const auto up = hn::RebindMask(di, hn::Ge(frac, hn::Set(df, 0.5f)));
  const auto down = hn::RebindMask(di, hn::Le(frac, hn::Set(df, -0.5f)));
  return hn::Sub(hn::Add(t, hn::IfThenElseZero(up, one)), hn::IfThenElseZero(down, one));
}

void QuantizeQ8_0Block(const float* HWY_RESTRICT x, uint8_t* HWY_RESTRICT blk) {
  const DF df;
  const hn::Rebind<int8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  auto vmax = hn::Zero(df);
  for (size_t j = 0; j < kQK8_0; j += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + j)));
  const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
  const float d = amax / 127.0f;
  const auto vid = hn::Set(df, ggml_detail::InverseScale(d));
  StoreF16(blk + offsetof(BlockQ8_0, d), d);
  int8_t* qs = reinterpret_cast<int8_t*>(blk + offsetof(BlockQ8_0, qs));
  for (size_t j = 0; j < kQK8_0; j += N) {
    const auto q = RoundHalfAwayToInt(df, hn::Mul(hn::LoadU(df, x + j), vid));
    hn::StoreU(hn::DemoteTo(d8, q), d8, qs + j);  // |q| <= 127: no saturation
  }
}

// Writes min(15, trunc(x * id + bias)) for elements j and j + 16 as one byte (low, high nibble),
// the reference's (int8_t) cast then MIN; callers guarantee the sum is >= 0 so truncation is
// floor and the int8 range is never left.
HWY_INLINE void PackNibbles(const float* HWY_RESTRICT x, float offset, float id, float bias,
                            uint8_t* HWY_RESTRICT qs) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> du8;
  const size_t N = hn::Lanes(df);
  const auto voff = hn::Set(df, offset);
  const auto vid = hn::Set(df, id);
  const auto vbias = hn::Set(df, bias);
  const auto k15 = hn::Set(di, 15);
  for (size_t j = 0; j < kQK4_0 / 2; j += N) {
    const auto lo = hn::LoadU(df, x + j);
    const auto hi = hn::LoadU(df, x + kQK4_0 / 2 + j);
    const auto q0 =
        hn::Min(hn::ConvertTo(di, hn::Add(hn::Mul(hn::Sub(lo, voff), vid), vbias)), k15);
    const auto q1 =
        hn::Min(hn::ConvertTo(di, hn::Add(hn::Mul(hn::Sub(hi, voff), vid), vbias)), k15);
    hn::StoreU(hn::DemoteTo(du8, hn::Or(q0, hn::ShiftLeft<4>(q1))), du8, qs + j);
  }
}

void QuantizeQ4_0Block(const float* HWY_RESTRICT x, uint8_t* HWY_RESTRICT blk) {
  const DF df;
  const size_t N = hn::Lanes(df);
  auto vmx = hn::LoadU(df, x);
  auto vmn = vmx;
  for (size_t j = N; j < kQK4_0; j += N) {
    const auto v = hn::LoadU(df, x + j);
    vmx = hn::Max(vmx, v);
    vmn = hn::Min(vmn, v);
  }
  const float mx = hn::GetLane(hn::MaxOfLanes(df, vmx));
  const float mn = hn::GetLane(hn::MinOfLanes(df, vmn));
  // The reference keeps the first element of largest magnitude. The largest magnitude is
  // max(mx, -mn); unless they tie, every element of that magnitude has the same sign and value.
  // On a tie (+a and -a both present, or an all-zero block) scan for the first one, as the
  // reference does; an all-zero block keeps +0.
  float max;
  if (mx > -mn) {
    max = mx;
  } else if (-mn > mx) {
    max = mn;
  } else {
    max = 0.0f;
    if (mx != 0.0f) {
      for (int j = 0; j < kQK4_0; ++j) {
        if (std::fabs(x[j]) == mx) {
          max = x[j];
          break;
        }
      }
    }
  }
  const float d = max / -8.0f;
  StoreF16(blk + offsetof(BlockQ4_0, d), d);
  // q4_0 has no offset: x - (+0) is x exactly (-0 included), so the shared packer is exact.
  PackNibbles(x, 0.0f, ggml_detail::InverseScale(d), 8.5f, blk + offsetof(BlockQ4_0, qs));
}

// The first element of x [32] that compares equal to v (the reference's min/max is the first
// element attaining it, which differs from v only in the sign of a zero).
inline float FirstEqual(const float* x, float v) {
  for (int j = 0; j < kQK4_1; ++j) {
    if (x[j] == v) return x[j];
  }
  return v;
}

void QuantizeQ4_1Block(const float* HWY_RESTRICT x, uint8_t* HWY_RESTRICT blk) {
  const DF df;
  const size_t N = hn::Lanes(df);
  auto vmx = hn::LoadU(df, x);
  auto vmn = vmx;
  for (size_t j = N; j < kQK4_1; j += N) {
    const auto v = hn::LoadU(df, x + j);
    vmx = hn::Max(vmx, v);
    vmn = hn::Min(vmn, v);
  }
  float max = hn::GetLane(hn::MaxOfLanes(df, vmx));
  float min = hn::GetLane(hn::MinOfLanes(df, vmn));
  // SIMD min/max may return either signed zero; the sign of a zero min is stored in m, and
  // max - min of an all-zero block would be -0 for (max, min) = (-0, +0).
  if (min == 0.0f) min = FirstEqual(x, min);
  if (max == 0.0f) max = FirstEqual(x, max);
  const float d = (max - min) / 15.0f;
  StoreF16(blk + offsetof(BlockQ4_1, d), d);
  StoreF16(blk + offsetof(BlockQ4_1, m), min);
  PackNibbles(x, min, ggml_detail::InverseScale(d), 0.5f, blk + offsetof(BlockQ4_1, qs));
}

void DequantizeQ8_0Block(const uint8_t* HWY_RESTRICT blk, float* HWY_RESTRICT out) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<int8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  const auto vd = hn::Set(df, LoadF16(blk + offsetof(BlockQ8_0, d)));
  const int8_t* qs = reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ8_0, qs));
  for (size_t j = 0; j < kQK8_0; j += N) {
    const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, qs + j)));
    hn::StoreU(hn::Mul(q, vd), df, out + j);
  }
}

// Decodes nibbles to (q - offset) * d + m; m is added only for q4_1 (has_min), after rounding
// the product, as the reference does.
HWY_INLINE void UnpackNibbles(const uint8_t* HWY_RESTRICT qs, int offset, float d, bool has_min,
                              float m, float* HWY_RESTRICT out) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> du8;
  const size_t N = hn::Lanes(df);
  const auto vd = hn::Set(df, d);
  const auto vm = hn::Set(df, m);
  const auto voff = hn::Set(di, offset);
  const auto mask = hn::Set(di, 0x0F);
  for (size_t j = 0; j < kQK4_0 / 2; j += N) {
    const auto b = hn::PromoteTo(di, hn::LoadU(du8, qs + j));
    auto lo = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::And(b, mask), voff)), vd);
    auto hi = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(b), voff)), vd);
    if (has_min) {
      lo = hn::Add(lo, vm);
      hi = hn::Add(hi, vm);
    }
    hn::StoreU(lo, df, out + j);
    hn::StoreU(hi, df, out + kQK4_0 / 2 + j);
  }
}

void F32ToF16Row(const float* HWY_RESTRICT x, int n, uint8_t* HWY_RESTRICT out) {
  int i = 0;
#if KVARN_GGML_EXACT_F16
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const int N = static_cast<int>(hn::Lanes(df));
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh,
               reinterpret_cast<hwy::float16_t*>(out + i * sizeof(f16_t)));
  }
#endif
  for (; i < n; ++i) StoreF16(out + i * sizeof(f16_t), x[i]);
}

void F16ToF32Row(const uint8_t* HWY_RESTRICT in, int n, float* HWY_RESTRICT out) {
  int i = 0;
#if KVARN_GGML_EXACT_F16
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const int N = static_cast<int>(hn::Lanes(df));
  for (; i + N <= n; i += N) {
    const auto h = hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(in + i * sizeof(f16_t)));
    hn::StoreU(hn::PromoteTo(df, h), df, out + i);
  }
#endif
  for (; i < n; ++i) out[i] = LoadF16(in + i * sizeof(f16_t));
}

void QuantizeRowSimd(CodecKind kind, const float* x, int n, uint8_t* out) {
  switch (kind) {
    case CodecKind::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case CodecKind::kF16:
      return F32ToF16Row(x, n, out);
    case CodecKind::kQ8_0:
      for (int b = 0; b < n / kQK8_0; ++b) {
        QuantizeQ8_0Block(x + b * kQK8_0, out + b * sizeof(BlockQ8_0));
      }
      return;
    case CodecKind::kQ4_0:
      for (int b = 0; b < n / kQK4_0; ++b) {
        QuantizeQ4_0Block(x + b * kQK4_0, out + b * sizeof(BlockQ4_0));
      }
      return;
    case CodecKind::kQ4_1:
      for (int b = 0; b < n / kQK4_1; ++b) {
        QuantizeQ4_1Block(x + b * kQK4_1, out + b * sizeof(BlockQ4_1));
      }
      return;
    case CodecKind::kTile:
      return;  // rejected by GgmlRowBytes in the caller
  }
}

void DequantizeRowSimd(CodecKind kind, const uint8_t* in, int n, float* out) {
  switch (kind) {
    case CodecKind::kF32:
      std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case CodecKind::kF16:
      return F16ToF32Row(in, n, out);
    case CodecKind::kQ8_0:
      for (int b = 0; b < n / kQK8_0; ++b) {
        DequantizeQ8_0Block(in + b * sizeof(BlockQ8_0), out + b * kQK8_0);
      }
      return;
    case CodecKind::kQ4_0:
      for (int b = 0; b < n / kQK4_0; ++b) {
        const uint8_t* blk = in + b * sizeof(BlockQ4_0);
        UnpackNibbles(blk + offsetof(BlockQ4_0, qs), 8, LoadF16(blk + offsetof(BlockQ4_0, d)),
                      false, 0.0f, out + b * kQK4_0);
      }
      return;
    case CodecKind::kQ4_1:
      for (int b = 0; b < n / kQK4_1; ++b) {
        const uint8_t* blk = in + b * sizeof(BlockQ4_1);
        UnpackNibbles(blk + offsetof(BlockQ4_1, qs), 0, LoadF16(blk + offsetof(BlockQ4_1, d)), true,
                      LoadF16(blk + offsetof(BlockQ4_1, m)), out + b * kQK4_1);
      }
      return;
    case CodecKind::kTile:
      return;
  }
}

#undef KVARN_GGML_EXACT_F16

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn {

HWY_EXPORT(QuantizeRowSimd);
HWY_EXPORT(DequantizeRowSimd);

void QuantizeRow(CodecKind kind, const float* x, int n, uint8_t* out) {
  if (ForceReference()) return QuantizeRowRef(kind, x, n, out);
  (void)GgmlRowBytes(kind, n);  // checks kind and n
  HWY_DYNAMIC_DISPATCH(QuantizeRowSimd)(kind, x, n, out);
}

void DequantizeRow(CodecKind kind, const uint8_t* in, int n, float* out) {
  if (ForceReference()) return DequantizeRowRef(kind, in, n, out);
  (void)GgmlRowBytes(kind, n);
  HWY_DYNAMIC_DISPATCH(DequantizeRowSimd)(kind, in, n, out);
}

}  // namespace kvarn
#endif  // HWY_ONCE
