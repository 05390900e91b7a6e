// Synthetic K/V tiles for codec tests and benchmarks: the kinds the spec's checks name.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "common/rng.h"

namespace kvarn::testing {

enum class TileKind { kRandom, kOutlier, kConstant, kZero, kTiny, kRealistic };

inline const char* TileKindName(TileKind k) {
  switch (k) {
    case TileKind::kRandom: return "random";
    case TileKind::kOutlier: return "outlier";
    case TileKind::kConstant: return "constant";
    case TileKind::kZero: return "zero";
    case TileKind::kTiny: return "tiny";
    case TileKind::kRealistic: return "realistic";
  }
  return "?";
}

// Token-major [n][D] values in the model frame.
//   random:    N(0, 1)
//   outlier:   N(0, 1) with one channel x30 and one token x30
//   constant:  every value 1.7
//   zero:      all 0
//   tiny:      N(0, 0.05^2)
//   realistic: key-like: per-channel offsets and heavy-tailed channel scales (a few channels
//              10-20x larger), heavy-tailed noise, and a few tokens of large magnitude.
inline std::vector<float> MakeTile(TileKind kind, int n, int D, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(size_t(n) * D);
  switch (kind) {
    case TileKind::kRandom:
      for (float& v : x) v = float(rng.Normal());
      break;
    case TileKind::kOutlier: {
      for (float& v : x) v = float(rng.Normal());
      const int oc = int(rng.Next() % uint64_t(D)), ot = int(rng.Next() % uint64_t(n));
      for (int t = 0; t < n; ++t) x[size_t(t) * D + oc] *= 30.0f;
      for (int d = 0; d < D; ++d) x[size_t(ot) * D + d] *= 30.0f;
      break;
    }
    case TileKind::kConstant:
      for (float& v : x) v = 1.7f;
      break;
    case TileKind::kZero:
      break;
    case TileKind::kTiny:
      for (float& v : x) v = float(0.05 * rng.Normal());
      break;
    case TileKind::kRealistic: {
      std::vector<double> scale(D), offset(D), tok(n, 1.0);
      for (int d = 0; d < D; ++d) {
        scale[d] = 0.5 + std::fabs(rng.HeavyTail());
        if (rng.Uniform() < 0.04) scale[d] *= 10.0 + 10.0 * rng.Uniform();
        offset[d] = 2.0 * rng.Normal();
      }
      for (int t = 0; t < n; ++t)
        if (rng.Uniform() < 0.05) tok[t] = 4.0 + 8.0 * rng.Uniform();
      for (int t = 0; t < n; ++t)
        for (int d = 0; d < D; ++d)
          x[size_t(t) * D + d] = float(tok[t] * (offset[d] + scale[d] * rng.HeavyTail() * 0.5));
      break;
    }
  }
  return x;
}

}  // namespace kvarn::testing
