// Tests of the distortion statistics and the paper's magnitude/direction key error split.
#include "quant/distortion.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "quant/ggml_blocks.h"

namespace kvarn {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = 0x1p-52;  // double epsilon

std::vector<float> RandomVector(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.Normal());
  return v;
}

// ---- MeasureDistortion -----------------------------------------------------------------------

TEST(MeasureDistortion, IdenticalInputs) {
  const std::vector<float> x = RandomVector(300, 1);
  const Distortion d = MeasureDistortion(x.data(), x.data(), x.size());
  EXPECT_EQ(d.n, 300u);
  EXPECT_EQ(d.mse, 0.0);
  EXPECT_EQ(d.snr_db, kInf);
  // cos = |x|^2 / (|x| |x|): the same sum, so at most a rounding of the sqrt product away.
  EXPECT_NEAR(d.cosine, 1.0, 4 * kEps);
  EXPECT_EQ(d.max_abs_err, 0.0);
}

TEST(MeasureDistortion, ZeroVectorConventions) {
  const std::vector<float> zero(8, 0.0f), one(8, 1.0f);
  Distortion d = MeasureDistortion(zero.data(), zero.data(), 8);
  EXPECT_EQ(d.cosine, 1.0);  // two zero vectors count as aligned
  EXPECT_EQ(d.snr_db, kInf);
  EXPECT_EQ(d.mse, 0.0);
  d = MeasureDistortion(zero.data(), one.data(), 8);  // all noise
  EXPECT_EQ(d.cosine, 0.0);
  EXPECT_EQ(d.snr_db, -kInf);
  EXPECT_EQ(d.mse, 1.0);
  d = MeasureDistortion(one.data(), zero.data(), 8);
  EXPECT_EQ(d.cosine, 0.0);
  EXPECT_EQ(d.snr_db, 0.0);  // sum ref^2 == sum err^2
  d = MeasureDistortion(nullptr, nullptr, 0);
  EXPECT_EQ(d.n, 0u);
  EXPECT_EQ(d.mse, 0.0);
  EXPECT_EQ(d.cosine, 1.0);
  EXPECT_EQ(d.snr_db, kInf);
}

TEST(MeasureDistortion, HandComputedCases) {
  {
    // ref (3, 4), test (3, 0): err (0, 4). mse = 16/2 = 8; snr = 10 log10(25/16) = 1.938200260;
    // cos = 9 / (5 * 3) = 0.6; max err 4.
    const float ref[] = {3, 4}, test[] = {3, 0};
    const Distortion d = MeasureDistortion(ref, test, 2);
    EXPECT_EQ(d.mse, 8.0);
    EXPECT_NEAR(d.snr_db, 1.9382002601611283, 1e-14);
    EXPECT_NEAR(d.cosine, 0.6, 2 * kEps);
    EXPECT_EQ(d.max_abs_err, 4.0);
  }
  {
    // Orthogonal unit vectors: cos 0, err^2 = 2, snr = 10 log10(1/2) = -3.010299957.
    const float ref[] = {1, 0}, test[] = {0, 1};
    const Distortion d = MeasureDistortion(ref, test, 2);
    EXPECT_EQ(d.cosine, 0.0);
    EXPECT_EQ(d.mse, 1.0);
    EXPECT_NEAR(d.snr_db, -3.0102999566398120, 1e-14);
    EXPECT_EQ(d.max_abs_err, 1.0);
  }
  {
    // Negation: cos -1; err (2, 4, 6): sum 56, mse 56/3, snr = 10 log10(14/56) = -6.020599913.
    const float ref[] = {1, 2, 3}, test[] = {-1, -2, -3};
    const Distortion d = MeasureDistortion(ref, test, 3);
    EXPECT_NEAR(d.cosine, -1.0, 2 * kEps);
    EXPECT_GE(d.cosine, -1.0);  // clamped, never past -1
    EXPECT_NEAR(d.mse, 56.0 / 3.0, 2 * kEps * 56.0 / 3.0);
    EXPECT_NEAR(d.snr_db, -6.0205999132796240, 1e-14);
    EXPECT_EQ(d.max_abs_err, 6.0);
  }
}

// ---- KeyErrorSplit ---------------------------------------------------------------------------

// ||k - kq||^2 per token, summed in double from the differences directly.
std::vector<double> DirectSquaredError(const std::vector<float>& k, const std::vector<float>& kq,
                                       int n, int D) {
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < D; ++j) {
      const size_t i = static_cast<size_t>(t) * D + j;
      const double e = static_cast<double>(k[i]) - kq[i];
      out[static_cast<size_t>(t)] += e * e;
    }
  }
  return out;
}

double Norm(const float* v, int D) {
  double s = 0.0;
  for (int j = 0; j < D; ++j) s += static_cast<double>(v[j]) * v[j];
  return std::sqrt(s);
}

TEST(KeyErrorSplit, SumsToTheTotalSquaredError) {
  constexpr int kN = 64, kD = 128;
  const std::vector<float> k = RandomVector(kN * kD, 11);
  // Errors from large (q4_0) to tiny (relative perturbations of 1e-4 and 1e-7, about one fp32
  // ulp), where E_D = 2(|K||Kq| - <K,Kq>) or E_M = (|K| - |Kq|)^2 from separately rounded norms
  // would cancel (relative errors ~1e-9 and worse at 1e-7).
  for (int variant = 0; variant < 4; ++variant) {
    std::vector<float> kq(k.size());
    if (variant < 2) {
      const CodecKind kind = variant == 0 ? CodecKind::kQ4_0 : CodecKind::kQ8_0;
      std::vector<uint8_t> row(GgmlRowBytes(kind, kD));
      for (int t = 0; t < kN; ++t) {
        QuantizeRowRef(kind, k.data() + t * kD, kD, row.data());
        DequantizeRowRef(kind, row.data(), kD, kq.data() + t * kD);
      }
    } else {
      const double scale = variant == 2 ? 1e-4 : 1e-7;
      Rng rng(5);
      for (size_t i = 0; i < k.size(); ++i) {
        kq[i] = k[i] * static_cast<float>(1.0 + scale * rng.Normal());
      }
    }
    std::vector<double> e_m(kN), e_d(kN);
    KeyErrorSplit(k.data(), kq.data(), kN, kD, e_m.data(), e_d.data());
    const std::vector<double> direct = DirectSquaredError(k, kq, kN, kD);
    for (int t = 0; t < kN; ++t) {
      ASSERT_GT(direct[t], 0.0);
      EXPECT_GE(e_m[t], 0.0);
      EXPECT_GE(e_d[t], 0.0);
      // Both sides are sums of D non-negative, non-cancelling terms built from exact
      // differences: each within ~2 D eps relative of exact, so 4 D eps (1.1e-13; the spec
      // asks for 1e-9).
      EXPECT_NEAR(e_m[t] + e_d[t], direct[t], 4 * kD * kEps * direct[t])
          << "variant " << variant << " token " << t;
    }
  }
}

TEST(KeyErrorSplit, PureScalingIsAllMagnitudeError) {
  // K entries are multiples of 1/64 below 16, so 1.5 K is exact in fp32: a pure scaling.
  constexpr int kN = 16, kD = 128;
  Rng rng(3);
  std::vector<float> k(kN * kD), kq(kN * kD);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>(static_cast<int>(rng.Next() % 2001) - 1000) / 64.0f;
    kq[i] = 1.5f * k[i];
    ASSERT_EQ(static_cast<double>(kq[i]), 1.5 * k[i]);
  }
  std::vector<double> e_m(kN), e_d(kN);
  KeyErrorSplit(k.data(), kq.data(), kN, kD, e_m.data(), e_d.data());
  for (int t = 0; t < kN; ++t) {
    const double na = Norm(k.data() + t * kD, kD);
    // ||K|| - ||Kq|| = -0.5 ||K||: sums of D terms (relative error <= D eps) and a division,
    // so E_M = 0.25 ||K||^2 to 4 D eps relative (the 2 of squaring included).
    EXPECT_NEAR(e_m[t], 0.25 * na * na, 4 * kD * kEps * 0.25 * na * na) << t;
    // Direction error is rounding only: ||K|| - ||Kq|| carries <= ~2 D eps relative error, which
    // leaves a residual of that relative size after rescaling K, so E_D <= |K| |Kq| (4 D eps)^2.
    const double bound = na * 1.5 * na * (4 * kD * kEps) * (4 * kD * kEps);
    EXPECT_LE(e_d[t], bound) << t;
  }
}

TEST(KeyErrorSplit, PureRotationIsAllDirectionError) {
  // Rotating coordinate pairs by 90 degrees, (a, b) -> (-b, a), is exact in fp32 and keeps
  // the norm. Rotating every pair makes Kq orthogonal to K (cos 0): E_D = 2 |K|^2. Rotating
  // only the first pair gives cos = 1 - (a^2 + b^2)/|K|^2, E_D = 2 (a^2 + b^2).
  constexpr int kN = 8, kD = 64;
  const std::vector<float> k = RandomVector(kN * kD, 21);
  for (bool all_pairs : {true, false}) {
    std::vector<float> kq = k;
    for (int t = 0; t < kN; ++t) {
      for (int j = 0; j < (all_pairs ? kD : 2); j += 2) {
        const size_t i = static_cast<size_t>(t) * kD + j;
        kq[i] = -k[i + 1];
        kq[i + 1] = k[i];
      }
    }
    std::vector<double> e_m(kN), e_d(kN);
    KeyErrorSplit(k.data(), kq.data(), kN, kD, e_m.data(), e_d.data());
    const std::vector<double> direct = DirectSquaredError(k, kq, kN, kD);
    for (int t = 0; t < kN; ++t) {
      const double na = Norm(k.data() + t * kD, kD);
      // ||K||^2 - ||Kq||^2 is summed from exact per-pair terms that cancel; allow the general
      // bound anyway: the sums differ by <= 2 D eps ||K||^2, so E_M <= (D eps ||K||)^2.
      EXPECT_LE(e_m[t], (kD * kEps * na) * (kD * kEps * na)) << t;
      // E_D and the direct sum are each within ~2 D eps relative of exact; 1e-12 > 4 D eps.
      EXPECT_NEAR(e_d[t], direct[t], 1e-12 * direct[t]) << t;
      if (all_pairs) {
        EXPECT_NEAR(e_d[t], 2 * na * na, 1e-12 * na * na) << t;
      }
    }
  }
}

TEST(KeyErrorSplit, ZeroVectors) {
  // A zero vector has no direction: all of the error is magnitude error.
  const float k[4] = {0, 0, 0, 0}, kq[4] = {1, 2, 2, 0};  // |Kq| = 3
  double e_m = -1, e_d = -1;
  KeyErrorSplit(k, kq, 1, 4, &e_m, &e_d);
  EXPECT_EQ(e_m, 9.0);
  EXPECT_EQ(e_d, 0.0);
  KeyErrorSplit(kq, k, 1, 4, &e_m, &e_d);
  EXPECT_EQ(e_m, 9.0);
  EXPECT_EQ(e_d, 0.0);
  KeyErrorSplit(k, k, 1, 4, &e_m, &e_d);
  EXPECT_EQ(e_m, 0.0);
  EXPECT_EQ(e_d, 0.0);
}

TEST(KeyErrorSplit, HandComputedToken) {
  // K = (3, 4), Kq = (0, 4): |K| = 5, |Kq| = 4, cos = 16/20 = 0.8.
  // E_M = (5 - 4)^2 = 1; E_D = 2 * 5 * 4 * (1 - 0.8) = 8; total |(3, 0)|^2 = 9.
  const float k[2] = {3, 4}, kq[2] = {0, 4};
  double e_m = 0, e_d = 0;
  KeyErrorSplit(k, kq, 1, 2, &e_m, &e_d);
  EXPECT_EQ(e_m, 1.0);
  EXPECT_NEAR(e_d, 8.0, 8 * 8 * kEps);
}

// ---- SummarizeKeyError -----------------------------------------------------------------------

TEST(SummarizeKeyError, HandComputedShares) {
  // Ten tokens; E_T = E_M + E_D: token 3: 10 (E_M 8), token 7: 6 (E_M 0), token 0: 4 (E_M 4),
  // the rest 1 (E_M 0.25). Ranked: 3, 7, 0, then 1, 2, 4, 5, 6, 8, 9 (ties keep token order).
  std::vector<double> e_m(10, 0.25), e_d(10, 0.75);
  e_m[3] = 8, e_d[3] = 2;
  e_m[7] = 0, e_d[7] = 6;
  e_m[0] = 4, e_d[0] = 0;
  KeyErrorSummary s;
  ASSERT_TRUE(
      SummarizeKeyError(e_m.data(), e_d.data(), 10, {0.001, 0.1, 0.2, 0.3, 0.5, 1.0}, &s).ok());
  ASSERT_EQ(s.top.size(), 6u);
  // q = 0.001: ceil(0.01) = 1 token (token 3): 8/10.
  EXPECT_EQ(s.top[0].tokens, 1u);
  EXPECT_DOUBLE_EQ(s.top[0].magnitude_share, 0.8);
  EXPECT_EQ(s.top[1].tokens, 1u);  // 0.1 * 10 = 1
  EXPECT_DOUBLE_EQ(s.top[1].magnitude_share, 0.8);
  EXPECT_EQ(s.top[2].tokens, 2u);  // tokens 3, 7: 8 / 16
  EXPECT_DOUBLE_EQ(s.top[2].magnitude_share, 0.5);
  EXPECT_EQ(s.top[3].tokens, 3u);  // tokens 3, 7, 0: 12 / 20
  EXPECT_DOUBLE_EQ(s.top[3].magnitude_share, 0.6);
  EXPECT_EQ(s.top[4].tokens, 5u);  // + two 1s: 12.5 / 22
  EXPECT_DOUBLE_EQ(s.top[4].magnitude_share, 12.5 / 22.0);
  EXPECT_EQ(s.top[5].tokens, 10u);  // all: (12 + 7 * 0.25) / (20 + 7)
  EXPECT_DOUBLE_EQ(s.top[5].magnitude_share, 13.75 / 27.0);
  // mean | ||K|| - ||Kq|| | = mean sqrt(E_M) = (sqrt(8) + 0 + 2 + 7 * 0.5) / 10.
  EXPECT_DOUBLE_EQ(s.mean_abs_norm_err, (std::sqrt(8.0) + 2.0 + 3.5) / 10.0);
}

TEST(SummarizeKeyError, FractionTimesCountJustAboveAnInteger) {
  // 0.07 * 100 is 7.000000000000001 and 0.55 * 100 is 55.00000000000001 in double; they mean
  // 7 and 55 tokens, not 8 and 56.
  std::vector<double> e_m(100, 1.0), e_d(100, 1.0);
  KeyErrorSummary s;
  ASSERT_TRUE(SummarizeKeyError(e_m.data(), e_d.data(), 100, {0.07, 0.55}, &s).ok());
  EXPECT_EQ(s.top[0].tokens, 7u);
  EXPECT_EQ(s.top[1].tokens, 55u);
}

TEST(SummarizeKeyError, TiesKeepTokenOrder) {
  // Every token has E_T = 1 exactly (i/1024 + (1024 - i)/1024) but a different E_M, so the
  // share of the top 10 tokens depends on which 10 are taken: tokens 0..9 by the tie rule.
  constexpr size_t kN = 1000;
  std::vector<double> e_m(kN), e_d(kN);
  for (size_t i = 0; i < kN; ++i) {
    e_m[i] = static_cast<double>(i) / 1024.0;
    e_d[i] = static_cast<double>(1024 - i) / 1024.0;
  }
  KeyErrorSummary s;
  ASSERT_TRUE(SummarizeKeyError(e_m.data(), e_d.data(), kN, {0.01}, &s).ok());
  EXPECT_EQ(s.top[0].tokens, 10u);
  EXPECT_DOUBLE_EQ(s.top[0].magnitude_share, (45.0 / 1024.0) / 10.0);  // sum of 0..9 / 1024
}

TEST(SummarizeKeyError, DefaultFractionsOnAThousandTokens) {
  // Decimal fractions times 1000 must give whole token counts: 1, 10, 50, 100, 500.
  std::vector<double> e_m(1000), e_d(1000);
  for (size_t i = 0; i < 1000; ++i) {
    e_m[i] = static_cast<double>(i);
    e_d[i] = 1.0;
  }
  KeyErrorSummary s;
  ASSERT_TRUE(SummarizeKeyError(e_m.data(), e_d.data(), 1000, DefaultKeyErrorFractions(), &s).ok());
  const size_t expected[] = {1, 10, 50, 100, 500};
  ASSERT_EQ(s.top.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(s.top[i].tokens, expected[i]) << i;
  // Top token is 999: share 999 / 1000.
  EXPECT_DOUBLE_EQ(s.top[0].magnitude_share, 999.0 / 1000.0);
}

TEST(SummarizeKeyError, ZeroErrorAndEmptyInput) {
  std::vector<double> zeros(4, 0.0);
  KeyErrorSummary s;
  ASSERT_TRUE(SummarizeKeyError(zeros.data(), zeros.data(), 4, {0.5}, &s).ok());
  EXPECT_EQ(s.top[0].tokens, 2u);
  EXPECT_EQ(s.top[0].magnitude_share, 0.0);
  EXPECT_EQ(s.mean_abs_norm_err, 0.0);
  ASSERT_TRUE(SummarizeKeyError(nullptr, nullptr, 0, {0.5}, &s).ok());
  EXPECT_EQ(s.top[0].tokens, 0u);
  EXPECT_EQ(s.mean_abs_norm_err, 0.0);
}

TEST(SummarizeKeyError, RejectsFractionsOutsideUnitInterval) {
  const double e[2] = {1, 2};
  KeyErrorSummary s;
  for (double bad : {0.0, -0.1, 1.5, std::nan("")}) {
    const Status st = SummarizeKeyError(e, e, 2, {0.5, bad}, &s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("fraction"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvarn
