// Readable scalar reference of the KVarN tile codec (spec §3-§5), templated on the arithmetic
// type. T = float is the forced-reference path of the library (KVARN_FORCE_REFERENCE);
// T = double is the golden model the tests compare the SIMD path against. Nothing here is
// optimized: each function is a direct transcription of the spec's formulas.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/fp16.h"

namespace kvarn::ref {

// Constants of spec §4.3 and §5.1.
inline constexpr double kStdMin = 1e-3;
inline constexpr double kStdMax = 1e3;
inline constexpr double kLogMin = -0.3;
inline constexpr double kLogMax = 10.0;
inline constexpr double kImbalanceFloor = 1e-8;
inline constexpr double kStepFloor = 1e-10;

// Normalized fast Walsh-Hadamard transform in place: x <- H x with H the Sylvester matrix
// ([[H, H], [H, -H]]) divided by sqrt(D). H is symmetric and orthonormal, so x*H == H*x and
// applying it twice is the identity. D must be a power of two.
template <typename T>
void Fwht(T* x /*[D]*/, int D) {
  for (int h = 1; h < D; h *= 2) {
    for (int i = 0; i < D; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const T a = x[j];
        const T b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const T s = T(1) / std::sqrt(T(D));
  for (int i = 0; i < D; ++i) x[i] *= s;
}

// Bessel-corrected (n-1), mean-centred standard deviation, two-pass.
template <typename T>
T StdDev(const T* x, int n, int stride) {
  T mean = 0;
  for (int i = 0; i < n; ++i) mean += x[i * stride];
  mean /= T(n);
  T ss = 0;
  for (int i = 0; i < n; ++i) {
    const T d = x[i * stride] - mean;
    ss += d * d;
  }
  return std::sqrt(ss / T(n - 1));
}

// Result of variance normalization of an R x C tile.
template <typename T>
struct VarnResult {
  std::vector<T> log_col;  // [C] best Lc; column scale s_c = exp(Lc)
  std::vector<T> log_row;  // [R] best Lr; row scale s_r = exp(Lr)
  T initial_imbalance = 0;
  T best_imbalance = 0;
  int best_iter = 0;          // 0: the identity (no iterate beat it)
  std::vector<T> imbalances;  // [iters + 1] imbalance of the identity and of each iterate
};

// cur(Lc, Lr)[r][c] = X[r][c] * exp(-Lc[c]) * exp(-Lr[r]), always recomputed from X.
template <typename T>
void ScaledTile(const std::vector<T>& X, int R, int C, const std::vector<T>& lc,
                const std::vector<T>& lr, std::vector<T>* Y) {
  Y->resize(size_t(R) * C);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      (*Y)[size_t(r) * C + c] = X[size_t(r) * C + c] * std::exp(-lc[c]) * std::exp(-lr[r]);
}

template <typename T>
void ColStds(const std::vector<T>& Y, int R, int C, std::vector<T>* s) {
  s->resize(C);
  for (int c = 0; c < C; ++c) (*s)[c] = StdDev(Y.data() + c, R, C);
}
template <typename T>
void RowStds(const std::vector<T>& Y, int R, int C, std::vector<T>* s) {
  s->resize(R);
  for (int r = 0; r < R; ++r) (*s)[r] = StdDev(Y.data() + size_t(r) * C, C, 1);
}

// max/min ratio with the min floored at 1e-8 (spec §4.2).
template <typename T>
T Ratio(const std::vector<T>& s) {
  const T mx = *std::max_element(s.begin(), s.end());
  const T mn = *std::min_element(s.begin(), s.end());
  return mx / std::max(mn, T(kImbalanceFloor));
}

// L <- clamp(L + ln(clamp(sigma, 1e-3, 1e3)), -0.3, 10).
template <typename T>
void UpdateLog(const std::vector<T>& sigma, std::vector<T>* L) {
  for (size_t i = 0; i < L->size(); ++i) {
    const T s = std::clamp(sigma[i], T(kStdMin), T(kStdMax));
    (*L)[i] = std::clamp((*L)[i] + std::log(s), T(kLogMin), T(kLogMax));
  }
}

// Dual-axis log-domain std balancing (spec §4.2): column axis first, best full iterate kept
// (ties to the later one), identity as the first candidate. X is [R][C] row-major.
// forced_iter >= 0 selects that iterate instead of the best (tests use it to compare two
// implementations whose rounding broke an exact tie differently).
template <typename T>
VarnResult<T> Varn(const std::vector<T>& X, int R, int C, int iters, int forced_iter = -1) {
  VarnResult<T> res;
  std::vector<T> lc(C, T(0)), lr(R, T(0)), Y, sc, sr;
  ScaledTile(X, R, C, lc, lr, &Y);
  ColStds(Y, R, C, &sc);
  RowStds(Y, R, C, &sr);
  T best = Ratio(sc) + Ratio(sr);
  res.initial_imbalance = best;
  res.imbalances.push_back(best);
  res.log_col = lc;
  res.log_row = lr;
  for (int it = 1; it <= iters; ++it) {
    ColStds(Y, R, C, &sc);
    UpdateLog(sc, &lc);
    ScaledTile(X, R, C, lc, lr, &Y);
    RowStds(Y, R, C, &sr);
    UpdateLog(sr, &lr);
    ScaledTile(X, R, C, lc, lr, &Y);
    ColStds(Y, R, C, &sc);
    RowStds(Y, R, C, &sr);
    const T imb = Ratio(sc) + Ratio(sr);
    res.imbalances.push_back(imb);
    const bool take = forced_iter >= 0 ? it == forced_iter : imb <= best;
    if (take) {  // a NaN imbalance compares false: previous best kept
      best = imb;
      res.log_col = lc;
      res.log_row = lr;
      res.best_iter = it;
    }
  }
  res.best_imbalance = best;
  return res;
}

// Asymmetric round-to-nearest of one row (spec §5.1): codes in [0, 2^bits - 1], ties to even.
template <typename T>
void RtnRow(const T* x, int n, int bits, uint8_t* codes, T* step_out, T* lo_out) {
  const T lo = *std::min_element(x, x + n);
  const T hi = *std::max_element(x, x + n);
  const int qmax = (1 << bits) - 1;
  const T step = std::max((hi - lo) / T(qmax), T(kStepFloor));
  for (int i = 0; i < n; ++i) {
    const T q = std::nearbyint((x[i] - lo) / step);  // default rounding mode: half to even
    codes[i] = static_cast<uint8_t>(std::clamp(q, T(0), T(qmax)));
  }
  *step_out = step;
  *lo_out = lo;
}

// Packs n codes of `bits` bits little-endian within each byte: element i goes to byte
// i / (8/bits) at bit offset (i % (8/bits)) * bits (spec §5.3).
inline void PackRow(const uint8_t* codes, int n, int bits, uint8_t* out) {
  const int per_byte = 8 / bits;
  for (int i = 0; i < n / per_byte; ++i) out[i] = 0;
  for (int i = 0; i < n; ++i)
    out[i / per_byte] = static_cast<uint8_t>(out[i / per_byte] | (codes[i] << ((i % per_byte) * bits)));
}
inline void UnpackRow(const uint8_t* in, int n, int bits, uint8_t* codes) {
  const int per_byte = 8 / bits;
  const int mask = (1 << bits) - 1;
  for (int i = 0; i < n; ++i)
    codes[i] = static_cast<uint8_t>((in[i / per_byte] >> ((i % per_byte) * bits)) & mask);
}

}  // namespace kvarn::ref
