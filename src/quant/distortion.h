// Distortion statistics of a quantized tensor against its reference: the numbers tests,
// benchmarks and the evaluation report, computed one way everywhere. All sums are in double.
//
// Key error split (KVarN spec): for a token key K and its dequantized Kq at angle theta,
//   ||K - Kq||^2 = (||K|| - ||Kq||)^2 + 2 ||K|| ||Kq|| (1 - cos theta) = E_M + E_D,
// magnitude error plus direction error. Attention logits q.K scale with ||K|| but rank tokens by
// direction, so which of the two a codec makes decides how much its error hurts.
#pragma once

#include <cstddef>
#include <vector>

#include "common/status.h"

namespace kvarn {

struct Distortion {
  size_t n = 0;
  double mse = 0.0;          // mean of (ref - test)^2; 0 when n == 0
  double snr_db = 0.0;       // 10 log10(sum ref^2 / sum err^2); +inf when err == 0, -inf when
                             // ref == 0 but err != 0
  double cosine = 1.0;       // <ref, test> / (|ref| |test|), clamped to [-1, 1]; by convention 1
                             // when both are zero vectors and 0 when exactly one is
  double max_abs_err = 0.0;  // max |ref - test|
};

// ref, test [n]. Non-finite inputs give NaN/inf statistics (callers measure finite data).
Distortion MeasureDistortion(const float* ref, const float* test, size_t n);

// Per token t of k, kq [n][D]: e_m[t] = (||K|| - ||Kq||)^2 and e_d[t] = 2 ||K|| ||Kq||
// (1 - cos theta), so e_m + e_d = ||K - Kq||^2. Both are computed in forms that do not cancel
// when Kq is close to K (where 2 (||K|| ||Kq|| - <K, Kq>) would lose every digit):
// ||K|| - ||Kq|| as sum((k - kq)(k + kq)) / (||K|| + ||Kq||), and e_d as
// (||K|| / ||Kq||) * ||Kq - (||Kq|| / ||K||) K||^2 (the error left after rescaling K to Kq's
// norm), built from the exact K - Kq. When either vector is zero the direction is undefined
// and e_d = 0: all error is magnitude error.
void KeyErrorSplit(const float* k, const float* kq, int n, int D, double* e_m, double* e_d);

// The paper's default fractions for the top-error token sets.
inline const std::vector<double>& DefaultKeyErrorFractions() {
  static const std::vector<double> kFractions = {0.001, 0.01, 0.05, 0.10, 0.50};
  return kFractions;
}

struct KeyErrorShare {
  double fraction = 0.0;         // q as requested
  size_t tokens = 0;             // tokens in the set: ceil(q * n), at least 1 (n > 0)
  double magnitude_share = 0.0;  // sum E_M / sum E_T over the set; 0 when that E_T sum is 0
};

struct KeyErrorSummary {
  // One entry per requested fraction, in the order given.
  std::vector<KeyErrorShare> top;
  // Mean over all tokens of | ||K|| - ||Kq|| | (= sqrt(E_M)); 0 when n == 0.
  double mean_abs_norm_err = 0.0;
};

// Given per-token e_m, e_d [n] (from KeyErrorSplit), ranks tokens by total error
// E_T = E_M + E_D (descending; ties keep token order, so results are deterministic) and, for
// each fraction q, reports the magnitude share of the top ceil(q * n) tokens. Fractions must lie
// in (0, 1]; anything else is kInvalidArgument naming the value.
Status SummarizeKeyError(const double* e_m, const double* e_d, size_t n,
                         const std::vector<double>& fractions, KeyErrorSummary* out);

}  // namespace kvarn
