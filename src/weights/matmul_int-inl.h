// Integer matmul building blocks: vector types, the u8 x i8 / i16 pair products, and BlockDot
// (one 32-value block times every token of a tile). See matmul_simd.cc for the scheme.
// Per-target code included by matmul_simd.cc inside its foreach_target passes (Highway's -inl.h
// pattern: the guard toggles so each target's pass compiles it once).

#if defined(KVARN_WEIGHTS_MATMUL_INT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_WEIGHTS_MATMUL_INT_INL_H_
#undef KVARN_WEIGHTS_MATMUL_INT_INL_H_
#else
#define KVARN_WEIGHTS_MATMUL_INT_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "weights/activations.h"
#include "weights/f16_simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

#if HWY_TARGET != HWY_SCALAR

// Tokens whose outputs one pass over a weight row produces (each weight block is decoded once
// per tile). 4 keeps the accumulators and decoded codes within 16 vector registers.
constexpr int kTileTokens = 4;
// How far ahead of the current block the row kernels prefetch weight bytes: rows are streamed
// once per product, and the hardware prefetcher alone leaves the code loads waiting on memory.
constexpr size_t kPrefetchBytes = 1024;
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

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_WEIGHTS_MATMUL_INT_INL_H_
