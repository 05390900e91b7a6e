// Per-target SIMD helper shared by the weights kernels: exact f16 -> f32 conversion.
// Include after hwy/highway.h inside a foreach_target translation unit (Highway's -inl.h pattern:
// the guard toggles so each target's pass compiles it once).

#if defined(KVARN_WEIGHTS_F16_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_WEIGHTS_F16_SIMD_INL_H_
#undef KVARN_WEIGHTS_F16_SIMD_INL_H_
#else
#define KVARN_WEIGHTS_F16_SIMD_INL_H_
#endif

#include <cstdint>
#include <cstring>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace weights_simd {
namespace hn = hwy::HWY_NAMESPACE;

// f16 bit patterns held in the low 16 bits of 32-bit lanes -> f32. F16C (AVX2 and up)
// converts exactly; Highway 1.0.3's emulation for older targets gives the inf/NaN exponent a
// finite value, so those targets convert by bits: the same result as common/fp16.h F16ToF32 for
// every input.
template <class D, class VU32>
HWY_INLINE hn::Vec<D> F16BitsToF32(D df, VU32 bits) {
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, D> dh;
  const hn::Rebind<uint16_t, D> du16;
  const hn::RebindToSigned<D> di32;
  return hn::PromoteTo(df, hn::BitCast(dh, hn::DemoteTo(du16, hn::BitCast(di32, bits))));
#else
  const hn::RebindToUnsigned<D> du32;
  const hn::RebindToSigned<D> di32;
  const auto sign = hn::ShiftLeft<16>(hn::And(bits, hn::Set(du32, 0x8000u)));
  const auto exp = hn::And(hn::ShiftRight<10>(bits), hn::Set(du32, 0x1Fu));
  const auto mant = hn::And(bits, hn::Set(du32, 0x3FFu));
  const auto normal =
      hn::Or(hn::ShiftLeft<23>(hn::Add(exp, hn::Set(du32, 112u))), hn::ShiftLeft<13>(mant));
  const auto special = hn::Or(hn::Set(du32, 0x7F800000u), hn::ShiftLeft<13>(mant));
  // Subnormal (and zero): mant * 2^-24, exact in f32.
  const auto sub = hn::BitCast(du32, hn::Mul(hn::ConvertTo(df, hn::BitCast(di32, mant)),
                                             hn::Set(df, 5.9604644775390625e-8f)));
  auto mag = hn::IfThenElse(hn::Eq(exp, hn::Set(du32, 31u)), special, normal);
  mag = hn::IfThenElse(hn::Eq(exp, hn::Zero(du32)), sub, mag);
  return hn::BitCast(df, hn::Or(sign, mag));
#endif
}

// f16 bits p[0 .. Lanes(df)) -> f32, exactly (see F16BitsToF32).
template <class D>
HWY_INLINE hn::Vec<D> F16ToF32Vec(D df, const uint16_t* p) {
  const hn::Rebind<uint16_t, D> du16;
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(df, hn::BitCast(dh, hn::LoadU(du16, p)));
#else
  return F16BitsToF32(df, hn::PromoteTo(hn::RebindToUnsigned<D>(), hn::LoadU(du16, p)));
#endif
}

// One f16 at p (any alignment) -> f32, kept in vector registers (a call to the scalar
// F16ToF32 from SIMD code costs a vzeroupper round trip).
HWY_INLINE float F16ToF32Scalar(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return hn::GetLane(F16ToF32Vec(hn::CappedTag<float, 1>(), &h));
}

}  // namespace weights_simd
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_WEIGHTS_F16_SIMD_INL_H_
