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
HWY_INLINE void StoreF16Vec(DF df, hn::Vec<DF> v, f16_t* out) {
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, DF> dh;
  hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(out));
#else
  HWY_ALIGN float tmp[hn::MaxLanes(df)];
  hn::Store(v, df, tmp);
  for (size_t i = 0; i < hn::Lanes(df); ++i) out[i] = F32ToF16(tmp[i]);
#endif
}
HWY_INLINE hn::Vec<DF> LoadF16Vec(DF df, const f16_t* in) {
#if HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(in)));
#else
  HWY_ALIGN float tmp[hn::MaxLanes(df)];
  for (size_t i = 0; i < hn::Lanes(df); ++i) tmp[i] = F16ToF32(in[i]);
  return hn::Load(df, tmp);
#endif
}

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

void FwhtBatchT(float* x, int n, int D) {
  for (int t = 0; t < n; ++t) FwhtOne(x + size_t(t) * D, size_t(D));
}

// Rotates (optionally) and rounds tokens to fp16. Returns false if any value is non-finite or
// overflows fp16; the caller then asks the reference for the precise error message.
bool PrepareTokensT(const TileShape& shape, const float* x, int n, f16_t* out) {
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

// ------------------------------ std passes
// Bessel-corrected std from sums of (z - shift) and (z - shift)^2 over n values. The shift
// (one of the values) keeps the one-pass formula accurate when |mean| >> std.
HWY_INLINE float StdFromSums(float s, float q, size_t n) {
  const float nf = static_cast<float>(n);
  const float var = (q - s * s / nf) / (nf - 1.0f);
  return std::sqrt(std::max(var, 0.0f));
}

// out[i] = std over j of M[i][j] * mult[j]          (M is [rows][cols], cols % N == 0)
void StdAlongMemRows(const float* M, size_t rows, size_t cols, const float* mult, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t i = 0; i < rows; ++i) {
    const float* m = M + i * cols;
    const auto shift = hn::Set(df, m[0] * mult[0]);
    auto s0 = hn::Zero(df), s1 = hn::Zero(df), q0 = hn::Zero(df), q1 = hn::Zero(df);
    for (size_t j = 0; j < cols; j += 2 * N) {
      const auto d0 = hn::Sub(hn::Mul(hn::LoadU(df, m + j), hn::LoadU(df, mult + j)), shift);
      const auto d1 =
          hn::Sub(hn::Mul(hn::LoadU(df, m + j + N), hn::LoadU(df, mult + j + N)), shift);
      s0 = hn::Add(s0, d0);
      s1 = hn::Add(s1, d1);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
    }
    const float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
    const float q = hn::GetLane(hn::SumOfLanes(df, hn::Add(q0, q1)));
    out[i] = StdFromSums(s, q, cols);
  }
}

// out[j] = std over i of M[i][j] * mult[i]          (cols % (4N) == 0)
// Processes strips of 4 vectors so the column accumulators stay in registers.
void StdAlongMemCols(const float* M, size_t rows, size_t cols, const float* mult, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t j = 0; j < cols; j += 4 * N) {
    const float* m0 = M + j;
    const auto k0 = hn::Set(df, mult[0]);
    const auto h0 = hn::Mul(hn::LoadU(df, m0), k0);
    const auto h1 = hn::Mul(hn::LoadU(df, m0 + N), k0);
    const auto h2 = hn::Mul(hn::LoadU(df, m0 + 2 * N), k0);
    const auto h3 = hn::Mul(hn::LoadU(df, m0 + 3 * N), k0);
    auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
    auto q0 = hn::Zero(df), q1 = hn::Zero(df), q2 = hn::Zero(df), q3 = hn::Zero(df);
    for (size_t i = 1; i < rows; ++i) {  // row 0 is the shift: its deviation is 0
      const float* m = M + i * cols + j;
      const auto k = hn::Set(df, mult[i]);
      const auto d0 = hn::Sub(hn::Mul(hn::LoadU(df, m), k), h0);
      const auto d1 = hn::Sub(hn::Mul(hn::LoadU(df, m + N), k), h1);
      const auto d2 = hn::Sub(hn::Mul(hn::LoadU(df, m + 2 * N), k), h2);
      const auto d3 = hn::Sub(hn::Mul(hn::LoadU(df, m + 3 * N), k), h3);
      s0 = hn::Add(s0, d0);
      s1 = hn::Add(s1, d1);
      s2 = hn::Add(s2, d2);
      s3 = hn::Add(s3, d3);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
      q2 = hn::MulAdd(d2, d2, q2);
      q3 = hn::MulAdd(d3, d3, q3);
    }
    HWY_ALIGN float s[4 * hn::MaxLanes(df)];
    HWY_ALIGN float q[4 * hn::MaxLanes(df)];
    hn::Store(s0, df, s);
    hn::Store(s1, df, s + N);
    hn::Store(s2, df, s + 2 * N);
    hn::Store(s3, df, s + 3 * N);
    hn::Store(q0, df, q);
    hn::Store(q1, df, q + N);
    hn::Store(q2, df, q + 2 * N);
    hn::Store(q3, df, q + 3 * N);
    for (size_t l = 0; l < 4 * N; ++l) out[j + l] = StdFromSums(s[l], q[l], rows);
  }
}

// ------------------------------ VarN
// L <- clamp(L + ln(clamp(sigma, 1e-3, 1e3)), -0.3, 10); e <- exp(-L). n % N == 0.
void UpdateLogScales(const float* sigma, size_t n, float* L, float* e) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto smin = hn::Set(df, float(ref::kStdMin)), smax = hn::Set(df, float(ref::kStdMax));
  const auto lmin = hn::Set(df, float(ref::kLogMin)), lmax = hn::Set(df, float(ref::kLogMax));
  for (size_t i = 0; i < n; i += N) {
    const auto s = hn::Min(hn::Max(hn::LoadU(df, sigma + i), smin), smax);
    const auto l = hn::Min(hn::Max(hn::Add(hn::LoadU(df, L + i), hn::Log(df, s)), lmin), lmax);
    hn::StoreU(l, df, L + i);
    hn::StoreU(hn::Exp(df, hn::Neg(l)), df, e + i);
  }
}

float Ratio(const float* s, size_t n) {
  float mx = s[0], mn = s[0];
  for (size_t i = 1; i < n; ++i) {
    mx = std::max(mx, s[i]);
    mn = std::min(mn, s[i]);
  }
  return mx / std::max(mn, float(ref::kImbalanceFloor));
}

struct VarnOut {
  std::vector<float> lc, lr;  // best log scales: [C] VarN columns, [R] VarN rows
  float initial = 0, best = 0;
  int best_iter = 0;
};

// VarN of a tile held token-major as M [G][D]. k_orientation: the spec's tile is M^T
// (VarN rows = channels = memory columns, VarN cols = tokens = memory rows); otherwise M itself.
void VarnT(const float* M, size_t G, size_t D, bool k_orientation, int iters, VarnOut* o) {
  const size_t C = k_orientation ? G : D;  // VarN columns
  const size_t R = k_orientation ? D : G;  // VarN rows
  std::vector<float> lc(C, 0.0f), lr(R, 0.0f), ec(C, 1.0f), er(R, 1.0f);
  std::vector<float> sc(C), sr(R), ur(R);
  // Unscaled std along VarN columns (over rows) of X * er, and along VarN rows of X * ec.
  auto col_std = [&](const float* row_mult, float* out) {
    if (k_orientation) StdAlongMemRows(M, G, D, row_mult, out);
    else StdAlongMemCols(M, G, D, row_mult, out);
  };
  auto row_std = [&](const float* col_mult, float* out) {
    if (k_orientation) StdAlongMemCols(M, G, D, col_mult, out);
    else StdAlongMemRows(M, G, D, col_mult, out);
  };
  col_std(er.data(), sc.data());
  row_std(ec.data(), sr.data());
  float best = Ratio(sc.data(), C) + Ratio(sr.data(), R);
  o->initial = best;
  o->lc = lc;
  o->lr = lr;
  o->best_iter = 0;
  for (int it = 1; it <= iters; ++it) {
    // (a) column half-step from the column stds of the current iterate (in sc).
    UpdateLogScales(sc.data(), C, lc.data(), ec.data());
    // (b) row stds of Y(Lc_new, Lr) = er * ur, then the row half-step.
    row_std(ec.data(), ur.data());
    for (size_t r = 0; r < R; ++r) sr[r] = ur[r] * er[r];
    UpdateLogScales(sr.data(), R, lr.data(), er.data());
    // Rows only rescale: the row stds of Y(Lc, Lr_new) follow without another pass.
    for (size_t r = 0; r < R; ++r) sr[r] = ur[r] * er[r];
    col_std(er.data(), sc.data());
    for (size_t c = 0; c < C; ++c) sc[c] *= ec[c];
    const float imb = Ratio(sc.data(), C) + Ratio(sr.data(), R);
    if (imb <= best) {  // ties favour the later iterate; NaN compares false
      best = imb;
      o->lc = lc;
      o->lr = lr;
      o->best_iter = it;
    }
  }
  o->best = best;
}

// ------------------------------ RTN, absorption, packing
void StoreF16Array(const float* v, size_t n, uint8_t* dst) {
  const DF df;
  const size_t N = hn::Lanes(df);
  HWY_ALIGN f16_t tmp[hn::MaxLanes(df)];
  for (size_t i = 0; i < n; i += N) {
    StoreF16Vec(df, hn::LoadU(df, v + i), tmp);
    std::memcpy(dst + 2 * i, tmp, 2 * N);
  }
}
void ExpArray(const float* l, size_t n, float* out) {
  const DF df;
  for (size_t i = 0; i < n; i += hn::Lanes(df))
    hn::StoreU(hn::Exp(df, hn::LoadU(df, l + i)), df, out + i);
}

// V: per token (memory row) over D channels. B[t][d] = X[t][d] * ec[d] * er[t].
void QuantizeV(const TileShape& shape, const float* M, const std::vector<float>& ec,
               const std::vector<float>& er, const std::vector<float>& rho, uint8_t* record) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  const int bits = shape.v_bits;
  const float qmax = float((1 << bits) - 1);
  HWY_ALIGN float b[512];
  HWY_ALIGN float codes[512];
  std::vector<float> a(G), z(G);
  for (size_t t = 0; t < G; ++t) {
    const auto k = hn::Set(df, er[t]);
    auto lo = hn::Set(df, HUGE_VALF), hi = hn::Set(df, -HUGE_VALF);
    for (size_t d = 0; d < D; d += N) {
      const auto v = hn::Mul(hn::Mul(hn::LoadU(df, M + t * D + d), hn::LoadU(df, ec.data() + d)), k);
      hn::Store(v, df, b + d);
      lo = hn::Min(lo, v);
      hi = hn::Max(hi, v);
    }
    const float flo = hn::GetLane(hn::MinOfLanes(df, lo));
    const float fhi = hn::GetLane(hn::MaxOfLanes(df, hi));
    const float step = std::max((fhi - flo) / qmax, float(ref::kStepFloor));
    const auto vlo = hn::Set(df, flo), vstep = hn::Set(df, step), vq = hn::Set(df, qmax);
    for (size_t d = 0; d < D; d += N) {
      const auto q = hn::Round(hn::Div(hn::Sub(hn::Load(df, b + d), vlo), vstep));
      hn::Store(hn::Min(hn::Max(q, hn::Zero(df)), vq), df, codes + d);
    }
    uint8_t* dst = record + L.v_codes() + t * L.v_row_bytes();
    const size_t per_byte = size_t(8 / bits);
    for (size_t i = 0; i < D / per_byte; ++i) {
      unsigned byte = 0;
      for (size_t j = 0; j < per_byte; ++j)
        byte |= unsigned(codes[i * per_byte + j]) << (j * size_t(bits));
      dst[i] = static_cast<uint8_t>(byte);
    }
    a[t] = rho[t] * step;
    z[t] = rho[t] * flo;
  }
  StoreF16Array(a.data(), G, record + L.a_v());
  StoreF16Array(z.data(), G, record + L.z_v());
}

// K: per channel (memory column) over G tokens. B[t][d] = X[t][d] * ec[t] * er[d].
void QuantizeK(const TileShape& shape, const float* M, const std::vector<float>& ec,
               const std::vector<float>& er, const std::vector<float>& kappa, uint8_t* record) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  const int bits = shape.k_bits;
  const float qmax = float((1 << bits) - 1);
  std::vector<float> lo(D, HUGE_VALF), hi(D, -HUGE_VALF), step(D), inv(D);
  for (size_t t = 0; t < G; ++t) {
    const auto k = hn::Set(df, ec[t]);
    for (size_t d = 0; d < D; d += N) {
      const auto v = hn::Mul(hn::Mul(hn::LoadU(df, M + t * D + d), k), hn::LoadU(df, er.data() + d));
      hn::StoreU(hn::Min(hn::LoadU(df, lo.data() + d), v), df, lo.data() + d);
      hn::StoreU(hn::Max(hn::LoadU(df, hi.data() + d), v), df, hi.data() + d);
    }
  }
  for (size_t d = 0; d < D; ++d) step[d] = std::max((hi[d] - lo[d]) / qmax, float(ref::kStepFloor));
  // Packed bytes of `per_byte` consecutive tokens, as an integer per channel:
  // packed[p][d] = sum_j code[p*per_byte + j][d] << (j*bits); then transposed to [D][G/per_byte].
  const size_t per_byte = size_t(8 / bits);
  const size_t P = G / per_byte;
  std::vector<int32_t> packed(P * D);
  const hn::RebindToSigned<DF> di;
  const auto vq = hn::Set(df, qmax);
  for (size_t p = 0; p < P; ++p) {
    for (size_t d = 0; d < D; d += N) {
      const auto vlo = hn::LoadU(df, lo.data() + d);
      const auto vstep = hn::LoadU(df, step.data() + d);
      const auto ver = hn::LoadU(df, er.data() + d);
      auto acc = hn::Zero(df);
      float weight = 1.0f;
      for (size_t j = 0; j < per_byte; ++j) {
        const size_t t = p * per_byte + j;
        const auto v = hn::Mul(hn::Mul(hn::LoadU(df, M + t * D + d), hn::Set(df, ec[t])), ver);
        auto q = hn::Round(hn::Div(hn::Sub(v, vlo), vstep));
        q = hn::Min(hn::Max(q, hn::Zero(df)), vq);
        acc = hn::MulAdd(q, hn::Set(df, weight), acc);  // exact: integers below 256
        weight *= float(1 << bits);
      }
      hn::StoreU(hn::ConvertTo(di, acc), di, packed.data() + p * D + d);
    }
  }
  uint8_t* dst = record + L.k_codes();
  for (size_t d = 0; d < D; ++d)
    for (size_t p = 0; p < P; ++p) dst[d * P + p] = static_cast<uint8_t>(packed[p * D + d]);
  std::vector<float> a(D), z(D);
  for (size_t d = 0; d < D; ++d) {
    a[d] = kappa[d] * step[d];
    z[d] = kappa[d] * lo[d];
  }
  StoreF16Array(a.data(), D, record + L.a_k());
  StoreF16Array(z.data(), D, record + L.z_k());
}

void EncodeTileT(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                 TileEncodeInfo* info) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t G = size_t(shape.group), D = size_t(shape.head_dim);
  const TileRecordLayout L = shape.layout();
  std::vector<float> M(G * D);
  VarnOut vo;

  // ---- K ----
  for (size_t i = 0; i < G * D; i += N) hn::StoreU(LoadF16Vec(df, k + i), df, M.data() + i);
  VarnT(M.data(), G, D, /*k_orientation=*/true, shape.iters, &vo);
  {
    std::vector<float> ec(G), er(D), kappa(D), tau(G);
    for (size_t t = 0; t < G; ++t) ec[t] = -vo.lc[t];
    for (size_t d = 0; d < D; ++d) er[d] = -vo.lr[d];
    ExpArray(ec.data(), G, ec.data());
    ExpArray(er.data(), D, er.data());
    ExpArray(vo.lr.data(), D, kappa.data());
    ExpArray(vo.lc.data(), G, tau.data());
    QuantizeK(shape, M.data(), ec, er, kappa, record);
    StoreF16Array(tau.data(), G, record + L.tau_k());
  }
  if (info != nullptr) {
    info->k_initial_imbalance = vo.initial;
    info->k_best_imbalance = vo.best;
    info->k_best_iter = vo.best_iter;
  }

  // ---- V ----
  for (size_t i = 0; i < G * D; i += N) hn::StoreU(LoadF16Vec(df, v + i), df, M.data() + i);
  VarnT(M.data(), G, D, /*k_orientation=*/false, shape.iters, &vo);
  {
    std::vector<float> ec(D), er(G), gamma(D), rho(G);
    for (size_t d = 0; d < D; ++d) ec[d] = -vo.lc[d];
    for (size_t t = 0; t < G; ++t) er[t] = -vo.lr[t];
    ExpArray(ec.data(), D, ec.data());
    ExpArray(er.data(), G, er.data());
    ExpArray(vo.lc.data(), D, gamma.data());
    ExpArray(vo.lr.data(), G, rho.data());
    QuantizeV(shape, M.data(), ec, er, rho, record);
    StoreF16Array(gamma.data(), D, record + L.gamma_v());
  }
  if (info != nullptr) {
    info->v_initial_imbalance = vo.initial;
    info->v_best_imbalance = vo.best;
    info->v_best_iter = vo.best_iter;
  }
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

void DecodeTileT(const TileShape& shape, const uint8_t* record, float* k, float* v) {
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
