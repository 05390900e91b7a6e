// Highway kernels of the KVarN tile codec. Compiled once per SIMD target (foreach_target);
// tile_codec.cc dispatches to the best one once per call. The arithmetic mirrors tile_ref.h;
// differences are rounding-level (one-pass shifted variance, vector exp/log, reciprocal-free
// division), which the golden tests bound.
//
// Layout: both tiles arrive token-major [G][D] ("memory rows" = tokens). For V that is the
// spec's orientation (VarN rows = tokens); for K the spec's tile is the transpose [D][G], so
// K's VarN rows are memory columns. The std passes below work on either axis, so no
// transpose of the float tile is needed; only K's packed codes are transposed at the end.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/tile_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "quant/tile_codec.h"
#include "quant/tile_ref.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most 8 lanes: every length here (D >= 64, G % 8 == 0) is then a whole number of vectors.
using DF = hn::CappedTag<float, 8>;

// ------------------------------ fp16 round trip
// Only F16C targets round to nearest even in Highway 1.0.3's DemoteTo; older targets
// truncate, so they use the scalar conversion.
template <class D>
HWY_INLINE void StoreF16Vec(D d, hn::Vec<D> v, f16_t* out) {
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, D> dh;
  hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(out));
#else
  HWY_ALIGN float tmp[hn::MaxLanes(d)];
  hn::Store(v, d, tmp);
  for (size_t i = 0; i < hn::Lanes(d); ++i) out[i] = F32ToF16(tmp[i]);
#endif
}
template <class D>
HWY_INLINE hn::Vec<D> LoadF16Vec(D d, const f16_t* in) {
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(in)));
#else
  HWY_ALIGN float tmp[hn::MaxLanes(d)];
  for (size_t i = 0; i < hn::Lanes(d); ++i) tmp[i] = F16ToF32(in[i]);
  return hn::Load(d, tmp);
#endif
}

// The encode kernels use vectors of at most 4 lanes. On Zen 1 (this project's benchmark
// machine) 256-bit operations are split into two 128-bit halves, and the std sweep below
// measured 12% faster with 128-bit vectors (1.8 vs 2.0 us per 128x128 sweep); every target
// Highway compiles here (EMU128 included) has at least 4 float lanes.
using DE = hn::CappedTag<float, 4>;

// ------------------------------ Hadamard
// Normalized FWHT of one vector in place. Butterfly stages with h >= lanes pair whole
// vectors; stages with h < lanes pair lanes i and i^h inside a vector:
// out[i] = x[i^h] + sign_i * x[i], sign_i = -1 where bit h of i is set.
HWY_INLINE void FwhtOne(float* HWY_RESTRICT x, size_t D) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const auto iota = hn::Iota(di, 0);
  for (size_t h = 1; h < N; h *= 2) {
    const auto hv = hn::Set(di, static_cast<int32_t>(h));
    const auto idx = hn::IndicesFromVec(df, hn::Xor(iota, hv));
    const auto upper = hn::RebindMask(df, hn::Eq(hn::And(iota, hv), hv));
    const auto sign = hn::IfThenElse(upper, hn::Set(df, -1.0f), hn::Set(df, 1.0f));
    for (size_t i = 0; i < D; i += N) {
      const auto v = hn::LoadU(df, x + i);
      hn::StoreU(hn::MulAdd(sign, v, hn::TableLookupLanes(v, idx)), df, x + i);
    }
  }
  for (size_t h = N; h < D; h *= 2) {
    for (size_t i = 0; i < D; i += 2 * h) {
      for (size_t j = i; j < i + h; j += N) {
        const auto a = hn::LoadU(df, x + j);
        const auto b = hn::LoadU(df, x + j + h);
        hn::StoreU(hn::Add(a, b), df, x + j);
        hn::StoreU(hn::Sub(a, b), df, x + j + h);
      }
    }
  }
  const auto s = hn::Set(df, 1.0f / std::sqrt(static_cast<float>(D)));
  for (size_t i = 0; i < D; i += N) hn::StoreU(hn::Mul(s, hn::LoadU(df, x + i)), df, x + i);
}

#if HWY_TARGET != HWY_SCALAR
// The same butterflies in 4-lane vectors with register blocking: pass A runs stages
// h = 1, 2 (inside each vector) and h = 4, 8, 16 (across the 8 vectors of a 32-float group);
// pass B runs the stages h >= 32 across the kV = D / 32 vectors of each column of the
// [kV][8] vector grid, then hands each finished vector and its offset to `sink`. The stage
// order and the butterflies (a + b, a - b) are the reference's, so the result is
// bit-identical to ref::Fwht<float>.
template <size_t kV, class Sink>
HWY_INLINE void FwhtRow(const float* HWY_RESTRICT in, float* HWY_RESTRICT tmp, Sink&& sink) {
  const DE d;
  using V = hn::Vec<DE>;
  const float kSign1[4] = {1.0f, -1.0f, 1.0f, -1.0f};  // out[i] = x[i ^ 1] +- x[i]
  const float kSign2[4] = {1.0f, 1.0f, -1.0f, -1.0f};  // out[i] = x[i ^ 2] +- x[i]
  const auto sign1 = hn::LoadU(d, kSign1), sign2 = hn::LoadU(d, kSign2);
  auto bfly = [&](V& a, V& b) {
    const V sum = hn::Add(a, b);
    b = hn::Sub(a, b);
    a = sum;
  };
  for (size_t g = 0; g < 8 * kV; g += 8) {
    V v[8];
    for (size_t k = 0; k < 8; ++k) {
      const auto x = hn::LoadU(d, in + 4 * (g + k));
      const auto y = hn::MulAdd(sign1, x, hn::Shuffle2301(x));
      v[k] = hn::MulAdd(sign2, y, hn::Shuffle1032(y));
    }
    for (size_t h = 1; h < 8; h *= 2)
      for (size_t k = 0; k < 8; ++k)
        if ((k & h) == 0) bfly(v[k], v[k + h]);
    for (size_t k = 0; k < 8; ++k) hn::Store(v[k], d, tmp + 4 * (g + k));
  }
  for (size_t c = 0; c < 8; ++c) {
    V v[kV];
    for (size_t m = 0; m < kV; ++m) v[m] = hn::Load(d, tmp + 4 * (c + 8 * m));
    for (size_t h = 1; h < kV; h *= 2)
      for (size_t m = 0; m < kV; ++m)
        if ((m & h) == 0) bfly(v[m], v[m + h]);
    for (size_t m = 0; m < kV; ++m) sink(v[m], 4 * (c + 8 * m));
  }
}

// FwhtRow<D / 32> for the codec's D in {64, 128, 256, 512}.
template <class Sink>
HWY_INLINE void FwhtRowD(size_t D, const float* in, float* tmp, Sink&& sink) {
  switch (D) {
    case 64: return FwhtRow<2>(in, tmp, sink);
    case 128: return FwhtRow<4>(in, tmp, sink);
    case 256: return FwhtRow<8>(in, tmp, sink);
    default: return FwhtRow<16>(in, tmp, sink);
  }
}
inline bool BlockedFwhtFits(size_t D) { return D == 64 || D == 128 || D == 256 || D == 512; }
#endif

// Rotates (optionally) and rounds tokens to fp16 one row at a time with FwhtOne: the path for
// the scalar target and for head dims the blocked transform does not cover.
bool PrepareTokensGeneric(const TileShape& shape, const float* x, int n, f16_t* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(shape.head_dim);
  HWY_ALIGN float row[512];
  const auto limit = hn::Set(df, 65504.0f);
  for (int t = 0; t < n; ++t) {
    const float* src = x + size_t(t) * D;
    auto ok = hn::IsFinite(hn::LoadU(df, src));
    for (size_t i = 0; i < D; i += N) {
      const auto v = hn::LoadU(df, src + i);
      ok = hn::And(ok, hn::IsFinite(v));
      hn::Store(v, df, row + i);
    }
    if (!hn::AllTrue(df, ok)) return false;
    if (shape.rotate) FwhtOne(row, D);
    auto fits = hn::Le(hn::Abs(hn::Load(df, row)), limit);
    for (size_t i = 0; i < D; i += N) {
      const auto v = hn::Load(df, row + i);
      fits = hn::And(fits, hn::Le(hn::Abs(v), limit));
      StoreF16Vec(df, v, out + size_t(t) * D + i);
    }
    if (!hn::AllTrue(df, fits)) return false;
  }
  return true;
}

void FwhtBatchT(float* x, int n, int D) {
#if HWY_TARGET != HWY_SCALAR
  if (BlockedFwhtFits(size_t(D))) {
    const DE d;
    const auto s = hn::Set(d, 1.0f / std::sqrt(static_cast<float>(D)));
    HWY_ALIGN float tmp[512];
    for (int t = 0; t < n; ++t) {
      float* row = x + size_t(t) * D;
      FwhtRowD(size_t(D), row, tmp, [&](hn::Vec<DE> v, size_t i) {
        hn::StoreU(hn::Mul(s, v), d, row + i);
      });
    }
    return;
  }
#endif
  for (int t = 0; t < n; ++t) FwhtOne(x + size_t(t) * D, size_t(D));
}

// Rotates (optionally) and rounds tokens to fp16. Returns false if any value is non-finite or
// overflows fp16; the caller then asks the reference for the precise error message.
// One check on the output covers both: every rotated value is a +-1 sum of all inputs, so a
// NaN or Inf input makes all of them non-finite, and |v| > 65504 is false for finite values
// only. The check compares the bits of |v| as integers (NaN is above Inf, above 65504).
bool PrepareTokensT(const TileShape& shape, const float* x, int n, f16_t* out) {
#if HWY_TARGET != HWY_SCALAR
  const size_t D = size_t(shape.head_dim);
  if (BlockedFwhtFits(D)) {
    const DE d;
    const hn::RebindToSigned<DE> di;
    const auto s = hn::Set(d, 1.0f / std::sqrt(static_cast<float>(D)));
    const auto limit = hn::BitCast(di, hn::Set(d, 65504.0f));
    auto worst = hn::Zero(di);  // max over |v| as integer bits
    HWY_ALIGN float tmp[512];
    for (int t = 0; t < n; ++t) {
      const float* src = x + size_t(t) * D;
      f16_t* dst = out + size_t(t) * D;
      if (shape.rotate) {
        FwhtRowD(D, src, tmp, [&](hn::Vec<DE> v, size_t i) {
          const auto y = hn::Mul(s, v);
          worst = hn::Max(worst, hn::BitCast(di, hn::Abs(y)));
          StoreF16Vec(d, y, dst + i);
        });
      } else {
        for (size_t i = 0; i < D; i += hn::Lanes(d)) {
          const auto y = hn::LoadU(d, src + i);
          worst = hn::Max(worst, hn::BitCast(di, hn::Abs(y)));
          StoreF16Vec(d, y, dst + i);
        }
      }
    }
    return hn::AllFalse(di, hn::Gt(worst, limit));
  }
#endif
  return PrepareTokensGeneric(shape, x, n, out);
}

// ------------------------------ encode: layout

// Tile buffers of one encode, kept per thread so that encoding allocates nothing after the
// first call on a thread (a cache commit encodes layers x heads tiles back to back).
struct EncodeScratch {
  std::vector<float> x;        // [G][D] the tile as stored (token-major), rows Stride(D) apart
  std::vector<float> xt;       // [D][G] its transpose, rows Stride(G) apart
  std::vector<float> axis;     // per-axis vectors of VarN and RTN, kAxisArrays x max(G, D)
};
constexpr size_t kAxisArrays = 15;

// Row stride (floats) of a float tile with `cols` columns. The std sweep walks a 64-byte
// strip down all rows; with a power-of-two stride (512 bytes for 128 columns) those lines map
// to 8 of the 64 L1 sets and evict each other. Four floats of padding spread them over all
// sets (measured 4% faster sweeps).
inline size_t Stride(size_t cols) { return cols + 4; }

EncodeScratch& Scratch(size_t G, size_t D) {
  thread_local EncodeScratch s;
  const size_t n = std::max(G, D);
  if (s.x.size() < G * Stride(D) || s.xt.size() < D * Stride(G)) {
    s.x.resize(G * Stride(D));
    s.xt.resize(D * Stride(G));
  }
  if (s.axis.size() < kAxisArrays * n) s.axis.resize(kAxisArrays * n);
  return s;
}

// in [rows][cols] fp16 -> x [rows][cols] and xt [cols][rows] in float (row strides
// Stride(cols) and Stride(rows)). rows, cols % 4 == 0.
// Every std sweep below then reads contiguous memory rows, whichever tile axis it reduces.
void ConvertTranspose(const f16_t* in, size_t rows, size_t cols, float* HWY_RESTRICT x,
                      float* HWY_RESTRICT xt) {
  const size_t xs = Stride(cols), ts = Stride(rows);
#if HWY_TARGET == HWY_SCALAR
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) xt[c * ts + r] = x[r * xs + c] = F16ToF32(in[r * cols + c]);
#else
  const hn::CappedTag<float, 4> d;
  const hn::Repartition<double, decltype(d)> d64;
  // Transpose of a 4x4 block: lanes pair up as 32-bit, then as 64-bit halves.
  auto lo64 = [&](hn::Vec<decltype(d)> a, hn::Vec<decltype(d)> b) {
    return hn::BitCast(d, hn::InterleaveLower(d64, hn::BitCast(d64, a), hn::BitCast(d64, b)));
  };
  auto hi64 = [&](hn::Vec<decltype(d)> a, hn::Vec<decltype(d)> b) {
    return hn::BitCast(d, hn::InterleaveUpper(d64, hn::BitCast(d64, a), hn::BitCast(d64, b)));
  };
  for (size_t r = 0; r < rows; r += 4) {
    const f16_t* src = in + r * cols;
    float* dst = x + r * xs;
    for (size_t c = 0; c < cols; c += 4) {
      const auto v0 = LoadF16Vec(d, src + c);
      const auto v1 = LoadF16Vec(d, src + cols + c);
      const auto v2 = LoadF16Vec(d, src + 2 * cols + c);
      const auto v3 = LoadF16Vec(d, src + 3 * cols + c);
      hn::StoreU(v0, d, dst + c);
      hn::StoreU(v1, d, dst + xs + c);
      hn::StoreU(v2, d, dst + 2 * xs + c);
      hn::StoreU(v3, d, dst + 3 * xs + c);
      const auto t0 = hn::InterleaveLower(d, v0, v1);  // a0 b0 a1 b1
      const auto t1 = hn::InterleaveLower(d, v2, v3);  // c0 d0 c1 d1
      const auto t2 = hn::InterleaveUpper(d, v0, v1);  // a2 b2 a3 b3
      const auto t3 = hn::InterleaveUpper(d, v2, v3);  // c2 d2 c3 d3
      float* col = xt + c * ts + r;
      hn::StoreU(lo64(t0, t1), d, col);
      hn::StoreU(hi64(t0, t1), d, col + ts);
      hn::StoreU(lo64(t2, t3), d, col + 2 * ts);
      hn::StoreU(hi64(t2, t3), d, col + 3 * ts);
    }
  }
#endif
}

// ------------------------------ encode: std sweep
// Bessel-corrected std from the sums s, q of (z - shift) and (z - shift)^2 over n values.
template <class D>
HWY_INLINE hn::Vec<D> StdFromSums(D d, hn::Vec<D> s, hn::Vec<D> q, hn::Vec<D> inv_n,
                                  hn::Vec<D> inv_n1) {
  const auto var = hn::Mul(hn::NegMulAdd(hn::Mul(s, s), inv_n, q), inv_n1);
  return hn::Sqrt(hn::Max(var, hn::Zero(d)));
}

// out[j] = std over i of M[i][j] * mult[i]; M is [rows][cols] with row stride Stride(cols),
// cols % 4 == 0.
// One-pass sums of (z - shift) with the shift = row 0's value: accurate when |mean| >> std
// (K channels carry large offsets) and exactly 0 for constant columns. Strips of 4 vectors
// keep 8 independent accumulators in registers; per element it is one FMA for the deviation,
// one add and one FMA for the sums, which is the FMA-port bound of the sweep.
void StdCols(const float* HWY_RESTRICT M, size_t rows, size_t cols,
             const float* HWY_RESTRICT mult, float* HWY_RESTRICT out) {
  const DE d;
  const size_t N = hn::Lanes(d);
  const size_t stride = Stride(cols);
  const auto inv_n = hn::Set(d, 1.0f / static_cast<float>(rows));
  const auto inv_n1 = hn::Set(d, 1.0f / static_cast<float>(rows - 1));
  const auto k0 = hn::Set(d, mult[0]);
  size_t j = 0;
  for (; j + 4 * N <= cols; j += 4 * N) {
    const float* m0 = M + j;
    const auto h0 = hn::Neg(hn::Mul(hn::LoadU(d, m0), k0));
    const auto h1 = hn::Neg(hn::Mul(hn::LoadU(d, m0 + N), k0));
    const auto h2 = hn::Neg(hn::Mul(hn::LoadU(d, m0 + 2 * N), k0));
    const auto h3 = hn::Neg(hn::Mul(hn::LoadU(d, m0 + 3 * N), k0));
    auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
    auto q0 = hn::Zero(d), q1 = hn::Zero(d), q2 = hn::Zero(d), q3 = hn::Zero(d);
    for (size_t i = 1; i < rows; ++i) {  // row 0 is the shift: its deviation is 0
      const float* m = M + i * stride + j;
      const auto k = hn::Set(d, mult[i]);
      const auto d0 = hn::MulAdd(hn::LoadU(d, m), k, h0);
      const auto d1 = hn::MulAdd(hn::LoadU(d, m + N), k, h1);
      const auto d2 = hn::MulAdd(hn::LoadU(d, m + 2 * N), k, h2);
      const auto d3 = hn::MulAdd(hn::LoadU(d, m + 3 * N), k, h3);
      s0 = hn::Add(s0, d0);
      s1 = hn::Add(s1, d1);
      s2 = hn::Add(s2, d2);
      s3 = hn::Add(s3, d3);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
      q2 = hn::MulAdd(d2, d2, q2);
      q3 = hn::MulAdd(d3, d3, q3);
    }
    hn::StoreU(StdFromSums(d, s0, q0, inv_n, inv_n1), d, out + j);
    hn::StoreU(StdFromSums(d, s1, q1, inv_n, inv_n1), d, out + j + N);
    hn::StoreU(StdFromSums(d, s2, q2, inv_n, inv_n1), d, out + j + 2 * N);
    hn::StoreU(StdFromSums(d, s3, q3, inv_n, inv_n1), d, out + j + 3 * N);
  }
  for (; j < cols; j += N) {  // G % 16 != 0 leaves single vectors
    const auto h = hn::Neg(hn::Mul(hn::LoadU(d, M + j), k0));
    auto s = hn::Zero(d), q = hn::Zero(d);
    for (size_t i = 1; i < rows; ++i) {
      const auto dv = hn::MulAdd(hn::LoadU(d, M + i * stride + j), hn::Set(d, mult[i]), h);
      s = hn::Add(s, dv);
      q = hn::MulAdd(dv, dv, q);
    }
    hn::StoreU(StdFromSums(d, s, q, inv_n, inv_n1), d, out + j);
  }
}

// ------------------------------ encode: VarN
// The scales are kept as s = exp(L) instead of L: exp(clamp(L + ln sigma, lo, hi)) equals
// clamp(s * sigma, e^lo, e^hi), so each half-step is a multiply and a clamp instead of a
// vector log and exp (which cost more than a std sweep). Only rounding differs from the
// reference's log domain. n % 4 == 0.
void UpdateScales(const float* HWY_RESTRICT sigma, size_t n, float* HWY_RESTRICT s,
                  float* HWY_RESTRICT inv) {
  const DE d;
  const auto smin = hn::Set(d, float(ref::kStdMin)), smax = hn::Set(d, float(ref::kStdMax));
  const auto lo = hn::Set(d, std::exp(float(ref::kLogMin)));
  const auto hi = hn::Set(d, std::exp(float(ref::kLogMax)));
  const auto one = hn::Set(d, 1.0f);
  for (size_t i = 0; i < n; i += hn::Lanes(d)) {
    const auto sig = hn::Min(hn::Max(hn::LoadU(d, sigma + i), smin), smax);
    const auto v = hn::Min(hn::Max(hn::Mul(hn::LoadU(d, s + i), sig), lo), hi);
    hn::StoreU(v, d, s + i);
    hn::StoreU(hn::Div(one, v), d, inv + i);
  }
}

// a[i] *= b[i], n % 4 == 0.
void MulInPlace(float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const DE d;
  for (size_t i = 0; i < n; i += hn::Lanes(d))
    hn::StoreU(hn::Mul(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, a + i);
}
// out[i] = a[i] * b[i], n % 4 == 0.
void MulTo(const float* a, const float* b, size_t n, float* out) {
  const DE d;
  for (size_t i = 0; i < n; i += hn::Lanes(d))
    hn::StoreU(hn::Mul(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
}

// max / max(min, 1e-8) over n values, n % 4 == 0.
float Ratio(const float* s, size_t n) {
  const DE d;
  auto mx = hn::LoadU(d, s), mn = mx;
  for (size_t i = hn::Lanes(d); i < n; i += hn::Lanes(d)) {
    const auto v = hn::LoadU(d, s + i);
    mx = hn::Max(mx, v);
    mn = hn::Min(mn, v);
  }
  const float fmx = hn::GetLane(hn::MaxOfLanes(d, mx));
  const float fmn = hn::GetLane(hn::MinOfLanes(d, mn));
  return fmx / std::max(fmn, float(ref::kImbalanceFloor));
}

struct VarnOut {
  float* sc;  // [C] best column scales exp(Lc)
  float* sr;  // [R] best row scales exp(Lr)
  float initial = 0, best = 0;
  int best_iter = 0;
};

// VarN (spec §4.2) of the tile Y [R][C] (the spec's orientation), given also as YT [C][R]
// (both with padded row strides, see Stride).
// Column stds reduce over Y's memory rows, row stds over YT's, so both sweeps are StdCols.
// `work` holds 8 arrays of max(R, C) floats.
void Varn(const float* Y, const float* YT, size_t R, size_t C, int iters, float* work,
          VarnOut* o) {
  const size_t n = std::max(R, C);
  float* ones = work;          // identity multipliers
  float* sc = work + n;        // column stds of the current iterate [C]
  float* sr = work + 2 * n;    // row stds [R]
  float* ur = work + 3 * n;    // row stds before the row rescale [R]
  float* cs = work + 4 * n;    // column scales exp(Lc) [C]
  float* rs = work + 5 * n;    // row scales exp(Lr) [R]
  float* ec = work + 6 * n;    // exp(-Lc) [C]
  float* er = work + 7 * n;    // exp(-Lr) [R]
  std::fill(ones, ones + n, 1.0f);
  std::fill(cs, cs + C, 1.0f);
  std::fill(rs, rs + R, 1.0f);
  std::fill(ec, ec + C, 1.0f);
  std::fill(er, er + R, 1.0f);
  std::fill(o->sc, o->sc + C, 1.0f);
  std::fill(o->sr, o->sr + R, 1.0f);
  StdCols(Y, R, C, ones, sc);
  StdCols(YT, C, R, ones, sr);
  float best = Ratio(sc, C) + Ratio(sr, R);
  o->initial = best;
  o->best_iter = 0;
  for (int it = 1; it <= iters; ++it) {
    // (a) column half-step from the column stds of the current iterate (in sc).
    UpdateScales(sc, C, cs, ec);
    // (b) row stds of Y(Lc_new, Lr) = er * (row stds of X * ec), then the row half-step.
    StdCols(YT, C, R, ec, ur);
    MulTo(ur, er, R, sr);
    UpdateScales(sr, R, rs, er);
    // Rows only rescale: the row stds of Y(Lc, Lr_new) follow without another sweep.
    MulTo(ur, er, R, sr);
    StdCols(Y, R, C, er, sc);
    MulInPlace(sc, ec, C);
    const float imb = Ratio(sc, C) + Ratio(sr, R);
    if (imb <= best) {  // ties favour the later iterate; NaN compares false
      best = imb;
      std::copy(cs, cs + C, o->sc);
      std::copy(rs, rs + R, o->sr);
      o->best_iter = it;
    }
  }
  o->best = best;
}

// ------------------------------ encode: RTN, absorption, packing
void StoreF16Array(const float* v, size_t n, uint8_t* dst) {
  const DE d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN f16_t tmp[hn::MaxLanes(d)];
  for (size_t i = 0; i < n; i += N) {
    StoreF16Vec(d, hn::LoadU(d, v + i), tmp);
    std::memcpy(dst + 2 * i, tmp, 2 * N);
  }
}
// out[i] = 1 / s[i], n % 4 == 0.
void Reciprocal(const float* s, size_t n, float* out) {
  const DE d;
  for (size_t i = 0; i < n; i += hn::Lanes(d))
    hn::StoreU(hn::Div(hn::Set(d, 1.0f), hn::LoadU(d, s + i)), d, out + i);
}

#if HWY_TARGET != HWY_SCALAR
// Stores the first kCodes (8 or 16) of 16 codes (u8 lanes, each < 2^kBits) packed
// little-endian within bytes (spec §5.3).
// 4 bits: in u16 lanes holding codes (c0, c1), c0 | c1 << 4 is the low byte of x | x >> 4.
// 2 bits: in u32 lanes holding (c0..c3), y = x | x >> 6 pairs them, y | y >> 12 packs all four.
template <int kBits, size_t kCodes>
HWY_INLINE void StorePacked(hn::Vec<hn::Full128<uint8_t>> c, uint8_t* HWY_RESTRICT out) {
  const hn::Full128<uint8_t> d8;
  HWY_ALIGN uint8_t tmp[16];
  if constexpr (kBits == 8) {
    hn::Store(c, d8, tmp);
  } else if constexpr (kBits == 4) {
    const hn::Repartition<uint16_t, decltype(d8)> d16;
    const hn::Rebind<uint8_t, decltype(d16)> dn;
    const auto x = hn::BitCast(d16, c);
    hn::Store(hn::TruncateTo(dn, hn::Or(x, hn::ShiftRight<4>(x))), dn, tmp);
  } else {
    static_assert(kBits == 2);
    const hn::Repartition<uint32_t, decltype(d8)> d32;
    const hn::Rebind<uint8_t, decltype(d32)> dn;
    const auto x = hn::BitCast(d32, c);
    const auto y = hn::Or(x, hn::ShiftRight<6>(x));
    hn::Store(hn::TruncateTo(dn, hn::Or(y, hn::ShiftRight<12>(y))), dn, tmp);
  }
  std::memcpy(out, tmp, kCodes * kBits / 8);  // a constant size: one store
}
#endif

// RTN of every row of the balanced tile B[r][c] = Y[r][c] * ec[c] * er[r] (spec §5.1) and the
// absorption of the row scale rs = 1 / er (§5.2): codes row r -> codes + r * row_bytes,
// a[r] = rs[r] * step, z[r] = rs[r] * lo as fp16. C % 8 == 0.
// With t = Y * ec, B = t * er and er > 0, so the row min/max of B are those of t times er
// (exactly: rounding is monotone), and (B - lo) / step = (t - lo_t) / step_t with
// step_t = step / er. The first pass keeps t in `t_row` [C]: recomputing it in the second
// would let the compiler contract Y * ec - lo_t into one FMA, whose unrounded product can sit
// above lo_t where t == lo_t, and a row of equal values (step at its floor) would then get
// codes of qmax instead of 0.
// Rounding: adding 2^23 to a value in [0, 2^22) rounds it to an integer, half to even (the
// spec's rule) in the current rounding mode, and leaves the integer in the low mantissa bits.
// This replaces round + convert, whose Highway conversion adds an overflow fix-up of five
// instructions per vector.
template <int kBits>
void QuantizeRows(const float* Y, size_t R, size_t C, const float* ec, const float* er,
                  const float* rs, uint8_t* codes_out, size_t row_bytes, uint8_t* a_out,
                  uint8_t* z_out, float* a, float* z, float* HWY_RESTRICT t_row) {
  const DE d;
  const size_t N = hn::Lanes(d);
  const float qmax = float((1 << kBits) - 1);
  const float kMagic = 8388608.0f;  // 2^23
#if HWY_TARGET != HWY_SCALAR
  const hn::RebindToSigned<DE> di;
  const hn::Repartition<int16_t, DE> d16;
  const hn::Full128<uint8_t> d8;
  const hn::Rebind<uint8_t, decltype(d16)> d8h;
  const auto magic = hn::Set(d, kMagic);
  const auto magic_bits = hn::BitCast(di, magic);
  const auto top = hn::Set(d, kMagic + qmax);
  // Codes of 4 values of t as i32 lanes.
  auto code = [&](const float* t, hn::Vec<DE> lo, hn::Vec<DE> step_t) {
    // t >= lo_t, so the code is >= 0; the upper clamp catches rounding above qmax.
    const auto y = hn::Min(hn::Add(hn::Div(hn::Sub(hn::LoadU(d, t), lo), step_t), magic), top);
    return hn::Sub(hn::BitCast(di, y), magic_bits);
  };
#endif
  for (size_t r = 0; r < R; ++r) {
    const float* m = Y + r * Stride(C);
    auto lo0 = hn::Set(d, HUGE_VALF), hi0 = hn::Set(d, -HUGE_VALF);
    auto lo1 = lo0, hi1 = hi0;
    size_t j = 0;
    for (; j + 2 * N <= C; j += 2 * N) {
      const auto t0 = hn::Mul(hn::LoadU(d, m + j), hn::LoadU(d, ec + j));
      const auto t1 = hn::Mul(hn::LoadU(d, m + j + N), hn::LoadU(d, ec + j + N));
      hn::StoreU(t0, d, t_row + j);
      hn::StoreU(t1, d, t_row + j + N);
      lo0 = hn::Min(lo0, t0);
      hi0 = hn::Max(hi0, t0);
      lo1 = hn::Min(lo1, t1);
      hi1 = hn::Max(hi1, t1);
    }
    for (; j < C; j += N) {
      const auto t = hn::Mul(hn::LoadU(d, m + j), hn::LoadU(d, ec + j));
      hn::StoreU(t, d, t_row + j);
      lo0 = hn::Min(lo0, t);
      hi0 = hn::Max(hi0, t);
    }
    const float lo_t = hn::GetLane(hn::MinOfLanes(d, hn::Min(lo0, lo1)));
    const float hi_t = hn::GetLane(hn::MaxOfLanes(d, hn::Max(hi0, hi1)));
    const float lo = lo_t * er[r];
    const float range_t = hi_t - lo_t;
    const float step = std::max(range_t * er[r] / qmax, float(ref::kStepFloor));
    // The step in units of t: (hi_t - lo_t) / qmax unless the floor applies. Dividing by it
    // (rather than multiplying by a reciprocal) keeps exact ties exact: rows of few distinct
    // values (B - lo = (n + 1/2) step exactly) must round half to even like the reference.
    const float step_t = range_t * er[r] / qmax >= float(ref::kStepFloor)
                             ? range_t / qmax
                             : float(ref::kStepFloor) / er[r];
    uint8_t* dst = codes_out + r * row_bytes;
#if HWY_TARGET == HWY_SCALAR
    uint8_t codes[1024];
    for (j = 0; j < C; ++j) {
      const float y = std::min((t_row[j] - lo_t) / step_t + kMagic, kMagic + qmax);
      codes[j] = static_cast<uint8_t>(y - kMagic);
    }
    ref::PackRow(codes, int(C), kBits, dst);
#else
    const auto vlo = hn::Set(d, lo_t), vk = hn::Set(d, step_t);
    for (j = 0; j + 16 <= C; j += 16) {
      const auto c01 = hn::ReorderDemote2To(d16, code(t_row + j, vlo, vk),
                                            code(t_row + j + 4, vlo, vk));
      const auto c23 = hn::ReorderDemote2To(d16, code(t_row + j + 8, vlo, vk),
                                            code(t_row + j + 12, vlo, vk));
      const auto c = hn::Combine(d8, hn::DemoteTo(d8h, c23), hn::DemoteTo(d8h, c01));
      StorePacked<kBits, 16>(c, dst + j * kBits / 8);
    }
    if (j < C) {  // C % 16 == 8
      const auto c01 = hn::ReorderDemote2To(d16, code(t_row + j, vlo, vk),
                                            code(t_row + j + 4, vlo, vk));
      const auto c8 = hn::DemoteTo(d8h, c01);
      StorePacked<kBits, 8>(hn::Combine(d8, c8, c8), dst + j * kBits / 8);
    }
#endif
    a[r] = rs[r] * step;
    z[r] = rs[r] * lo;
  }
  StoreF16Array(a, R, a_out);
  StoreF16Array(z, R, z_out);
}

// One tile of the record: VarN of the spec's tile Y [R][C] (given with its transpose YT),
// then RTN per row; returns the scales through the record fields named in the arguments.
void EncodeOne(const float* Y, const float* YT, size_t R, size_t C, int iters, int bits,
               uint8_t* codes_out, size_t row_bytes, uint8_t* a_out, uint8_t* z_out,
               uint8_t* col_scale_out, EncodeScratch& s, float* info_initial,
               float* info_best, int* info_iter) {
  const size_t n = std::max(R, C);
  float* work = s.axis.data();
  VarnOut vo;
  vo.sc = work + 8 * n;
  vo.sr = work + 9 * n;
  Varn(Y, YT, R, C, iters, work, &vo);
  float* ec = work + 10 * n;
  float* er = work + 11 * n;
  Reciprocal(vo.sc, C, ec);
  Reciprocal(vo.sr, R, er);
  auto* quantize = bits == 2 ? &QuantizeRows<2> : bits == 4 ? &QuantizeRows<4> : &QuantizeRows<8>;
  quantize(Y, R, C, ec, er, vo.sr, codes_out, row_bytes, a_out, z_out, work + 12 * n,
           work + 13 * n, work + 14 * n);
  StoreF16Array(vo.sc, C, col_scale_out);
  *info_initial = vo.initial;
  *info_best = vo.best;
  *info_iter = vo.best_iter;
}

void EncodeTileT(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                 TileEncodeInfo* info) {
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  EncodeScratch& s = Scratch(G, D);
  TileEncodeInfo local;
  TileEncodeInfo* out = info != nullptr ? info : &local;

  // K: the spec's tile is [D channels][G tokens] = the transpose of the stored [G][D].
  // Column scales are per token (tau_K), row scales per channel (kappa_K, absorbed).
  ConvertTranspose(k, G, D, s.x.data(), s.xt.data());
  EncodeOne(s.xt.data(), s.x.data(), D, G, shape.iters, shape.k_bits, record + L.k_codes(),
            L.k_row_bytes(), record + L.a_k(), record + L.z_k(), record + L.tau_k(), s,
            &out->k_initial_imbalance, &out->k_best_imbalance, &out->k_best_iter);

  // V: the spec's tile is the stored [G tokens][D channels]. Column scales are per channel
  // (gamma_V), row scales per token (rho_V, absorbed).
  ConvertTranspose(v, G, D, s.x.data(), s.xt.data());
  EncodeOne(s.x.data(), s.xt.data(), G, D, shape.iters, shape.v_bits, record + L.v_codes(),
            L.v_row_bytes(), record + L.a_v(), record + L.z_v(), record + L.gamma_v(), s,
            &out->v_initial_imbalance, &out->v_best_imbalance, &out->v_best_iter);
}

// ------------------------------ decode
void LoadF16Array(const uint8_t* src, size_t n, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  HWY_ALIGN f16_t tmp[hn::MaxLanes(df)];
  for (size_t i = 0; i < n; i += N) {
    std::memcpy(tmp, src + 2 * i, 2 * N);
    hn::StoreU(LoadF16Vec(df, tmp), df, out + i);
  }
}

// Unpacks n codes (n % 8 == 0) of `bits` bits to floats. The per-width loops keep the
// shifts compile-time constants (a runtime division per code dominated decoding).
template <int kBits>
HWY_INLINE void UnpackBytes(const uint8_t* HWY_RESTRICT in, size_t n, uint8_t* HWY_RESTRICT out) {
  constexpr size_t kPer = 8 / kBits;
  constexpr unsigned kMask = (1u << kBits) - 1;
  for (size_t i = 0; i < n / kPer; ++i) {
    const unsigned b = in[i];
    for (size_t j = 0; j < kPer; ++j) out[i * kPer + j] = static_cast<uint8_t>((b >> (j * kBits)) & kMask);
  }
}

void UnpackToFloat(const uint8_t* in, size_t n, int bits, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> du8;
  HWY_ALIGN uint8_t codes[1024];
  if (bits == 2) UnpackBytes<2>(in, n, codes);
  else if (bits == 4) UnpackBytes<4>(in, n, codes);
  else UnpackBytes<8>(in, n, codes);
  for (size_t i = 0; i < n; i += N)
    hn::StoreU(hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(du8, codes + i))), df, out + i);
}

#if HWY_TARGET != HWY_SCALAR
// Unpacks the 16 codes held in 2 * kBits bytes at `in` (spec §5.3) to u8 lanes: the inverse
// of StorePacked. Nibbles and 2-bit fields are split with shifts and masks, then interleaved
// back into element order.
template <int kBits>
HWY_INLINE hn::Vec<hn::Full128<uint8_t>> Unpack16(const uint8_t* HWY_RESTRICT in) {
  const hn::Full128<uint8_t> d8;
  const hn::Repartition<uint16_t, decltype(d8)> d16;
  if constexpr (kBits == 8) {
    return hn::LoadU(d8, in);
  } else if constexpr (kBits == 4) {
    const auto v = hn::ZeroExtendVector(d8, hn::LoadU(hn::Half<decltype(d8)>(), in));
    const auto mask = hn::Set(d8, uint8_t{0x0F});
    const auto lo = hn::And(v, mask);
    const auto hi = hn::And(hn::BitCast(d8, hn::ShiftRight<4>(hn::BitCast(d16, v))), mask);
    return hn::InterleaveLower(d8, lo, hi);  // lo0 hi0 lo1 hi1 ...
  } else {
    static_assert(kBits == 2);
    uint32_t word;
    std::memcpy(&word, in, 4);
    const hn::Repartition<uint32_t, decltype(d8)> d32;
    const auto v = hn::BitCast(d8, hn::Set(d32, word));  // only the low 4 bytes are used
    const auto w = hn::BitCast(d16, v);
    const auto mask = hn::Set(d8, uint8_t{0x03});
    const auto c0 = hn::And(v, mask);
    const auto c1 = hn::And(hn::BitCast(d8, hn::ShiftRight<2>(w)), mask);
    const auto c2 = hn::And(hn::BitCast(d8, hn::ShiftRight<4>(w)), mask);
    const auto c3 = hn::And(hn::BitCast(d8, hn::ShiftRight<6>(w)), mask);
    const auto c01 = hn::BitCast(d16, hn::InterleaveLower(d8, c0, c1));  // (c0 c1) per byte j
    const auto c23 = hn::BitCast(d16, hn::InterleaveLower(d8, c2, c3));
    return hn::BitCast(d8, hn::InterleaveLower(d16, c01, c23));
  }
}

// out[i] = (code_i * a + z) * s[i] for the n codes (n % 8 == 0) packed at `in`: one row of
// either tile (K: a channel across tokens with s = tau_K; V: a token across channels with
// s = gamma_V).
template <int kBits>
void DecodeRow(const uint8_t* HWY_RESTRICT in, size_t n, float a, float z,
               const float* HWY_RESTRICT s, float* HWY_RESTRICT out) {
  const DE d;
  const hn::RebindToSigned<DE> di;
  const hn::Rebind<uint8_t, DE> du8;
  const auto va = hn::Set(d, a), vz = hn::Set(d, z);
  HWY_ALIGN uint8_t codes[16];
  auto emit = [&](size_t i, size_t count) {
    for (size_t j = 0; j < count; j += 4) {
      const auto c = hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(du8, codes + j)));
      hn::StoreU(hn::Mul(hn::MulAdd(c, va, vz), hn::LoadU(d, s + i + j)), d, out + i + j);
    }
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    hn::Store(Unpack16<kBits>(in + i * kBits / 8), hn::Full128<uint8_t>(), codes);
    emit(i, 16);
  }
  if (i < n) {  // n % 16 == 8: unpack from a zero-padded copy of the last bytes
    HWY_ALIGN uint8_t tail[16] = {};
    std::memcpy(tail, in + i * kBits / 8, 8 * kBits / 8);
    hn::Store(Unpack16<kBits>(tail), hn::Full128<uint8_t>(), codes);
    emit(i, 8);
  }
}

template <int kKBits, int kVBits>
void DecodeTileImpl(const TileShape& shape, const uint8_t* record, float* HWY_RESTRICT k,
                    float* HWY_RESTRICT v) {
  const DE d;
  const hn::Repartition<double, DE> d64;
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  HWY_ALIGN float a[1024], z[1024], s[1024];
  HWY_ALIGN float rows[4 * 1024];  // 4 channels of K across tokens
  // K: row d of the spec's tile is channel d across tokens. Four rows at a time, then 4x4
  // transposes write tokens t..t+3 of channels d..d+3 with one store per token.
  LoadF16Array(record + L.a_k(), D, a);
  LoadF16Array(record + L.z_k(), D, z);
  LoadF16Array(record + L.tau_k(), G, s);
  for (size_t c = 0; c < D; c += 4) {
    for (size_t j = 0; j < 4; ++j)
      DecodeRow<kKBits>(record + L.k_codes() + (c + j) * L.k_row_bytes(), G, a[c + j],
                        z[c + j], s, rows + j * G);
    for (size_t t = 0; t < G; t += 4) {
      const auto r0 = hn::Load(d, rows + t), r1 = hn::Load(d, rows + G + t);
      const auto r2 = hn::Load(d, rows + 2 * G + t), r3 = hn::Load(d, rows + 3 * G + t);
      const auto t0 = hn::BitCast(d64, hn::InterleaveLower(d, r0, r1));  // a0 b0 a1 b1
      const auto t1 = hn::BitCast(d64, hn::InterleaveLower(d, r2, r3));  // c0 d0 c1 d1
      const auto t2 = hn::BitCast(d64, hn::InterleaveUpper(d, r0, r1));  // a2 b2 a3 b3
      const auto t3 = hn::BitCast(d64, hn::InterleaveUpper(d, r2, r3));  // c2 d2 c3 d3
      float* dst = k + t * D + c;
      hn::StoreU(hn::BitCast(d, hn::InterleaveLower(d64, t0, t1)), d, dst);
      hn::StoreU(hn::BitCast(d, hn::InterleaveUpper(d64, t0, t1)), d, dst + D);
      hn::StoreU(hn::BitCast(d, hn::InterleaveLower(d64, t2, t3)), d, dst + 2 * D);
      hn::StoreU(hn::BitCast(d, hn::InterleaveUpper(d64, t2, t3)), d, dst + 3 * D);
    }
  }
  // V: row t is token t across channels, already the output's layout.
  LoadF16Array(record + L.a_v(), G, a);
  LoadF16Array(record + L.z_v(), G, z);
  LoadF16Array(record + L.gamma_v(), D, s);
  for (size_t t = 0; t < G; ++t)
    DecodeRow<kVBits>(record + L.v_codes() + t * L.v_row_bytes(), D, a[t], z[t], s, v + t * D);
}

template <int kKBits>
void DecodeTileK(const TileShape& shape, const uint8_t* record, float* k, float* v) {
  switch (shape.v_bits) {
    case 2: return DecodeTileImpl<kKBits, 2>(shape, record, k, v);
    case 4: return DecodeTileImpl<kKBits, 4>(shape, record, k, v);
    default: return DecodeTileImpl<kKBits, 8>(shape, record, k, v);
  }
}
#endif

void DecodeTileT(const TileShape& shape, const uint8_t* record, float* k, float* v) {
#if HWY_TARGET != HWY_SCALAR
  switch (shape.k_bits) {
    case 2: return DecodeTileK<2>(shape, record, k, v);
    case 4: return DecodeTileK<4>(shape, record, k, v);
    default: return DecodeTileK<8>(shape, record, k, v);
  }
#else
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  std::vector<float> a(std::max(G, D)), z(std::max(G, D)), s(std::max(G, D));
  HWY_ALIGN float c[1024];
  HWY_ALIGN float row[1024];
  // K: row d of the spec's tile is channel d across tokens; written transposed.
  LoadF16Array(record + L.a_k(), D, a.data());
  LoadF16Array(record + L.z_k(), D, z.data());
  LoadF16Array(record + L.tau_k(), G, s.data());
  for (size_t d = 0; d < D; ++d) {
    UnpackToFloat(record + L.k_codes() + d * L.k_row_bytes(), G, shape.k_bits, c);
    const auto va = hn::Set(df, a[d]), vz = hn::Set(df, z[d]);
    for (size_t t = 0; t < G; t += N)
      hn::Store(hn::Mul(hn::MulAdd(hn::Load(df, c + t), va, vz), hn::LoadU(df, s.data() + t)), df,
                row + t);
    for (size_t t = 0; t < G; ++t) k[t * D + d] = row[t];
  }
  // V: row t is token t across channels.
  LoadF16Array(record + L.a_v(), G, a.data());
  LoadF16Array(record + L.z_v(), G, z.data());
  LoadF16Array(record + L.gamma_v(), D, s.data());
  for (size_t t = 0; t < G; ++t) {
    UnpackToFloat(record + L.v_codes() + t * L.v_row_bytes(), D, shape.v_bits, c);
    const auto va = hn::Set(df, a[t]), vz = hn::Set(df, z[t]);
    for (size_t d = 0; d < D; d += N)
      hn::StoreU(hn::Mul(hn::MulAdd(hn::Load(df, c + d), va, vz), hn::LoadU(df, s.data() + d)),
                 df, v + t * D + d);
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn::simd {

HWY_EXPORT(FwhtBatchT);
HWY_EXPORT(PrepareTokensT);
HWY_EXPORT(EncodeTileT);
HWY_EXPORT(DecodeTileT);

void FwhtBatchSimd(float* x, int n, int D) { HWY_DYNAMIC_DISPATCH(FwhtBatchT)(x, n, D); }

Status PrepareTokensSimd(const TileShape& shape, const float* x, int n, f16_t* out) {
  if (HWY_DYNAMIC_DISPATCH(PrepareTokensT)(shape, x, n, out)) return Status::Ok();
  return ref::PrepareTokensRef(shape, x, n, out);  // finds and names the offending value
}
void EncodeTileSimd(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                    TileEncodeInfo* info) {
  HWY_DYNAMIC_DISPATCH(EncodeTileT)(shape, k, v, record, info);
}
void DecodeTileSimd(const TileShape& shape, const uint8_t* record, float* k, float* v) {
  HWY_DYNAMIC_DISPATCH(DecodeTileT)(shape, record, k, v);
}

}  // namespace kvarn::simd
#endif  // HWY_ONCE
