#include "quant/distortion.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

namespace kvarn {

Distortion MeasureDistortion(const float* ref, const float* test, size_t n) {
  Distortion out;
  out.n = n;
  double ref2 = 0.0, test2 = 0.0, dot = 0.0, err2 = 0.0, max_err = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double r = ref[i], t = test[i];
    const double e = r - t;  // exact in double unless |r| and |t| are 2^29 apart
    ref2 += r * r;
    test2 += t * t;
    dot += r * t;
    err2 += e * e;
    max_err = std::max(max_err, std::fabs(e));
  }
  out.mse = n > 0 ? err2 / static_cast<double>(n) : 0.0;
  out.max_abs_err = max_err;
  if (err2 == 0.0) {
    out.snr_db = std::numeric_limits<double>::infinity();
  } else {
    // ref2 == 0 gives log10(0) = -inf: all of test is noise.
    out.snr_db = 10.0 * std::log10(ref2 / err2);
  }
  if (ref2 == 0.0 && test2 == 0.0) {
    out.cosine = 1.0;  // two zero vectors: identical, so perfectly aligned by convention
  } else if (ref2 == 0.0 || test2 == 0.0) {
    out.cosine = 0.0;  // one zero vector has no direction to agree with
  } else {
    // Rounding can push |cos| a few ulps past 1; clamp so acos() downstream stays defined.
    out.cosine = std::clamp(dot / (std::sqrt(ref2) * std::sqrt(test2)), -1.0, 1.0);
  }
  return out;
}

void KeyErrorSplit(const float* k, const float* kq, int n, int D, double* e_m, double* e_d) {
  for (int t = 0; t < n; ++t) {
    const float* a = k + static_cast<size_t>(t) * D;
    const float* b = kq + static_cast<size_t>(t) * D;
    // aa - bb is summed as (a - b)(a + b) per element: a float sum or difference is exact in
    // double, so this has no cancellation even when Kq is nearly K.
    double aa = 0.0, bb = 0.0, aa_minus_bb = 0.0;
    for (int j = 0; j < D; ++j) {
      const double x = a[j], y = b[j];
      aa += x * x;
      bb += y * y;
      aa_minus_bb += (x - y) * (x + y);
    }
    const double na = std::sqrt(aa), nb = std::sqrt(bb);
    // ||K|| - ||Kq|| = (||K||^2 - ||Kq||^2) / (||K|| + ||Kq||).
    const double dnorm = na + nb > 0.0 ? aa_minus_bb / (na + nb) : 0.0;
    e_m[t] = dnorm * dnorm;
    if (na == 0.0 || nb == 0.0) {
      e_d[t] = 0.0;
      continue;
    }
    // 2 na nb (1 - cos) = na nb ||a/na - b/nb||^2 = (na/nb) ||b - (nb/na) a||^2, and
    // b - (nb/na) a = (b - a) + a (na - nb)/na: the exact difference plus a small correction,
    // so the sum of squares keeps full relative precision however small the angle.
    const double r = dnorm / na;
    double s = 0.0;
    for (int j = 0; j < D; ++j) {
      const double v = (static_cast<double>(b[j]) - a[j]) + a[j] * r;
      s += v * v;
    }
    e_d[t] = na / nb * s;
  }
}

Status SummarizeKeyError(const double* e_m, const double* e_d, size_t n,
                         const std::vector<double>& fractions, KeyErrorSummary* out) {
  for (double q : fractions) {
    if (!(q > 0.0 && q <= 1.0)) {  // also rejects NaN
      return InvalidArgument("key error summary: fraction " + std::to_string(q) +
                             " is outside (0, 1]");
    }
  }
  KeyErrorSummary summary;
  std::vector<double> total(n);
  for (size_t i = 0; i < n; ++i) total[i] = e_m[i] + e_d[i];
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t i, size_t j) { return total[i] > total[j]; });
  for (double q : fractions) {
    KeyErrorShare share;
    share.fraction = q;
    if (n > 0) {
      // q is a decimal like 0.01 held inexactly, so q * n can land a few ulps above the integer
      // it means (0.01 * 1000 must be 10 tokens, not 11); shrinking by 2^-50 relative absorbs
      // that and cannot drop a genuine fractional part of size >= n * 2^-50.
      const double want = std::ceil(q * static_cast<double>(n) * (1.0 - 0x1p-50));
      share.tokens = std::clamp<size_t>(static_cast<size_t>(want), 1, n);
      double sum_m = 0.0, sum_t = 0.0;
      for (size_t r = 0; r < share.tokens; ++r) {
        sum_m += e_m[order[r]];
        sum_t += total[order[r]];
      }
      share.magnitude_share = sum_t > 0.0 ? sum_m / sum_t : 0.0;
    }
    summary.top.push_back(share);
  }
  double abs_norm = 0.0;
  for (size_t i = 0; i < n; ++i) abs_norm += std::sqrt(e_m[i]);
  summary.mean_abs_norm_err = n > 0 ? abs_norm / static_cast<double>(n) : 0.0;
  *out = std::move(summary);
  return Status::Ok();
}

}  // namespace kvarn
