// IEEE 754 binary16 <-> binary32 conversion, bit-exact, round to nearest even.
// This is the readable scalar definition; SIMD paths use Highway's DemoteTo/PromoteTo
// (F16C on x86), which implement the same rounding. Tests compare both.
#pragma once

#include <cstdint>
#include <cstring>

namespace kvarn {

using f16_t = uint16_t;  // raw binary16 bits

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float F16ToF32(f16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return BitsFloat(sign | 0x7F800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return BitsFloat(sign);  // signed zero
    // Subnormal: value = mant * 2^-24, exact in binary32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return (sign != 0u) ? -v : v;
  }
  return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline f16_t F32ToF16(float f) {
  const uint32_t u = FloatBits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or nan (keep nan quiet and non-zero)
    return static_cast<f16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<f16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below 2^-14: subnormal or zero in binary16
    // Adding 0.5 (2^-1) aligns the binary16 subnormal grid (step 2^-24) with the float's
    // last mantissa bits; the FPU's round-to-nearest-even does the rounding.
    const float r = BitsFloat(abs) + 0.5f;
    return static_cast<f16_t>(sign | (FloatBits(r) - 0x3F000000u));
  }
  // Normal: drop 13 mantissa bits with round to nearest, ties to even.
  const uint32_t odd = (abs >> 13) & 1u;
  const uint32_t rounded = abs + 0xFFFu + odd;
  return static_cast<f16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

// Rounds a float to the nearest binary16 value and back (what storing in fp16 does).
inline float RoundToF16(float f) { return F16ToF32(F32ToF16(f)); }

}  // namespace kvarn
