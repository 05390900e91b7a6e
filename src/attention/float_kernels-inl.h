// Float kernels of decode attention over token-major K/V rows [n][D]: fp16 (sink and tail
// blocks of tile codecs, the f16 cache) or float (f32 rows, rows dequantized from q8_0 / q4_0 /
// q4_1), at the target's full vector width.
//
// Register blocking: decode attention does ~2 * rows * D FMAs per cached token and reads each
// cached element once, so the kernels keep a tile of accumulators (R rows x a few vectors) in
// registers and stream the cache through them. Tiles are sized for the target's register file
// (16 vectors on AVX2 and below, 32 on AVX-512).

#if defined(KVARN_ATTENTION_FLOAT_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_ATTENTION_FLOAT_KERNELS_INL_H_
#undef KVARN_ATTENTION_FLOAT_KERNELS_INL_H_
#else
#define KVARN_ATTENTION_FLOAT_KERNELS_INL_H_
#endif

#include <algorithm>
#include <type_traits>

#include "common/fp16.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

#if HWY_TARGET <= HWY_AVX3
constexpr int kFloatRegs = 32;
#else
constexpr int kFloatRegs = 16;
#endif

// Rows per register group of the float kernels.
constexpr int kMaxR = 6;

// Calls f(std::integral_constant<int, R>) for a runtime 1 <= R <= kMaxR, so kernels get their
// register tile size at compile time.
template <class F>
HWY_INLINE void WithRows(size_t R, const F& f) {
  switch (R) {
    case 1:
      f(std::integral_constant<int, 1>());
      break;
    case 2:
      f(std::integral_constant<int, 2>());
      break;
    case 3:
      f(std::integral_constant<int, 3>());
      break;
    case 4:
      f(std::integral_constant<int, 4>());
      break;
    case 5:
      f(std::integral_constant<int, 5>());
      break;
    default:
      f(std::integral_constant<int, 6>());
      break;
  }
}

template <class DT>
HWY_INLINE hn::Vec<DT> LoadF16(DT df, const f16_t* p) {
  const hn::Rebind<hwy::float16_t, DT> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// Token-major K/V elements: fp16 or float.
template <class DT>
HWY_INLINE hn::Vec<DT> LoadElems(DT df, const float* p) {
  return hn::LoadU(df, p);
}
template <class DT>
HWY_INLINE hn::Vec<DT> LoadElems(DT df, const f16_t* p) {
  return LoadF16(df, p);
}

// Calls f(tag) with the widest float tag whose lane count divides D: the full vector for every
// head_dim of the tile codecs (>= 64), narrower ones for the small head dims a per-token cache
// accepts (a row must never be read past its end).
template <class F>
HWY_INLINE void WithFloatTag(size_t D, const F& f) {
  if (D % hn::Lanes(DF()) == 0) return f(DF());
  if (D % 8 == 0) return f(hn::CappedTag<float, 8>());
  if (D % 4 == 0) return f(hn::CappedTag<float, 4>());
  return f(hn::CappedTag<float, 1>());
}

// Round-to-nearest-even of |x| < 2^22 by adding 1.5 * 2^23: the sum's low mantissa bits hold
// the integer (two's complement in its low byte for the byte conversions below).
constexpr float kRoundMagic = 12582912.0f;

// exp(x) for x <= 0 (scores minus their running max): hn::Exp's polynomial and two-part ln 2
// reduction, without its handling of large and tiny arguments, which cost about a third of its
// instructions, and with the magic-number rounding of n (x is clamped at -87.3, so
// n = round(x / ln 2) is in [-126, 0] and 2^n stays a normal float; below that the true value
// (< 1.2e-38) is lost against the row's maximum term, which is 1).
HWY_INLINE VF ExpNonPositive(DF df, VF x) {
  const hn::Rebind<int32_t, DF> di;
  x = hn::Max(x, hn::Set(df, -87.3f));
  const VF t = hn::MulAdd(x, hn::Set(df, 1.442695040888963407f), hn::Set(df, kRoundMagic));
  const VF nf = hn::Sub(t, hn::Set(df, kRoundMagic));
  VF r = hn::MulAdd(nf, hn::Set(df, -0.693145751953125f), x);
  r = hn::MulAdd(nf, hn::Set(df, -1.428606765330187045e-6f), r);
  VF p = hn::Set(df, 0.000198527617612853646278381f);
  p = hn::MulAdd(p, r, hn::Set(df, 0.00139304355252534151077271f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.00833336077630519866943359f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.0416664853692054748535156f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.166666671633720397949219f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.5f));
  p = hn::Add(hn::MulAdd(p, hn::Mul(r, r), r), hn::Set(df, 1.0f));
  // bits(t) = bits(magic) + n; the magic's bits above bit 8 shift out.
  const VF pow2n =
      hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(hn::BitCast(di, t), hn::Set(di, 127))));
  return hn::Mul(p, pow2n);
}

#if HWY_TARGET != HWY_SCALAR
// Horizontal sums of four vectors at once: out[i] = scale * sum of the lanes of v_i, ~3
// shuffles per sum instead of a full SumOfLanes each. Within every 128-bit block: pairwise
// 32-bit then 64-bit interleave-adds; then the blocks are added (256 and 512-bit vectors).
template <class DT, class V = hn::Vec<DT>>
HWY_INLINE void StoreSums4(DT df, V v0, V v1, V v2, V v3, V scale, float* out) {
  const hn::RebindToUnsigned<DT> du;
  const hn::RepartitionToWide<decltype(du)> d64;
  const V a = hn::Add(hn::InterleaveLower(df, v0, v1), hn::InterleaveUpper(df, v0, v1));
  const V b = hn::Add(hn::InterleaveLower(df, v2, v3), hn::InterleaveUpper(df, v2, v3));
  const auto a64 = hn::BitCast(d64, a), b64 = hn::BitCast(d64, b);
  const V s = hn::Mul(hn::Add(hn::BitCast(df, hn::InterleaveLower(d64, a64, b64)),
                              hn::BitCast(df, hn::InterleaveUpper(d64, a64, b64))),
                      scale);
  if constexpr (hn::MaxLanes(DT()) >= 16) {
    const hn::Half<DT> dh;
    const hn::Half<decltype(dh)> dq;
    const auto h = hn::Add(hn::LowerHalf(dh, s), hn::UpperHalf(dh, s));
    hn::StoreU(hn::Add(hn::LowerHalf(dq, h), hn::UpperHalf(dq, h)), dq, out);
  } else if constexpr (hn::MaxLanes(DT()) >= 8) {
    const hn::Half<DT> dh;
    hn::StoreU(hn::Add(hn::LowerHalf(dh, s), hn::UpperHalf(dh, s)), dh, out);
  } else {
    hn::StoreU(s, df, out);
  }
}
#endif

// Token-major K [n][D] (fp16 or float): S[r][t] = scale * sum_d q[r][d] * K[t][d]. The sum is
// over the vector axis, so TT tokens x R rows of partial-sum vectors are kept and reduced four
// at a time (StoreSums4), in (row, token) order.
template <int R, int TT, class DT, class T>
void ScoresTokenMajorT(const T* HWY_RESTRICT K, size_t n, size_t D, const float* HWY_RESTRICT q,
                       float scale, float* HWY_RESTRICT S, size_t G) {
  const DT df;
  const size_t N = hn::Lanes(df);
  size_t t = 0;
#if HWY_TARGET != HWY_SCALAR
  using V = hn::Vec<DT>;
  const V sv = hn::Set(df, scale);
  // Lines of the rows 2 groups ahead (the hardware prefetcher tracks only a few streams).
  const size_t row_bytes = D * sizeof(T);
  // StoreSums4 needs 4 lanes; narrower tags (head_dim < 4) take the per-token loop below.
  for (; hn::MaxLanes(DT()) >= 4 && t + TT <= n; t += TT) {
    if (t + 3 * TT <= n) {
      const uint8_t* ahead = reinterpret_cast<const uint8_t*>(K + (t + 2 * TT) * D);
      for (size_t off = 0; off < TT * row_bytes; off += 64) hwy::Prefetch(ahead + off);
    }
    V acc[R * TT];
    for (int i = 0; i < R * TT; ++i) acc[i] = hn::Zero(df);
    const T* k = K + t * D;
    for (size_t d = 0; d < D; d += N) {
      V kv[TT];
      for (int j = 0; j < TT; ++j) kv[j] = LoadElems(df, k + size_t(j) * D + d);
      for (int r = 0; r < R; ++r) {
        const V qv = hn::LoadU(df, q + size_t(r) * D + d);
        for (int j = 0; j < TT; ++j) acc[r * TT + j] = hn::MulAdd(qv, kv[j], acc[r * TT + j]);
      }
    }
    // acc is (row, token) ordered: fours are one row's 4 tokens (TT = 4) or 2 rows x 2 tokens.
    float sums[R * TT];
    if constexpr (hn::MaxLanes(DT()) >= 4) {
      for (int i = 0; i < R * TT; i += 4) {
        if (i + 4 <= R * TT) {
          StoreSums4(df, acc[i], acc[i + 1], acc[i + 2], acc[i + 3], sv, sums + i);
        } else {  // R odd, TT = 2: the last row's pair
          float pad[4];
          StoreSums4(df, acc[i], acc[i + 1], acc[i], acc[i + 1], sv, pad);
          sums[i] = pad[0];
          sums[i + 1] = pad[1];
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < TT; ++j) S[size_t(r) * G + t + j] = sums[r * TT + j];
  }
#endif
  for (; t < n; ++t) {
    const T* k = K + t * D;
    for (int r = 0; r < R; ++r) {
      auto a0 = hn::Zero(df);
      for (size_t d = 0; d < D; d += N)
        a0 = hn::MulAdd(hn::LoadU(df, q + size_t(r) * D + d), LoadElems(df, k + d), a0);
      S[size_t(r) * G + t] = hn::GetLane(hn::SumOfLanes(df, a0)) * scale;
    }
  }
}

// Tokens per score group for R rows: R * TT accumulators plus TT streamed vectors and a query
// vector must fit the registers (16: 4 tokens x 3 rows would spill; 32: 4 x 6 fits).
template <int R>
constexpr int ScoreTokens() {
  return (kFloatRegs >= 32 || R <= 2) ? 4 : 2;
}

template <class T>
void ScoresTokenMajor(const T* K, size_t n, size_t D, const float* q, size_t rows, float scale,
                      float* S, size_t G) {
  WithFloatTag(D, [&](auto tag) HWY_ATTR {
    using DT = decltype(tag);
    for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
      WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
        constexpr int kR = decltype(rc)::value;
        ScoresTokenMajorT<kR, ScoreTokens<kR>(), DT>(K, n, D, q + r0 * D, scale, S + r0 * G, G);
      });
    }
  });
}

// acc[r][d] += sum_{t < n} w[r][t] * V[t][d], V token-major [n][D] (fp16 or float). Tile: R rows
// x DV vectors of channels, held in registers across a chunk of kVChunk tokens. A chunk's rows
// are read DV vectors at a time, one piece of each row per pass, which the hardware prefetcher
// does not follow; so the next chunk is prefetched explicitly.
template <int R, int DV, class DT, class T>
void AccumTokenMajorT(const T* HWY_RESTRICT Vals, size_t n, size_t D, const float* HWY_RESTRICT w,
                      size_t G, float* HWY_RESTRICT acc) {
  using V = hn::Vec<DT>;
  constexpr size_t kVChunk = 16;
  const DT df;
  const size_t N = hn::Lanes(df);
  const size_t row_bytes = D * sizeof(T);
  for (size_t t0 = 0; t0 < n; t0 += kVChunk) {
    const size_t t1 = std::min(n, t0 + kVChunk);
    const size_t pf_end = std::min(n, t1 + kVChunk);
    for (size_t t = t1; t < pf_end; ++t) {
      const uint8_t* row = reinterpret_cast<const uint8_t*>(Vals + t * D);
      for (size_t off = 0; off < row_bytes; off += 64) hwy::Prefetch(row + off);
    }
    for (size_t d0 = 0; d0 < D; d0 += DV * N) {
      V a[R][DV];
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < DV; ++k) a[r][k] = hn::LoadU(df, acc + size_t(r) * D + d0 + k * N);
      const T* v = Vals + t0 * D + d0;
      for (size_t t = t0; t < t1; ++t, v += D) {
        V vv[DV];
        for (int k = 0; k < DV; ++k) vv[k] = LoadElems(df, v + k * N);
        for (int r = 0; r < R; ++r) {
          const V wb = hn::Set(df, w[size_t(r) * G + t]);
          for (int k = 0; k < DV; ++k) a[r][k] = hn::MulAdd(wb, vv[k], a[r][k]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < DV; ++k) hn::StoreU(a[r][k], df, acc + size_t(r) * D + d0 + k * N);
    }
  }
}

// Vectors of channels per value tile for R rows: R * DV accumulators plus DV streamed vectors
// plus one broadcast must fit the registers.
template <int R>
constexpr int ValueVectors() {
  if constexpr (kFloatRegs >= 32) return R <= 5 ? 4 : 3;
  return R <= 2 ? 4 : 2;
}

template <class T>
void AccumTokenMajor(const T* V, size_t n, size_t D, const float* w, size_t G, size_t rows,
                     float* acc) {
  WithFloatTag(D, [&](auto tag) HWY_ATTR {
    using DT = decltype(tag);
    const size_t N = hn::Lanes(DT());
    for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
      WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
        constexpr int kR = decltype(rc)::value;
        constexpr int kDV = ValueVectors<kR>();
        if (D % (kDV * N) == 0) {
          AccumTokenMajorT<kR, kDV, DT>(V, n, D, w + r0 * G, G, acc + r0 * D);
        } else if (D % (2 * N) == 0) {
          AccumTokenMajorT<kR, 2, DT>(V, n, D, w + r0 * G, G, acc + r0 * D);
        } else {
          AccumTokenMajorT<kR, 1, DT>(V, n, D, w + r0 * G, G, acc + r0 * D);
        }
      });
    }
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::attn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_ATTENTION_FLOAT_KERNELS_INL_H_
