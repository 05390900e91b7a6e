// Highway kernels of fused attention over one (layer, KV head) and a range of cache blocks.
// Dispatched once per Attend call chunk (attention.cc). Every block kind has one scoring and one
// value-accumulation routine; the online softmax between them is shared.
//
// Rows: the queries served together are the g = H/Hk heads of the KV head times the n_q queries
// of the chunk; row r = i * g + j (query i, head j of the group).
//
// Register blocking: decode attention does ~2 * rows * D FMAs per cached token and reads each
// cached element once, so the kernels keep a tile of accumulators (R rows x a few vectors) in
// registers and stream the cache through them, instead of reloading accumulators from memory
// per FMA. R <= kMaxR and R * vectors <= 12 leaves room for the streamed operands in the 16
// AVX2 registers. Rows beyond kMaxR are handled in further groups (n_q > 1 or large GQA).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention/attention_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "attention/attention_kernel.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "quant/ggml_blocks.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 8>;  // lengths (D >= 64, G % 8 == 0) are whole vectors
using D8 = hn::CappedTag<uint8_t, 16>;
using VF = hn::Vec<DF>;

// Rows per register group of the kernels.
constexpr int kMaxR = 6;
// Tokens per dequantized chunk of per-token quantized rows (q8_0, q4_0, q4_1): small enough to
// stay in L1 between dequantization and use.
constexpr size_t kRowChunk = 16;

// Calls f(std::integral_constant<int, R>) for a runtime 1 <= R <= kMaxR, so kernels get their
// register tile size at compile time.
template <class F>
HWY_INLINE void WithRows(size_t R, const F& f) {
  switch (R) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 5: f(std::integral_constant<int, 5>()); break;
    default: f(std::integral_constant<int, 6>()); break;
  }
}

// ------------------------------------------------------------------ code unpacking
// Unpacks n codes of `bits` bits (little-endian within bytes) into one byte each.
void UnpackCodes(const uint8_t* HWY_RESTRICT in, int bits, size_t n, uint8_t* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  const D8 d8;
  if (hn::Lanes(d8) == 16 && bits == 4 && n % 32 == 0) {
    const auto mask = hn::Set(d8, 0x0F);
    for (size_t i = 0; i < n / 32; ++i) {
      const auto v = hn::LoadU(d8, in + 16 * i);
      const auto lo = hn::And(v, mask);
      const auto hi = hn::ShiftRight<4>(v);
      hn::StoreU(hn::InterleaveLower(d8, lo, hi), d8, out + 32 * i);
      hn::StoreU(hn::InterleaveUpper(d8, lo, hi), d8, out + 32 * i + 16);
    }
    return;
  }
  if (hn::Lanes(d8) == 16 && bits == 2 && n % 64 == 0) {
    const hn::Repartition<uint16_t, D8> d16;
    const auto mask = hn::Set(d8, 0x03);
    for (size_t i = 0; i < n / 64; ++i) {
      const auto v = hn::LoadU(d8, in + 16 * i);
      const auto c0 = hn::And(v, mask);
      const auto c1 = hn::And(hn::ShiftRight<2>(v), mask);
      const auto c2 = hn::And(hn::ShiftRight<4>(v), mask);
      const auto c3 = hn::ShiftRight<6>(v);
      const auto a_lo = hn::BitCast(d16, hn::InterleaveLower(d8, c0, c1));
      const auto b_lo = hn::BitCast(d16, hn::InterleaveLower(d8, c2, c3));
      const auto a_hi = hn::BitCast(d16, hn::InterleaveUpper(d8, c0, c1));
      const auto b_hi = hn::BitCast(d16, hn::InterleaveUpper(d8, c2, c3));
      hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d16, a_lo, b_lo)), d8, out + 64 * i);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d16, a_lo, b_lo)), d8, out + 64 * i + 16);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d16, a_hi, b_hi)), d8, out + 64 * i + 32);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d16, a_hi, b_hi)), d8, out + 64 * i + 48);
    }
    return;
  }
#endif
  const size_t per = size_t(8 / bits);
  const unsigned m = (1u << bits) - 1;
  for (size_t i = 0; i < n; ++i)
    out[i] = uint8_t((in[i / per] >> ((i % per) * size_t(bits))) & m);
}

HWY_INLINE VF LoadCodes(DF df, const uint8_t* p) {
  const hn::Rebind<uint8_t, DF> d8;
  const hn::Rebind<int32_t, DF> di;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}

HWY_INLINE VF LoadF16(DF df, const f16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// Token-major K/V elements: fp16 (sink, tail, f16 rows) or float (f32 rows, dequantized rows).
HWY_INLINE VF LoadElems(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadElems(DF df, const f16_t* p) { return LoadF16(df, p); }

// exp(x) for x <= 0 (scores minus their running max): hn::Exp's polynomial and two-part ln 2
// reduction, without its handling of large and tiny arguments, which cost about a third of its
// instructions. x is clamped at -87.3 so 2^n stays a normal float; below that the true value
// (< 1.2e-38) is lost against the row's maximum term, which is 1.
HWY_INLINE VF ExpNonPositive(DF df, VF x) {
  const hn::Rebind<int32_t, DF> di;
  x = hn::Max(x, hn::Set(df, -87.3f));
  const auto n = hn::NearestInt(hn::Mul(x, hn::Set(df, 1.442695040888963407f)));
  const VF nf = hn::ConvertTo(df, n);
  VF r = hn::MulAdd(nf, hn::Set(df, -0.693145751953125f), x);
  r = hn::MulAdd(nf, hn::Set(df, -1.428606765330187045e-6f), r);
  VF p = hn::Set(df, 0.000198527617612853646278381f);
  p = hn::MulAdd(p, r, hn::Set(df, 0.00139304355252534151077271f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.00833336077630519866943359f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.0416664853692054748535156f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.166666671633720397949219f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.5f));
  p = hn::Add(hn::MulAdd(p, hn::Mul(r, r), r), hn::Set(df, 1.0f));
  const VF pow2n = hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(n, hn::Set(di, 127))));
  return hn::Mul(p, pow2n);
}

#if HWY_TARGET != HWY_SCALAR
// Horizontal sums of four vectors at once: out[i] = scale * sum of the lanes of v_i, ~3
// shuffles per sum instead of a full SumOfLanes each. Within every 128-bit block: pairwise
// 32-bit then 64-bit interleave-adds; then the blocks of a 256-bit vector are added.
HWY_INLINE void StoreSums4(DF df, VF v0, VF v1, VF v2, VF v3, VF scale, float* out) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RepartitionToWide<decltype(du)> d64;
  const VF a = hn::Add(hn::InterleaveLower(df, v0, v1), hn::InterleaveUpper(df, v0, v1));
  const VF b = hn::Add(hn::InterleaveLower(df, v2, v3), hn::InterleaveUpper(df, v2, v3));
  const auto a64 = hn::BitCast(d64, a), b64 = hn::BitCast(d64, b);
  const VF s = hn::Mul(hn::Add(hn::BitCast(df, hn::InterleaveLower(d64, a64, b64)),
                               hn::BitCast(df, hn::InterleaveUpper(d64, a64, b64))),
                       scale);
  if constexpr (hn::MaxLanes(DF()) >= 8) {
    const hn::Half<DF> dh;
    hn::StoreU(hn::Add(hn::LowerHalf(dh, s), hn::UpperHalf(dh, s)), dh, out);
  } else {
    hn::StoreU(s, df, out);
  }
}
#endif

// ------------------------------------------------------------------ scores
// Records: S[r][t] = lambda * tau[t] * (sum_d u[r][d] * C[d][t] + c0[r]) for t < G, with C the
// unpacked K codes [D][G] (channel-major: t is the vector axis, no horizontal sums). Tile: R
// rows x TV vectors of tokens; each code vector is converted once and used by all R rows.
template <int R, int TV>
void RecordScoresT(const uint8_t* HWY_RESTRICT codes, size_t D, size_t G,
                   const float* HWY_RESTRICT u /*[R][D]*/, const float* c0 /*[R]*/,
                   const f16_t* tau /*[G]*/, float lambda, float* HWY_RESTRICT S /*[R][G]*/) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const VF lam = hn::Set(df, lambda);
  for (size_t t = 0; t < G; t += TV * N) {
    VF acc[R][TV];
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < TV; ++k) acc[r][k] = hn::Zero(df);
    const uint8_t* c = codes + t;
    for (size_t d = 0; d < D; ++d, c += G) {
      VF cv[TV];
      for (int k = 0; k < TV; ++k) cv[k] = LoadCodes(df, c + k * N);
      for (int r = 0; r < R; ++r) {
        const VF ub = hn::Set(df, u[size_t(r) * D + d]);
        for (int k = 0; k < TV; ++k) acc[r][k] = hn::MulAdd(ub, cv[k], acc[r][k]);
      }
    }
    for (int k = 0; k < TV; ++k) {
      const VF tl = hn::Mul(LoadF16(df, tau + t + k * N), lam);
      for (int r = 0; r < R; ++r)
        hn::StoreU(hn::Mul(hn::Add(acc[r][k], hn::Set(df, c0[r])), tl), df,
                   S + size_t(r) * G + t + k * N);
    }
  }
}

// Puts the lanes of e (tokens 0, 2, 4, ...) and o (tokens 1, 3, 5, ...) back in token order:
// first = tokens [0, N), second = [N, 2N).
HWY_INLINE void InterleaveTokens(DF df, VF e, VF o, VF& first, VF& second) {
#if HWY_TARGET == HWY_SCALAR
  (void)df;
  first = e;
  second = o;
#else
  const VF il = hn::InterleaveLower(df, e, o), iu = hn::InterleaveUpper(df, e, o);
  if constexpr (hn::MaxLanes(DF()) >= 8) {  // interleaves work within 128-bit blocks
    first = hn::ConcatLowerLower(df, iu, il);
    second = hn::ConcatUpperUpper(df, iu, il);
  } else {
    first = il;
    second = iu;
  }
#endif
}

// RecordScoresT for 4-bit K codes read straight from the record: one load of N bytes holds
// 2N tokens' codes of channel d (low nibble: even token, high nibble: odd token), so the
// nibbles go to an even-token and an odd-token vector (no unpacking pass over the tile) and
// the accumulators are put back in token order once, at the end. Tile: R rows x C chunks of
// 2N tokens.
template <int R, int C>
void RecordScores4T(const uint8_t* HWY_RESTRICT packed /*[D][G/2]*/, size_t D, size_t G,
                    const float* HWY_RESTRICT u /*[R][D]*/, const float* c0 /*[R]*/,
                    const f16_t* tau /*[G]*/, float lambda, float* HWY_RESTRICT S /*[R][G]*/) {
  const DF df;
  const hn::Rebind<uint8_t, DF> d8;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const size_t row_bytes = G / 2;
  const VF lam = hn::Set(df, lambda);
  const auto mask = hn::Set(di, 0x0F);
  for (size_t t = 0; t < G; t += 2 * C * N) {
    VF acc[R][2 * C];
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < 2 * C; ++k) acc[r][k] = hn::Zero(df);
    const uint8_t* c = packed + t / 2;
    for (size_t d = 0; d < D; ++d, c += row_bytes) {
      VF cv[2 * C];
      for (int k = 0; k < C; ++k) {
        const auto b = hn::PromoteTo(di, hn::LoadU(d8, c + k * N));
        cv[2 * k] = hn::ConvertTo(df, hn::And(b, mask));
        cv[2 * k + 1] = hn::ConvertTo(df, hn::ShiftRight<4>(b));
      }
      for (int r = 0; r < R; ++r) {
        const VF ub = hn::Set(df, u[size_t(r) * D + d]);
        for (int k = 0; k < 2 * C; ++k) acc[r][k] = hn::MulAdd(ub, cv[k], acc[r][k]);
      }
    }
    for (int k = 0; k < C; ++k) {
      const size_t t0 = t + 2 * k * N;
      const VF tl0 = hn::Mul(LoadF16(df, tau + t0), lam);
      const VF tl1 = hn::Mul(LoadF16(df, tau + t0 + N), lam);
      for (int r = 0; r < R; ++r) {
        VF s0, s1;
        InterleaveTokens(df, acc[r][2 * k], acc[r][2 * k + 1], s0, s1);
        const VF c0v = hn::Set(df, c0[r]);
        float* out = S + size_t(r) * G + t0;
        hn::StoreU(hn::Mul(hn::Add(s0, c0v), tl0), df, out);
        hn::StoreU(hn::Mul(hn::Add(s1, c0v), tl1), df, out + N);
      }
    }
  }
}

// Token-major K [n][D] (fp16 or float): S[r][t] = scale * sum_d q[r][d] * K[t][d]. The sum is
// over the vector axis, so TT tokens x R rows of partial-sum vectors are kept and reduced four
// at a time (StoreSums4), in (row, token) order. R * TT = 12 keeps every accumulator in a
// register (4 tokens x 3 rows would need 17 with the streamed operands and spill one).
template <int R, int TT, class T>
void ScoresTokenMajorT(const T* HWY_RESTRICT K, size_t n, size_t D, const float* HWY_RESTRICT q,
                       float scale, float* HWY_RESTRICT S, size_t G) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t t = 0;
#if HWY_TARGET != HWY_SCALAR
  const VF sv = hn::Set(df, scale);
  // Lines of the rows 2 groups ahead (the hardware prefetcher tracks only a few streams).
  const size_t row_bytes = D * sizeof(T);
  for (; t + TT <= n; t += TT) {
    if (t + 3 * TT <= n) {
      const uint8_t* ahead = reinterpret_cast<const uint8_t*>(K + (t + 2 * TT) * D);
      for (size_t off = 0; off < TT * row_bytes; off += 64) hwy::Prefetch(ahead + off);
    }
    VF acc[R * TT];
    for (int i = 0; i < R * TT; ++i) acc[i] = hn::Zero(df);
    const T* k = K + t * D;
    for (size_t d = 0; d < D; d += N) {
      VF kv[TT];
      for (int j = 0; j < TT; ++j) kv[j] = LoadElems(df, k + size_t(j) * D + d);
      for (int r = 0; r < R; ++r) {
        const VF qv = hn::LoadU(df, q + size_t(r) * D + d);
        for (int j = 0; j < TT; ++j) acc[r * TT + j] = hn::MulAdd(qv, kv[j], acc[r * TT + j]);
      }
    }
    // acc is (row, token) ordered: fours are one row's 4 tokens (TT = 4) or 2 rows x 2 tokens.
    float sums[R * TT];
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

template <class T>
void ScoresTokenMajor(const T* K, size_t n, size_t D, const float* q, size_t rows, float scale,
                      float* S, size_t G) {
  for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
    WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
      constexpr int kR = decltype(rc)::value;
      ScoresTokenMajorT<kR, (kR <= 2 ? 4 : 2)>(K, n, D, q + r0 * D, scale, S + r0 * G, G);
    });
  }
}

// ------------------------------------------------------------------ values
// acc[r][d] += sum_{t < n} w[r][t] * V[t][d], V token-major [n][D] (fp16 or float). Tile: R rows
// x DV vectors of channels, held in registers across a chunk of kVChunk tokens. A chunk's rows
// are read DV vectors at a time, one 32-64 byte piece of each row per pass, which the
// hardware prefetcher does not follow; so the next chunk is prefetched explicitly.
template <int R, int DV, class T>
void AccumTokenMajorT(const T* HWY_RESTRICT V, size_t n, size_t D, const float* HWY_RESTRICT w,
                      size_t G, float* HWY_RESTRICT acc) {
  constexpr size_t kVChunk = 16;
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t row_bytes = D * sizeof(T);
  for (size_t t0 = 0; t0 < n; t0 += kVChunk) {
    const size_t t1 = std::min(n, t0 + kVChunk);
    const size_t pf_end = std::min(n, t1 + kVChunk);
    for (size_t t = t1; t < pf_end; ++t) {
      const uint8_t* row = reinterpret_cast<const uint8_t*>(V + t * D);
      for (size_t off = 0; off < row_bytes; off += 64) hwy::Prefetch(row + off);
    }
    for (size_t d0 = 0; d0 < D; d0 += DV * N) {
      VF a[R][DV];
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < DV; ++k) a[r][k] = hn::LoadU(df, acc + size_t(r) * D + d0 + k * N);
      const T* v = V + t0 * D + d0;
      for (size_t t = t0; t < t1; ++t, v += D) {
        VF vv[DV];
        for (int k = 0; k < DV; ++k) vv[k] = LoadElems(df, v + k * N);
        for (int r = 0; r < R; ++r) {
          const VF wb = hn::Set(df, w[size_t(r) * G + t]);
          for (int k = 0; k < DV; ++k) a[r][k] = hn::MulAdd(wb, vv[k], a[r][k]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < DV; ++k) hn::StoreU(a[r][k], df, acc + size_t(r) * D + d0 + k * N);
    }
  }
}

// Vectors of channels per value tile for R rows, as long as D allows: R * DV accumulators plus
// DV streamed vectors plus one broadcast must fit the 16 AVX2 registers (3 x 4 spills one).
template <int R>
constexpr int ValueVectors() {
  return R <= 2 ? 4 : 2;
}

template <class T>
void AccumTokenMajor(const T* V, size_t n, size_t D, const float* w, size_t G, size_t rows,
                     float* acc) {
  const size_t N = hn::Lanes(DF());
  for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
    WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
      constexpr int kR = decltype(rc)::value;
      constexpr int kDV = ValueVectors<kR>();
      if (D % (kDV * N) == 0) {
        AccumTokenMajorT<kR, kDV>(V, n, D, w + r0 * G, G, acc + r0 * D);
      } else {
        AccumTokenMajorT<kR, 1>(V, n, D, w + r0 * G, G, acc + r0 * D);
      }
    });
  }
}

// Records: acc[r][d] += gamma[d] * (sum_t w[r][t] * C[t][d] + zsum[r]) with C the unpacked V
// codes [n][D] and w already multiplied by a_V (spec §6.2).
template <int R, int DV>
void AccumCodesT(const uint8_t* HWY_RESTRICT C, size_t n, size_t D, const float* HWY_RESTRICT w,
                 size_t G, const f16_t* gamma, const float* zsum, float* HWY_RESTRICT acc) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t d0 = 0; d0 < D; d0 += DV * N) {
    VF a[R][DV];
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < DV; ++k) a[r][k] = hn::Zero(df);
    const uint8_t* c = C + d0;
    for (size_t t = 0; t < n; ++t, c += D) {
      VF cv[DV];
      for (int k = 0; k < DV; ++k) cv[k] = LoadCodes(df, c + k * N);
      for (int r = 0; r < R; ++r) {
        const VF wb = hn::Set(df, w[size_t(r) * G + t]);
        for (int k = 0; k < DV; ++k) a[r][k] = hn::MulAdd(wb, cv[k], a[r][k]);
      }
    }
    for (int k = 0; k < DV; ++k) {
      const VF gv = LoadF16(df, gamma + d0 + k * N);
      for (int r = 0; r < R; ++r) {
        float* o = acc + size_t(r) * D + d0 + k * N;
        hn::StoreU(hn::MulAdd(gv, hn::Add(a[r][k], hn::Set(df, zsum[r])), hn::LoadU(df, o)), df,
                   o);
      }
    }
  }
}

// ------------------------------------------------------------------ the block loop
// Scores of one record into S[rows][G], scaled by the softmax scale (spec §6.2): the per-channel
// K step folds into the query (u = q * a_K), the zero into one constant per row (c0 = q . z_K),
// the per-token scale into the result.
void ScoreRecord(const KernelArgs& a, KernelScratch& sc, const uint8_t* rec, float* S) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const TileRecordLayout& L = a.layout;
  const f16_t* ak = reinterpret_cast<const f16_t*>(rec + L.a_k());
  const f16_t* zk = reinterpret_cast<const f16_t*>(rec + L.z_k());
  const f16_t* tk = reinterpret_cast<const f16_t*>(rec + L.tau_k());
  float* u = sc.u.data();
  float* c0 = sc.c0.data();
  for (size_t r = 0; r < rows; ++r) {
    const float* q = a.q + r * D;
    auto z = hn::Zero(df);
    for (size_t d = 0; d < D; d += N) {
      const auto qv = hn::LoadU(df, q + d);
      hn::StoreU(hn::Mul(qv, LoadF16(df, ak + d)), df, u + r * D + d);
      z = hn::MulAdd(qv, LoadF16(df, zk + d), z);
    }
    c0[r] = hn::GetLane(hn::SumOfLanes(df, z));
  }
  const uint8_t* codes = rec + L.k_codes();
  if (a.k_bits == 4 && G % (2 * N) == 0) {  // straight from the packed nibbles
    for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
      WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
        constexpr int kR = decltype(rc)::value;
        if (kR <= 3 && G % (4 * N) == 0) {
          RecordScores4T<kR, 2>(codes, D, G, u + r0 * D, c0 + r0, tk, a.scale, S + r0 * G);
        } else {
          RecordScores4T<kR, 1>(codes, D, G, u + r0 * D, c0 + r0, tk, a.scale, S + r0 * G);
        }
      });
    }
    return;
  }
  // 2- and 8-bit codes: one byte per code first.
  if (a.k_bits == 8) {
    std::memcpy(sc.kc.data(), codes, D * G);
  } else {
    UnpackCodes(codes, a.k_bits, D * G, sc.kc.data());
  }
  for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
    WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
      constexpr int kR = decltype(rc)::value;
      constexpr int kTV = kR <= 3 ? 4 : 2;
      if (G % (kTV * N) == 0) {
        RecordScoresT<kR, kTV>(sc.kc.data(), D, G, u + r0 * D, c0 + r0, tk, a.scale, S + r0 * G);
      } else {
        RecordScoresT<kR, 1>(sc.kc.data(), D, G, u + r0 * D, c0 + r0, tk, a.scale, S + r0 * G);
      }
    });
  }
}

// Values of one record: acc += gamma * (W . codes + zsum), W already holding w * a_V.
void AccumRecord(const KernelArgs& a, KernelScratch& sc, const uint8_t* rec, const float* W,
                 size_t len) {
  const size_t N = hn::Lanes(DF());
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const TileRecordLayout& L = a.layout;
  const f16_t* gv = reinterpret_cast<const f16_t*>(rec + L.gamma_v());
  if (a.v_bits == 8) {
    std::memcpy(sc.vc.data(), rec + L.v_codes(), G * D);
  } else {
    UnpackCodes(rec + L.v_codes(), a.v_bits, G * D, sc.vc.data());
  }
  for (size_t r0 = 0; r0 < rows; r0 += kMaxR) {
    WithRows(std::min(size_t(kMaxR), rows - r0), [&](auto rc) HWY_ATTR {
      constexpr int kR = decltype(rc)::value;
      constexpr int kDV = ValueVectors<kR>();
      if (D % (kDV * N) == 0) {
        AccumCodesT<kR, kDV>(sc.vc.data(), len, D, W + r0 * G, G, gv, sc.zsum.data() + r0,
                             a.acc + r0 * D);
      } else {
        AccumCodesT<kR, 1>(sc.vc.data(), len, D, W + r0 * G, G, gv, sc.zsum.data() + r0,
                           a.acc + r0 * D);
      }
    });
  }
}

// Per-token rows (f32, f16, q8_0, q4_0, q4_1) of block b: scores (values == false) or value
// accumulation (values == true). Plain fp16 / f32 rows are read in place; quantized rows are
// dequantized kRowChunk tokens at a time into sc.kf, which stays in L1 until used.
void TokenRows(const KernelArgs& a, KernelScratch& sc, int b, size_t len, bool values, float* S,
               const float* W) {
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const SeqView& view = *a.view;
  const uint8_t* data =
      values ? view.RowsV(b, a.layer, a.kv_head) : view.RowsK(b, a.layer, a.kv_head);
  const auto run = [&](auto* elems, size_t n, size_t t0) HWY_ATTR {
    if (values) {
      AccumTokenMajor(elems, n, D, W + t0, G, rows, a.acc);
    } else {
      ScoresTokenMajor(elems, n, D, a.q, rows, a.scale, S + t0, G);
    }
  };
  if (a.kind == CodecKind::kF16 && a.row_bytes == D * sizeof(f16_t)) {
    run(reinterpret_cast<const f16_t*>(data), len, 0);
  } else if (a.kind == CodecKind::kF32 && a.row_bytes == D * sizeof(float)) {
    run(reinterpret_cast<const float*>(data), len, 0);
  } else {
    for (size_t t0 = 0; t0 < len; t0 += kRowChunk) {
      const size_t n = std::min(kRowChunk, len - t0);
      // Consecutive rows form one longer row (whole 32-value blocks per row).
      DequantizeRow(a.kind, data + t0 * a.row_bytes, int(n * D), sc.kf.data());
      run(static_cast<const float*>(sc.kf.data()), n, t0);
    }
  }
}

// Online softmax of every row over its visible tokens of one block: updates the running max and
// denominator, rescales acc, writes the weights to W (zero where masked). For records
// (av != nullptr) the same pass folds a_V into the weights and sums w * z_V into zsum (spec
// §6.2).
void SoftmaxBlock(const KernelArgs& a, int base, size_t len, const float* S, float* W,
                  const f16_t* av, const f16_t* zv, float* zsum) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  for (size_t r = 0; r < rows; ++r) {
    const int qpos = a.pos0 + int(r) / a.group;
    const size_t vis = size_t(std::clamp(qpos - base + 1, 0, int(len)));
    const float* s = S + r * G;
    float* w = W + r * G;
    zsum[r] = 0.0f;
    std::fill(w + vis, w + G, 0.0f);
    if (vis == 0) continue;
    size_t t = 0;
    auto mxv = hn::Set(df, -INFINITY);
    for (; t + N <= vis; t += N) mxv = hn::Max(mxv, hn::LoadU(df, s + t));
    float mx = hn::GetLane(hn::MaxOfLanes(df, mxv));
    for (; t < vis; ++t) mx = std::max(mx, s[t]);
    SoftmaxRow& st = a.states[r];
    const float m_new = std::max(st.m, mx);
    const float alpha = std::exp(st.m - m_new);  // 0 when st.m == -inf
    float* acc = a.acc + r * D;
    if (alpha != 1.0f) {
      const auto alv = hn::Set(df, alpha);
      for (size_t d = 0; d < D; d += N)
        hn::StoreU(hn::Mul(alv, hn::LoadU(df, acc + d)), df, acc + d);
      st.l *= alpha;
    }
    const auto mv = hn::Set(df, m_new);
    auto lsum = hn::Zero(df);
    auto zs = hn::Zero(df);
    t = 0;
    if (av != nullptr) {
      for (; t + N <= vis; t += N) {
        const auto p = ExpNonPositive(df, hn::Sub(hn::LoadU(df, s + t), mv));
        lsum = hn::Add(lsum, p);
        zs = hn::MulAdd(p, LoadF16(df, zv + t), zs);
        hn::StoreU(hn::Mul(p, LoadF16(df, av + t)), df, w + t);
      }
    } else {
      for (; t + N <= vis; t += N) {
        const auto p = ExpNonPositive(df, hn::Sub(hn::LoadU(df, s + t), mv));
        lsum = hn::Add(lsum, p);
        hn::StoreU(p, df, w + t);
      }
    }
    float l = hn::GetLane(hn::SumOfLanes(df, lsum));
    float z = hn::GetLane(hn::SumOfLanes(df, zs));
    for (; t < vis; ++t) {
      const float p = std::exp(s[t] - m_new);
      l += p;
      if (av != nullptr) {
        z += p * F16ToF32(zv[t]);
        w[t] = p * F16ToF32(av[t]);
      } else {
        w[t] = p;
      }
    }
    zsum[r] = z;
    st.l += l;
    st.m = m_new;
  }
}

void AttendRangeT(const KernelArgs& a) {
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const SeqView& view = *a.view;
  KernelScratch& sc = *a.scratch;
  sc.S.resize(rows * G);
  sc.W.resize(rows * G);
  sc.u.resize(rows * D);
  sc.kf.resize(kRowChunk * D);
  sc.kc.resize(G * D);
  sc.vc.resize(G * D);
  sc.c0.resize(rows);
  sc.zsum.resize(rows);
  float* S = sc.S.data();
  float* W = sc.W.data();

  for (int b = a.block_begin; b < a.block_end; ++b) {
    const size_t len = size_t(view.block_len(b));
    switch (view.block(b).kind) {
      case BlockKind::kRecord: {
        const uint8_t* rec = view.Record(b, a.layer, a.kv_head);
        ScoreRecord(a, sc, rec, S);
        SoftmaxBlock(a, b * a.G, len, S, W, reinterpret_cast<const f16_t*>(rec + a.layout.a_v()),
                     reinterpret_cast<const f16_t*>(rec + a.layout.z_v()), sc.zsum.data());
        AccumRecord(a, sc, rec, W, len);
        break;
      }
      case BlockKind::kF16:
        ScoresTokenMajor(view.F16K(b, a.layer, a.kv_head), len, D, a.q, rows, a.scale, S, G);
        SoftmaxBlock(a, b * a.G, len, S, W, nullptr, nullptr, sc.zsum.data());
        AccumTokenMajor(view.F16V(b, a.layer, a.kv_head), len, D, W, G, rows, a.acc);
        break;
      case BlockKind::kRows:
        TokenRows(a, sc, b, len, /*values=*/false, S, W);
        SoftmaxBlock(a, b * a.G, len, S, W, nullptr, nullptr, sc.zsum.data());
        TokenRows(a, sc, b, len, /*values=*/true, S, W);
        break;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn::attn {
HWY_EXPORT(AttendRangeT);
void AttendRange(const KernelArgs& a) { HWY_DYNAMIC_DISPATCH(AttendRangeT)(a); }
}  // namespace kvarn::attn
#endif
