// Integer dot-product kernels of one tile record in the kernel layout (quant/kernel_layout.h),
// per Highway target (int_path.h gives the arithmetic they serve):
//   ScoreTile  S[r][t] = lambda * tau[t] * (s_q[r] * sum_d q8[r][d] * codeK[d][t] + c0[r])
//   ValueTile  out[r][d] = sum_t p8[r][t] * codeV[t][d]                      (int32)
// A 32-bit lane multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to its
// int32 sum: AVX-512 VNNI vpdpbusd (AVX3_DL); vpmaddubsw + vpmaddwd on AVX3, AVX2, SSE4 and
// SSSE3 (no saturation: |products| <= 2 * 255 * 15 < 32767 for 2- and 4-bit codes); a per-lane
// loop on the portable targets. Integer sums are exact, so every target gives the same int32
// values as the scalar reference; only the float epilogue rounds.
//
// The kernels handle 2- and 4-bit codes; 8-bit codes (no preset uses them) go through the
// scalar path of attention_simd.cc.

#if defined(KVARN_ATTENTION_INT_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_ATTENTION_INT_KERNELS_INL_H_
#undef KVARN_ATTENTION_INT_KERNELS_INL_H_
#else
#define KVARN_ATTENTION_INT_KERNELS_INL_H_
#endif

#include <cmath>
#include <cstring>
#include <utility>

#include "attention/int_path.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
// Highway 1.0.3's AVX3_DL target string lacks avx512vnni; the pragma adds it for this target.
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
namespace kvarn::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DI = hn::ScalableTag<int32_t>;
using DFI = hn::ScalableTag<float>;
using VI = hn::Vec<DI>;

// Vector registers of the target: the register tiles below are sized to fit them.
#if HWY_TARGET <= HWY_AVX3
constexpr int kIntRegs = 32;
#else
constexpr int kIntRegs = 16;
#endif

// The vpmaddubsw targets (AVX3 without VNNI, AVX2, SSE4, SSSE3) add products in 16-bit
// lanes first: PairProducts gives, per 16-bit lane, a[2i] b[2i] + a[2i+1] b[2i+1] (unsigned x
// signed bytes), PairSums adds such vectors without widening, and WidenPairs adds the 16-bit
// sums pairwise into the int32 accumulator. Exact as long as no 16-bit sum can leave
// [-32768, 32767]: the callers bound how many products they add (MaxPairTerms). VNNI and the
// portable targets accumulate in int32 directly (DotBytes).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || \
    HWY_TARGET == HWY_SSSE3
constexpr bool kPairSums = true;
#else
constexpr bool kPairSums = false;
#endif

HWY_INLINE VI PairProducts(VI a, VI b) {
#if HWY_TARGET == HWY_AVX3
  return VI{_mm512_maddubs_epi16(a.raw, b.raw)};
#elif HWY_TARGET == HWY_AVX2
  return VI{_mm256_maddubs_epi16(a.raw, b.raw)};
#elif HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
  return VI{_mm_maddubs_epi16(a.raw, b.raw)};
#else
  (void)b;
  return a;  // unused: kPairSums is false here
#endif
}
HWY_INLINE VI PairSums(VI x, VI y) {
#if HWY_TARGET == HWY_SCALAR
  (void)y;
  return x;  // unused: kPairSums is false here (one-lane vectors have no 16-bit halves)
#else
  const DI di;
  const hn::Repartition<int16_t, DI> d16;
  return hn::BitCast(di, hn::Add(hn::BitCast(d16, x), hn::BitCast(d16, y)));
#endif
}
HWY_INLINE VI WidenPairs(VI acc, VI x) {
#if HWY_TARGET == HWY_AVX3
  return VI{_mm512_add_epi32(acc.raw, _mm512_madd_epi16(x.raw, _mm512_set1_epi16(1)))};
#elif HWY_TARGET == HWY_AVX2
  return VI{_mm256_add_epi32(acc.raw, _mm256_madd_epi16(x.raw, _mm256_set1_epi16(1)))};
#elif HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
  return VI{_mm_add_epi32(acc.raw, _mm_madd_epi16(x.raw, _mm_set1_epi16(1)))};
#else
  (void)x;
  return acc;
#endif
}
// How many PairProducts of unsigned bytes <= max_u and signed bytes of magnitude <= max_s can
// be summed in 16 bits: each is at most 2 * max_u * max_s in magnitude.
constexpr int MaxPairTerms(int max_u, int max_s) { return 32767 / (2 * max_u * max_s); }

// acc + per-lane sum of 4 products of the unsigned bytes of a and the signed bytes of b.
HWY_INLINE VI DotBytes(VI acc, VI a, VI b) {
#if HWY_TARGET == HWY_AVX3_DL
  // In-place accumulation spelled out: with the intrinsic, GCC 12 copies accumulators between
  // registers on every loop iteration of the register-blocked kernels.
  __m512i r = acc.raw;
  asm("vpdpbusd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
  return VI{r};
#else
  if constexpr (kPairSums) return WidenPairs(acc, PairProducts(a, b));
  const DI di;
  constexpr size_t kMax = hn::MaxLanes(DI());
  alignas(64) int32_t s[kMax], x[kMax], y[kMax];
  hn::Store(acc, di, s);
  hn::Store(a, di, x);
  hn::Store(b, di, y);
  for (size_t i = 0; i < hn::Lanes(di); ++i) {
    uint8_t ub[4];
    int8_t sb[4];
    std::memcpy(ub, &x[i], 4);
    std::memcpy(sb, &y[i], 4);
    for (int j = 0; j < 4; ++j) s[i] += int32_t(ub[j]) * int32_t(sb[j]);
  }
  return hn::Load(di, s);
#endif
}

// The byte mask of one b-bit field in every byte of a lane.
template <int kBits>
HWY_INLINE VI FieldMask(DI di) {
  return hn::Set(di, kBits == 4 ? 0x0F0F0F0F : 0x03030303);
}

HWY_INLINE int32_t Word(const void* p) {
  int32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// With VNNI (no intermediate 16-bit sums) a code field can be used in place, unshifted: the
// product of (code << s) is the product of code times 2^s, so each field has its own
// accumulator, shifted back (exactly: it is a multiple of 2^s) when the tile is done. The
// 16-bit pair sums of vpmaddubsw would saturate on the unshifted high fields.
#if HWY_TARGET == HWY_AVX3_DL
constexpr bool kInPlaceFields = true;
#else
constexpr bool kInPlaceFields = false;
#endif

// Register tile of ScoreTile: P query parts x R rows x TG token groups x per fields x B vectors
// of accumulators (independent chains, so that the multiply-add latency is hidden), TG x B
// streamed code vectors, TG x B unpacked ones, per field masks, one broadcast query word.
// Accumulator vectors per (part, row, token group, vector): one per code field (VNNI, in-place
// fields; portable), or an int32 and a 16-bit one (pair sums).
template <int per>
constexpr int ScoreAccs() {
  return kPairSums ? 2 : per;
}

// Vectors of a block a ScoreGroups call holds at once (the pair path takes them one by one)
// and the registers besides the accumulators: streamed and unpacked codes, field masks, the
// broadcast query word and a constant.
template <int B>
constexpr int ScoreVecs() {
  return kPairSums ? 1 : B;
}
template <int B>
constexpr int ScoreFixedRegs(int per, int TG) {
  return 2 * TG * ScoreVecs<B>() + (kPairSums ? 1 : per) + 2;
}

template <int B, int per, int TG, int P>
constexpr int ScoreRows() {
  constexpr int r =
      (kIntRegs - ScoreFixedRegs<B>(per, TG)) / (P * TG * ScoreAccs<per>() * ScoreVecs<B>());
  return r > 8 ? 8 : (r < 1 ? 1 : r);
}

// Token groups per pass for R rows: as many as keep the accumulators in registers, up to 4.
template <int R, int B, int per, int P>
constexpr int ScoreTokenGroups() {
  for (int tg = 4; tg > 1; --tg)
    if (P * R * tg * ScoreAccs<per>() * ScoreVecs<B>() + ScoreFixedRegs<B>(per, tg) <= kIntRegs)
      return tg;
  return 1;
}

// Scores of rows [0, R) of kTG token groups (16 tokens each) starting at group tg0. kc: the
// tile's K code field (kernel layout); q8 [P][R][D] (part stride ldq, row stride D); tau [G]
// the per-token K scale as floats; S [R][G] with row stride ldS; mx [R] running maxima.
// Plain loops with compile-time bounds (no lambdas) so the compiler keeps the accumulator
// arrays in registers.
template <int R, int kBits, int kTG, int P>
HWY_INLINE void ScoreGroups(const uint8_t* HWY_RESTRICT kc, size_t D, size_t tg0,
                            const int8_t* HWY_RESTRICT q8, size_t ldq, const float* sq,
                            const float* c0, const float* tau, hn::Vec<DFI> lam,
                            float* HWY_RESTRICT S, size_t ldS, hn::Vec<DFI>* mx) {
  const DI di;
  const DFI df;
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = int(16 / N);  // vectors per 64-byte block
  constexpr int per = 8 / kBits, C = 4 * per;
  const size_t nc = D / C;
  VI fmask[per];  // the field masks, in place (VNNI) or after the shift
  for (int k = 0; k < per; ++k)
    fmask[k] =
        hn::Set(di, (kBits == 4 ? 0x0F0F0F0F : 0x03030303) << (kInPlaceFields ? kBits * k : 0));
  VI acc[P][R][kTG][per][B];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kTG; ++j)
        for (int k = 0; k < per; ++k)
          for (int b = 0; b < B; ++b) acc[p][r][j][k][b] = hn::Zero(di);
  const uint8_t* blk = kc + tg0 * nc * 64;
  for (size_t cg = 0; cg < nc; ++cg, blk += 64) {
    VI v[kTG][B];
    for (int j = 0; j < kTG; ++j)
      for (int b = 0; b < B; ++b)
        v[j][b] = hn::LoadU(
            di, reinterpret_cast<const int32_t*>(blk + size_t(j) * nc * 64) + size_t(b) * N);
    for (int k = 0; k < per; ++k) {
      VI c[kTG][B];
      for (int j = 0; j < kTG; ++j)
        for (int b = 0; b < B; ++b)
          c[j][b] = kInPlaceFields ? hn::And(v[j][b], fmask[k])
                                   : hn::And(hn::ShiftRightSame(v[j][b], kBits * k), fmask[k]);
      const size_t word = 4 * (cg * per + size_t(k));
      for (int p = 0; p < P; ++p) {
        for (int r = 0; r < R; ++r) {
          const VI qw = hn::Set(di, Word(q8 + size_t(p) * ldq + size_t(r) * D + word));
          for (int j = 0; j < kTG; ++j)
            for (int b = 0; b < B; ++b)
              acc[p][r][j][k][b] = DotBytes(acc[p][r][j][k][b], c[j][b], qw);
        }
      }
    }
  }
  for (int j = 0; j < kTG; ++j) {
    for (int b = 0; b < B; ++b) {
      const size_t t0 = (tg0 + size_t(j)) * 16 + size_t(b) * N;
      const auto tl = hn::Mul(hn::LoadU(df, tau + t0), lam);
      for (int r = 0; r < R; ++r) {
        hn::Vec<DFI> f;
        for (int p = 0; p < P; ++p) {
          VI dot = acc[p][r][j][0][b];
          for (int k = 1; k < per; ++k)
            dot = hn::Add(dot, kInPlaceFields ? hn::ShiftRightSame(acc[p][r][j][k][b], kBits * k)
                                              : acc[p][r][j][k][b]);
          // Query parts (int_path.h): hi + lo / 254.
          f = p == 0 ? hn::ConvertTo(df, dot)
                     : hn::MulAdd(hn::ConvertTo(df, dot), hn::Set(df, 1.0f / kQueryLoLevels), f);
        }
        const auto s = hn::Mul(hn::MulAdd(f, hn::Set(df, sq[r]), hn::Set(df, c0[r])), tl);
        mx[r] = hn::Max(mx[r], s);
        hn::StoreU(s, df, S + size_t(r) * ldS + t0);
      }
    }
  }
}

// ScoreGroups for the vpmaddubsw targets: products of up to kChunk code fields summed in
// 16-bit lanes before each widening (4-bit codes: 8 products of at most 2 * 15 * 127; 2-bit:
// 43 of 2 * 3 * 127), so a 64-multiply-add step costs about one instruction instead of three.
// Each call handles vector boff of every 64-byte block (tokens 16 tg + N boff + [0, N)): on
// AVX2 a block is two vectors, and taking them one at a time halves the accumulators per row,
// so more rows share each code load and unpack.
template <int R, int kBits, int kTG, int P>
HWY_INLINE void ScoreGroupsPairs(const uint8_t* HWY_RESTRICT kc, size_t D, size_t tg0, size_t boff,
                                 const int8_t* HWY_RESTRICT q8, size_t ldq, const float* sq,
                                 const float* c0, const float* tau, hn::Vec<DFI> lam,
                                 float* HWY_RESTRICT S, size_t ldS, hn::Vec<DFI>* mx) {
  const DI di;
  const DFI df;
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = 1;
  constexpr int per = 8 / kBits, C = 4 * per;
  constexpr int kTerms = MaxPairTerms((1 << kBits) - 1, 127);
  constexpr size_t kChunk = size_t(kTerms / per > 0 ? kTerms / per : 1);  // code groups per sum
  const size_t nc = D / C;
  const VI mask = FieldMask<kBits>(di);
  VI acc[P][R][kTG][B];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kTG; ++j)
        for (int b = 0; b < B; ++b) acc[p][r][j][b] = hn::Zero(di);
  for (size_t cg0 = 0; cg0 < nc; cg0 += kChunk) {
    VI acc16[P][R][kTG][B];
    for (int p = 0; p < P; ++p)
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTG; ++j)
          for (int b = 0; b < B; ++b) acc16[p][r][j][b] = hn::Zero(di);
    const size_t cg1 = std::min(nc, cg0 + kChunk);
    for (size_t cg = cg0; cg < cg1; ++cg) {
      const uint8_t* blk = kc + (tg0 * nc + cg) * 64;
      VI v[kTG][B];
      for (int j = 0; j < kTG; ++j)
        for (int b = 0; b < B; ++b)
          v[j][b] = hn::LoadU(di, reinterpret_cast<const int32_t*>(blk + size_t(j) * nc * 64) +
                                      (size_t(b) + boff) * N);
      for (int k = 0; k < per; ++k) {
        VI c[kTG][B];
        for (int j = 0; j < kTG; ++j)
          for (int b = 0; b < B; ++b)
            c[j][b] = hn::And(hn::ShiftRightSame(v[j][b], kBits * k), mask);
        const size_t word = 4 * (cg * per + size_t(k));
        for (int p = 0; p < P; ++p) {
          for (int r = 0; r < R; ++r) {
            const VI qw = hn::Set(di, Word(q8 + size_t(p) * ldq + size_t(r) * D + word));
            for (int j = 0; j < kTG; ++j)
              for (int b = 0; b < B; ++b)
                acc16[p][r][j][b] = PairSums(acc16[p][r][j][b], PairProducts(c[j][b], qw));
          }
        }
      }
    }
    for (int p = 0; p < P; ++p)
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTG; ++j)
          for (int b = 0; b < B; ++b)
            acc[p][r][j][b] = WidenPairs(acc[p][r][j][b], acc16[p][r][j][b]);
  }
  for (int j = 0; j < kTG; ++j) {
    for (int b = 0; b < B; ++b) {
      const size_t t0 = (tg0 + size_t(j)) * 16 + (size_t(b) + boff) * N;
      const auto tl = hn::Mul(hn::LoadU(df, tau + t0), lam);
      for (int r = 0; r < R; ++r) {
        hn::Vec<DFI> f = hn::ConvertTo(df, acc[0][r][j][b]);
        if constexpr (P == 2)
          f = hn::MulAdd(hn::ConvertTo(df, acc[1][r][j][b]), hn::Set(df, 1.0f / kQueryLoLevels), f);
        const auto s = hn::Mul(hn::MulAdd(f, hn::Set(df, sq[r]), hn::Set(df, c0[r])), tl);
        mx[r] = hn::Max(mx[r], s);
        hn::StoreU(s, df, S + size_t(r) * ldS + t0);
      }
    }
  }
}

// Scores of rows [0, R) of one tile; smax [R] gets each row's largest score.
template <int R, int kBits, int P>
void ScoreTileT(const uint8_t* HWY_RESTRICT kc, size_t D, size_t G, const int8_t* HWY_RESTRICT q8,
                size_t ldq, const float* sq, const float* c0, const float* tau, float lambda,
                float* HWY_RESTRICT S, size_t ldS, float* HWY_RESTRICT smax) {
  const DFI df;
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = int(16 / N);
  constexpr int kTG = ScoreTokenGroups<R, B, 8 / kBits, P>();
  const auto lam = hn::Set(df, lambda);
  hn::Vec<DFI> mx[R];
  for (int r = 0; r < R; ++r) mx[r] = hn::Set(df, -INFINITY);
  const size_t n_tg = G / 16;
  size_t tg = 0;
  if constexpr (kPairSums) {
    for (; tg + kTG <= n_tg; tg += kTG)
      for (size_t b = 0; b < size_t(B); ++b)
        ScoreGroupsPairs<R, kBits, kTG, P>(kc, D, tg, b, q8, ldq, sq, c0, tau, lam, S, ldS, mx);
    for (; tg < n_tg; ++tg)
      for (size_t b = 0; b < size_t(B); ++b)
        ScoreGroupsPairs<R, kBits, 1, P>(kc, D, tg, b, q8, ldq, sq, c0, tau, lam, S, ldS, mx);
  } else {
    for (; tg + kTG <= n_tg; tg += kTG)
      ScoreGroups<R, kBits, kTG, P>(kc, D, tg, q8, ldq, sq, c0, tau, lam, S, ldS, mx);
    for (; tg < n_tg; ++tg)
      ScoreGroups<R, kBits, 1, P>(kc, D, tg, q8, ldq, sq, c0, tau, lam, S, ldS, mx);
  }
  for (int r = 0; r < R; ++r) smax[r] = hn::GetLane(hn::MaxOfLanes(df, mx[r]));
}

// Register tile of ValueTile: P parts x R rows x CG channel groups (16 channels each) x B
// vectors of accumulators, CG x B streamed code vectors, one unpacked vector, P x R broadcast
// weight words.
template <int B, int CG, int P>
constexpr int ValueRows() {
  constexpr int r = (kIntRegs - CG * B - 1) / (P * CG * B + P);
  return r > 8 ? 8 : (r < 1 ? 1 : r);
}

// out[p][r][16*cg0 + j] (j < 16*CG) = sum_{t < G} w_p[r][t] * codeV[t][16*cg0 + j] for rows
// [0, R) and the P weight parts (int_path.h: one uint8 part, or two for 4-bit values).
// vc: the tile's V code field (kernel layout); w_p = p8 + p * ldpart, [R][G] with row stride
// ldp; out + p * ldout, [R][D].
template <int R, int CG, int kBits, int P>
void ValueTileT(const uint8_t* HWY_RESTRICT vc, size_t D, size_t G, const uint8_t* HWY_RESTRICT p8,
                size_t ldp, size_t ldpart, size_t cg0, int32_t* HWY_RESTRICT out, size_t ldout) {
  const DI di;
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = int(16 / N);
  constexpr int per = 8 / kBits, T = 4 * per;
  const size_t ncg = D / 16;
  const VI mask = FieldMask<kBits>(di);
  VI acc[P][R][CG][B];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < CG; ++c)
        for (int b = 0; b < B; ++b) acc[p][r][c][b] = hn::Zero(di);
  for (size_t tg = 0; tg < G / T; ++tg) {
    const uint8_t* blk = vc + (tg * ncg + cg0) * 64;
    VI v[CG][B];
    for (int c = 0; c < CG; ++c)
      for (int b = 0; b < B; ++b)
        v[c][b] = hn::LoadU(di, reinterpret_cast<const int32_t*>(blk + 64 * c) + size_t(b) * N);
    for (int k = 0; k < per; ++k) {
      VI pw[P][R];
      for (int p = 0; p < P; ++p)
        for (int r = 0; r < R; ++r)
          pw[p][r] =
              hn::Set(di, Word(p8 + size_t(p) * ldpart + size_t(r) * ldp + tg * T + 4 * size_t(k)));
      for (int c = 0; c < CG; ++c) {
        for (int b = 0; b < B; ++b) {
          const VI u = hn::And(hn::ShiftRightSame(v[c][b], kBits * k), mask);
          for (int p = 0; p < P; ++p)
            for (int r = 0; r < R; ++r) acc[p][r][c][b] = DotBytes(acc[p][r][c][b], pw[p][r], u);
        }
      }
    }
  }
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < CG; ++c)
        for (int b = 0; b < B; ++b)
          hn::StoreU(
              acc[p][r][c][b], di,
              out + size_t(p) * ldout + size_t(r) * D + (cg0 + size_t(c)) * 16 + size_t(b) * N);
}

// ValueTile for the vpmaddubsw targets: products summed in 16-bit lanes over kChunk token
// groups before each widening (4-bit codes: 4 products of at most 2 * 255 * 15; 2-bit: 21 of
// 2 * 255 * 3), vector boff of each block at a time (as ScoreGroupsPairs).
template <int CG, int P>
constexpr int ValueRowsPairs() {
  constexpr int r = (kIntRegs - CG - 4) / (2 * P * CG + P);
  return r > 8 ? 8 : (r < 1 ? 1 : r);
}

template <int R, int CG, int kBits, int P>
void ValueTilePairsT(const uint8_t* HWY_RESTRICT vc, size_t D, size_t G,
                     const uint8_t* HWY_RESTRICT p8, size_t ldp, size_t ldpart, size_t cg0,
                     size_t boff, int32_t* HWY_RESTRICT out, size_t ldout) {
  const DI di;
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int per = 8 / kBits, T = 4 * per;
  constexpr int kTerms = MaxPairTerms(255, (1 << kBits) - 1);
  constexpr size_t kChunk = size_t(kTerms / per > 0 ? kTerms / per : 1);  // token groups per sum
  const size_t ncg = D / 16;
  const VI mask = FieldMask<kBits>(di);
  VI acc[P][R][CG];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < CG; ++c) acc[p][r][c] = hn::Zero(di);
  const size_t n_tg = G / T;
  for (size_t tg0 = 0; tg0 < n_tg; tg0 += kChunk) {
    VI acc16[P][R][CG];
    for (int p = 0; p < P; ++p)
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < CG; ++c) acc16[p][r][c] = hn::Zero(di);
    const size_t tg1 = std::min(n_tg, tg0 + kChunk);
    for (size_t tg = tg0; tg < tg1; ++tg) {
      const uint8_t* blk = vc + (tg * ncg + cg0) * 64;
      VI v[CG];
      for (int c = 0; c < CG; ++c)
        v[c] = hn::LoadU(di, reinterpret_cast<const int32_t*>(blk + 64 * c) + boff * N);
      for (int k = 0; k < per; ++k) {
        VI pw[P][R];
        for (int p = 0; p < P; ++p)
          for (int r = 0; r < R; ++r)
            pw[p][r] = hn::Set(
                di, Word(p8 + size_t(p) * ldpart + size_t(r) * ldp + tg * T + 4 * size_t(k)));
        for (int c = 0; c < CG; ++c) {
          const VI u = hn::And(hn::ShiftRightSame(v[c], kBits * k), mask);
          for (int p = 0; p < P; ++p)
            for (int r = 0; r < R; ++r)
              acc16[p][r][c] = PairSums(acc16[p][r][c], PairProducts(pw[p][r], u));
        }
      }
    }
    for (int p = 0; p < P; ++p)
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < CG; ++c) acc[p][r][c] = WidenPairs(acc[p][r][c], acc16[p][r][c]);
  }
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < CG; ++c)
        hn::StoreU(acc[p][r][c], di,
                   out + size_t(p) * ldout + size_t(r) * D + (cg0 + size_t(c)) * 16 + boff * N);
}

// Calls f(std::integral_constant<int, R>) for a runtime 1 <= R <= kMax.
template <int kMax, class F>
HWY_INLINE void WithRowCount(size_t R, F&& f) {
  if constexpr (kMax >= 1) {
    if (R >= size_t(kMax)) return f(std::integral_constant<int, kMax>());
    return WithRowCount<kMax - 1>(R, f);
  }
}

// ScoreTile over any number of rows (groups of the register tile), bits 2 or 4, P query parts
// (q8 [P][rows][D]). tau [G] is the tile's per-token K scale as floats; smax [rows] gets each
// row's largest score.
template <int kBits, int P>
void ScoreTileBits(const uint8_t* kc, size_t D, size_t G, const int8_t* q8, size_t rows,
                   const float* sq, const float* c0, const float* tau, float lambda, float* S,
                   size_t ldS, float* smax) {
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = int(16 / N);
  constexpr int per = 8 / kBits;
  constexpr int kR = ScoreRows<B, per, 1, P>();
  for (size_t r0 = 0; r0 < rows; r0 += kR) {
    WithRowCount<kR>(std::min(size_t(kR), rows - r0), [&](auto rc) HWY_ATTR {
      constexpr int R = decltype(rc)::value;
      ScoreTileT<R, kBits, P>(kc, D, G, q8 + r0 * D, rows * D, sq + r0, c0 + r0, tau, lambda,
                              S + r0 * ldS, ldS, smax + r0);
    });
  }
}
inline void ScoreTile(int bits, int parts, const uint8_t* kc, size_t D, size_t G, const int8_t* q8,
                      size_t rows, const float* sq, const float* c0, const float* tau, float lambda,
                      float* S, size_t ldS, float* smax) {
  if (bits == 4) {
    if (parts == 2)
      return ScoreTileBits<4, 2>(kc, D, G, q8, rows, sq, c0, tau, lambda, S, ldS, smax);
    return ScoreTileBits<4, 1>(kc, D, G, q8, rows, sq, c0, tau, lambda, S, ldS, smax);
  }
  if (parts == 2) return ScoreTileBits<2, 2>(kc, D, G, q8, rows, sq, c0, tau, lambda, S, ldS, smax);
  return ScoreTileBits<2, 1>(kc, D, G, q8, rows, sq, c0, tau, lambda, S, ldS, smax);
}

// ValueTile over any number of rows and all D channels, bits 2 or 4, P weight parts
// (weights [P][rows][G] with part stride ldpart = rows * G; out [P][rows][D]).
template <int kBits, int P>
void ValueTileBits(const uint8_t* vc, size_t D, size_t G, const uint8_t* p8, size_t rows,
                   int32_t* out) {
  constexpr size_t N = hn::MaxLanes(DI()) < 16 ? hn::MaxLanes(DI()) : 16;
  constexpr int B = int(16 / N);
  const size_t ncg = D / 16;
  const size_t ldpart = rows * G, ldout = rows * D;
  if constexpr (kPairSums) {
    constexpr int CG = B == 1 ? 2 : 1;
    constexpr int kR = ValueRowsPairs<CG, P>();
    for (size_t r0 = 0; r0 < rows; r0 += kR) {
      WithRowCount<kR>(std::min(size_t(kR), rows - r0), [&](auto rc) HWY_ATTR {
        constexpr int R = decltype(rc)::value;
        for (size_t cg = 0; cg < ncg; cg += CG)
          for (size_t b = 0; b < size_t(B); ++b)
            ValueTilePairsT<R, CG, kBits, P>(vc, D, G, p8 + r0 * G, G, ldpart, cg, b, out + r0 * D,
                                             ldout);
      });
    }
    return;
  }
  const auto run = [&](auto cg_c) HWY_ATTR {
    constexpr int CG = decltype(cg_c)::value;
    constexpr int kR = ValueRows<B, CG, P>();
    for (size_t r0 = 0; r0 < rows; r0 += kR) {
      WithRowCount<kR>(std::min(size_t(kR), rows - r0), [&](auto rc) HWY_ATTR {
        constexpr int R = decltype(rc)::value;
        for (size_t cg = 0; cg < ncg; cg += CG)
          ValueTileT<R, CG, kBits, P>(vc, D, G, p8 + r0 * G, G, ldpart, cg, out + r0 * D, ldout);
      });
    }
  };
  if constexpr (B == 1) {
    // 32 registers: 4 channel groups (64 channels) per pass when the rows fit (fewer passes
    // over the broadcast weights), else 2 groups with more rows.
    if (ncg % 4 == 0 && rows <= size_t(ValueRows<1, 4, P>())) {
      run(std::integral_constant<int, 4>());
    } else {
      run(std::integral_constant<int, 2>());
    }
  } else {
    run(std::integral_constant<int, 1>());
  }
}
inline void ValueTile(int bits, int parts, const uint8_t* vc, size_t D, size_t G, const uint8_t* p8,
                      size_t rows, int32_t* out) {
  if (bits == 4) {
    if (parts == 2) return ValueTileBits<4, 2>(vc, D, G, p8, rows, out);
    return ValueTileBits<4, 1>(vc, D, G, p8, rows, out);
  }
  if (parts == 2) return ValueTileBits<2, 2>(vc, D, G, p8, rows, out);
  return ValueTileBits<2, 1>(vc, D, G, p8, rows, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::attn
#if HWY_TARGET == HWY_AVX3_DL
#pragma GCC pop_options
#endif
HWY_AFTER_NAMESPACE();

#endif  // KVARN_ATTENTION_INT_KERNELS_INL_H_
