// MatMul/MatVec kernels against the double-precision reference, with error bounds derived from
// what the kernels compute (not tuned), on every SIMD target and awkward shapes; plus the
// determinism promises of matmul.h and the API's argument checks.
#include "weights/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/dispatch.h"
#include "weights/activations.h"
#include "weights/dequant.h"
#include "weights_test_util.h"

namespace kvarn {
namespace {

using weights_test::BlockSize;
using weights_test::ForEachSimdTarget;
using weights_test::kAllTypes;
using weights_test::kEps;
using weights_test::OffsetMagnitude;
using weights_test::RandomRows;
using weights_test::RandomVector;
using weights_test::RowBytes;
using weights_test::SameFloat;
using weights_test::TypeName;

struct Shape {
  int64_t rows, cols, n_tok;
};

// The worst-case error of the fast path against the exact product of the reference-dequantized
// weights with x, for output (t, r). Write each weight as w_i = a_i + o_i: o_i is the part the
// kernels apply apart from the code products (OffsetMagnitude: a min times the exact x sum, or a
// code offset times the x code sum), a_i the rest. Two parts:
//
// (a) Quantized types see x through its per-block q8 quantization (activations.h): every weight
//     part but the mins multiplies x^_i instead of x_i, so the output moves by at most
//     sum_i (|w_i| + |o_i|) |x^_i - x_i| (the test computes x^ exactly). Zero for float types.
//
// (b) fp32 rounding. Quantized types: every block's int32 dot product is exact, and converts
//     exactly unless |sum| >= 2^24 (q6_K, one rounding then); its scale d_w * d_x rounds once;
//     the FMAs into one accumulator lane are at most n_blocks sequential roundings; the mins' x
//     sums are 32-term f32 sums; then the lane reductions (<= 4 levels for 16 lanes) and the
//     final add. Each rounding is at most eps times a partial sum bounded by
//     M = sum_i ((|w_i| + |o_i|) |x^_i| + |o_i| |x_i|), so the error is at most
//     (n_blocks + 32 + 8) * eps * M, the 8 covering the conversions, scale products, reductions
//     and the reference's own rounding of its weights and result. Float types: two accumulators
//     of at least 4 lanes each, so at most cols / 8 sequential FMAs per lane, plus the scalar
//     tail (< 32 values) and reductions: (cols / 8 + 32 + 8) * eps * sum_i |w_i x_i|.
//
// Batches of kMatMulGemmMinTokens or more take the f32 prefill kernel for every type: weights
// dequantized exactly as the reference does, x as given (no part (a)), one accumulator of at least
// 4 lanes per output: (cols / 4 + 32 + 8) * eps * sum_i |w_i x_i|.
double ErrorBound(GgmlType type, const uint8_t* row, const float* w_row, const float* x,
                  const PreparedActivations& act, int64_t t, int64_t cols) {
  const bool gemm = act.n_tok >= kMatMulGemmMinTokens;
  const bool quantized = FindGgmlTypeInfo(type)->quantized && !gemm;
  double quant = 0.0, mag = 0.0;
  for (int64_t c = 0; c < cols; ++c) {
    const double w = std::fabs(static_cast<double>(w_row[c]));
    const double xv = std::fabs(static_cast<double>(x[c]));
    if (!quantized) {
      mag += w * xv;
      continue;
    }
    const double m = OffsetMagnitude(type, row, c);
    const double xq = static_cast<double>(DequantizedActivation(act, t, c));
    quant += (w + m) * std::fabs(xq - static_cast<double>(x[c]));
    mag += (w + m) * std::fabs(xq) + m * xv;
  }
  const double steps = quantized ? static_cast<double>(cols / kActBlock) + 40.0
                                 : static_cast<double>(cols) / (gemm ? 4.0 : 8.0) + 40.0;
  return quant + steps * kEps * mag;
}

// Runs MatMul (and, for one token, MatVec) on the current target and checks every output
// against the reference within ErrorBound. x_override replaces the random activations.
void CheckShape(GgmlType type, const Shape& s, uint64_t seed, const char* target,
                const std::vector<float>* x_override = nullptr) {
  const auto rows = RandomRows(type, s.rows, s.cols, seed, seed % 3);
  const WeightMatrix w{type, rows.data(), s.rows, s.cols};
  const std::vector<float> x =
      x_override != nullptr ? *x_override : RandomVector(s.n_tok * s.cols, seed + 1);
  std::vector<float> ref(static_cast<size_t>(s.n_tok * s.rows));
  std::vector<float> fast(ref.size(), NAN);
  ASSERT_TRUE(MatMulRowsRef(w, x.data(), s.n_tok, 0, s.rows, ref.data(), s.rows).ok());
  if (s.n_tok == 1) {
    ASSERT_TRUE(MatVec(w, x.data(), fast.data()).ok());
  } else {
    ASSERT_TRUE(MatMul(w, x.data(), s.n_tok, fast.data()).ok());
  }
  PreparedActivations act;
  ASSERT_TRUE(PrepareActivations(type, x.data(), s.n_tok, s.cols, &act).ok());
  std::vector<float> w_row(static_cast<size_t>(s.cols));
  for (int64_t r = 0; r < s.rows; ++r) {
    const uint8_t* row = w.row(r);
    ASSERT_TRUE(DequantizeRowRef(type, row, s.cols, w_row.data()).ok());
    for (int64_t t = 0; t < s.n_tok; ++t) {
      const double bound =
          ErrorBound(type, row, w_row.data(), x.data() + t * s.cols, act, t, s.cols);
      const size_t i = static_cast<size_t>(t * s.rows + r);
      ASSERT_LE(std::fabs(static_cast<double>(fast[i]) - ref[i]), bound)
          << TypeName(type) << " on " << target << ": rows " << s.rows << " cols " << s.cols
          << " n_tok " << s.n_tok << " at t=" << t << " r=" << r << " fast " << fast[i] << " ref "
          << ref[i];
    }
  }
}

TEST(MatMul, MatchesReferenceAcrossShapesAndTargets) {
  ForEachSimdTarget([](const char* target) {
    for (GgmlType type : kAllTypes) {
      const int64_t bs = BlockSize(type);
      for (int64_t rows : {1, 3, 17, 64}) {
        for (int64_t blocks : {int64_t{1}, int64_t{2}, int64_t{3}, 2048 / bs + 1}) {
          for (int64_t n_tok : {1, 2, 5, 16}) {
            // The largest shapes are the slow part of the reference; one token count suffices
            // for their long-accumulation coverage.
            if (blocks > 3 && rows == 64 && n_tok > 5) continue;
            const Shape s{rows, blocks * bs, n_tok};
            CheckShape(type, s, static_cast<uint64_t>(rows * 1000 + blocks * 10 + n_tok), target);
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
      }
    }
  });
}

// Activations that q8 quantization represents exactly (per block: integers in [-127, 127]
// times a power of two, one of them +-127), so bound (a) is 0 and the comparison checks the
// kernels' code decoding and scale bookkeeping to within fp32 rounding alone: any misplaced
// code or scale would be off by a sizeable fraction of the output.
TEST(MatMul, ExactOnQ8RepresentableActivations) {
  ForEachSimdTarget([](const char* target) {
    for (GgmlType type : kAllTypes) {
      if (!FindGgmlTypeInfo(type)->quantized) continue;
      const int64_t cols = 3 * BlockSize(type) + (BlockSize(type) == 32 ? 32 : 256);
      const int64_t n_tok = 5;
      Rng rng(42);
      std::vector<float> x(static_cast<size_t>(n_tok * cols));
      for (int64_t b = 0; b < n_tok * cols / 32; ++b) {
        const float step = std::ldexp(1.0f, static_cast<int>(rng.Next() % 12) - 8);
        for (int i = 0; i < 32; ++i) {
          const int code = static_cast<int>(rng.Next() % 255) - 127;
          x[static_cast<size_t>(32 * b + i)] = step * static_cast<float>(code);
        }
        x[static_cast<size_t>(32 * b + rng.Next() % 32)] =
            ((rng.Next() & 1) ? -127.0f : 127.0f) * step;
      }
      PreparedActivations act;
      ASSERT_TRUE(PrepareActivations(type, x.data(), n_tok, cols, &act).ok());
      for (int64_t c = 0; c < n_tok * cols; ++c) {
        ASSERT_EQ(DequantizedActivation(act, c / cols, c % cols), x[static_cast<size_t>(c)]);
      }
      CheckShape(type, {9, cols, n_tok}, 5, target, &x);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// matmul.h: a token's outputs do not depend on the thread count, the row range, or whether it
// was computed by MatVec or inside a MatMul tile.
TEST(MatMul, DeterministicAcrossThreadsRangesAndTiles) {
  for (GgmlType type : kAllTypes) {
    // 7 tokens: the integer kernels, which MatVec shares; the GEMM batch has its own test.
    const int64_t rows = 37, cols = 2 * BlockSize(type) + (BlockSize(type) == 1 ? 5 : 0), n_tok = 7;
    static_assert(7 < kMatMulGemmMinTokens, "n_tok must stay below the GEMM path");
    const auto data = RandomRows(type, rows, cols, 9);
    const WeightMatrix w{type, data.data(), rows, cols};
    const std::vector<float> x = RandomVector(n_tok * cols, 10);
    std::vector<float> base(static_cast<size_t>(n_tok * rows));
    ASSERT_TRUE(MatMul(w, x.data(), n_tok, base.data(), 1).ok());
    for (int threads : {2, 3, 8}) {
      std::vector<float> y(base.size());
      ASSERT_TRUE(MatMul(w, x.data(), n_tok, y.data(), threads).ok());
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(SameFloat(y[i], base[i])) << TypeName(type) << " threads " << threads;
      }
    }
    for (int64_t t = 0; t < n_tok; ++t) {
      std::vector<float> y(static_cast<size_t>(rows));
      ASSERT_TRUE(MatVec(w, x.data() + t * cols, y.data(), 2).ok());
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_TRUE(SameFloat(y[r], base[t * rows + r])) << TypeName(type) << " t " << t;
      }
    }
    // A row range writes exactly its rows.
    PreparedActivations act;
    ASSERT_TRUE(PrepareActivations(type, x.data(), n_tok, cols, &act).ok());
    std::vector<float> y(base.size(), -3.0f);
    ASSERT_TRUE(MatMulRows(w, act, 5, 19, y.data(), rows).ok());
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float v = y[t * rows + r];
        if (r >= 5 && r < 19) {
          ASSERT_TRUE(SameFloat(v, base[t * rows + r]));
        } else {
          ASSERT_EQ(v, -3.0f);
        }
      }
    }
  }
}

// MatMulRoute::kPerToken keeps batches of any size on the per-token kernels: 21 tokens (more
// than one token block of 16, and past kMatMulGemmMinTokens) give each token exactly what
// MatVec gives it alone, on every target and thread count, while kAuto takes the prefill kernel.
TEST(MatMul, PerTokenRouteEqualsMatVecForAnyCount) {
  ForEachSimdTarget([&](const char* target) {
    for (GgmlType type : kAllTypes) {
      const int64_t rows = 29, cols = 2 * BlockSize(type) + (BlockSize(type) == 1 ? 3 : 0);
      const int64_t n_tok = 21;
      static_assert(21 > kMatMulGemmMinTokens, "n_tok must reach the prefill kernel under kAuto");
      const auto data = RandomRows(type, rows, cols, 31);
      const WeightMatrix w{type, data.data(), rows, cols};
      const std::vector<float> x = RandomVector(n_tok * cols, 32);
      for (int threads : {1, 3}) {
        std::vector<float> y(static_cast<size_t>(n_tok * rows));
        ASSERT_TRUE(MatMul(w, x.data(), n_tok, y.data(), threads, MatMulRoute::kPerToken).ok());
        for (int64_t t = 0; t < n_tok; ++t) {
          std::vector<float> alone(static_cast<size_t>(rows));
          ASSERT_TRUE(MatVec(w, x.data() + t * cols, alone.data(), 1).ok());
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_TRUE(SameFloat(y[t * rows + r], alone[r]))
                << TypeName(type) << " on " << target << ", token " << t << ", row " << r;
        }
      }
    }
  });
}

// The prefill kernel's outputs do not depend on the thread count or the row range either.
TEST(MatMul, GemmDeterministicAcrossThreadsAndRanges) {
  for (GgmlType type : kAllTypes) {
    const int64_t rows = 23, cols = 2 * BlockSize(type) + (BlockSize(type) == 1 ? 7 : 0);
    const int64_t n_tok = kMatMulGemmMinTokens + 5;
    const auto data = RandomRows(type, rows, cols, 19);
    const WeightMatrix w{type, data.data(), rows, cols};
    const std::vector<float> x = RandomVector(n_tok * cols, 20);
    std::vector<float> base(static_cast<size_t>(n_tok * rows));
    ASSERT_TRUE(MatMul(w, x.data(), n_tok, base.data(), 1).ok());
    for (int threads : {2, 3, 5}) {
      std::vector<float> y(base.size());
      ASSERT_TRUE(MatMul(w, x.data(), n_tok, y.data(), threads).ok());
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(SameFloat(y[i], base[i])) << TypeName(type) << " threads " << threads;
      }
    }
    PreparedActivations act;
    ASSERT_TRUE(PrepareActivations(type, x.data(), n_tok, cols, &act).ok());
    std::vector<float> y(base.size(), -3.0f);
    ASSERT_TRUE(MatMulRows(w, act, 3, 12, y.data(), rows).ok());
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        if (r >= 3 && r < 12) {
          ASSERT_TRUE(SameFloat(y[t * rows + r], base[t * rows + r])) << TypeName(type);
        } else {
          ASSERT_EQ(y[t * rows + r], -3.0f);
        }
      }
    }
  }
}

TEST(MatMul, ForceReferenceRunsTheReference) {
  const int64_t rows = 6, cols = 512;
  const auto data = RandomRows(GgmlType::kQ6_K, rows, cols, 12);
  const WeightMatrix w{GgmlType::kQ6_K, data.data(), rows, cols};
  const std::vector<float> x = RandomVector(cols, 13);
  std::vector<float> ref(rows), forced(rows);
  ASSERT_TRUE(MatMulRowsRef(w, x.data(), 1, 0, rows, ref.data(), rows).ok());
  SetForceReference(true);
  const Status s = MatVec(w, x.data(), forced.data());
  SetForceReference(false);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(ref, forced);
}

TEST(MatMul, ChecksArguments) {
  const auto data = RandomRows(GgmlType::kQ4_0, 4, 64, 1);
  const WeightMatrix w{GgmlType::kQ4_0, data.data(), 4, 64};
  const std::vector<float> x = RandomVector(64, 2);
  std::vector<float> y(4);
  PreparedActivations act;
  ASSERT_TRUE(PrepareActivations(GgmlType::kQ8_0, x.data(), 1, 64, &act).ok());
  EXPECT_EQ(MatMulRows(w, act, 0, 4, y.data(), 4).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(PrepareActivations(GgmlType::kQ4_0, x.data(), 1, 64, &act).ok());
  EXPECT_EQ(MatMulRows(w, act, 3, 2, y.data(), 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MatMulRows(w, act, 0, 5, y.data(), 4).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(MatMulRows(w, act, 2, 2, y.data(), 4).ok());
  EXPECT_EQ(PrepareActivations(GgmlType::kQ4_K, x.data(), 1, 64, &act).code(),
            StatusCode::kInvalidArgument);
  const WeightMatrix bad{GgmlType::kQ4_0, data.data(), 4, 48};
  EXPECT_EQ(MatVec(bad, x.data(), y.data()).code(), StatusCode::kInvalidArgument);
  const WeightMatrix null_data{GgmlType::kQ4_0, nullptr, 4, 64};
  EXPECT_EQ(MatVec(null_data, x.data(), y.data()).code(), StatusCode::kInvalidArgument);
}

// A decode loop reuses one PreparedActivations for matrices of different widths: leftovers of
// a larger preparation must not leak into a smaller one (the kernels read 8-block groups).
TEST(Activations, ReusedBuffersGiveFreshResults) {
  PreparedActivations act;
  const std::vector<float> big = RandomVector(3 * 512, 31);
  ASSERT_TRUE(PrepareActivations(GgmlType::kQ4_1, big.data(), 3, 512, &act).ok());
  for (GgmlType type : {GgmlType::kQ4_1, GgmlType::kQ6_K, GgmlType::kQ5_0}) {
    const int64_t rows = 5, cols = type == GgmlType::kQ6_K ? 256 : 96;
    const auto data = RandomRows(type, rows, cols, 32);
    const WeightMatrix w{type, data.data(), rows, cols};
    const std::vector<float> x = RandomVector(cols, 33);
    std::vector<float> fresh(rows), reused(rows);
    ASSERT_TRUE(MatVec(w, x.data(), fresh.data()).ok());
    ASSERT_TRUE(PrepareActivations(type, x.data(), 1, cols, &act).ok());
    ASSERT_TRUE(MatMulPrepared(w, act, reused.data()).ok());
    for (int64_t r = 0; r < rows; ++r) ASSERT_TRUE(SameFloat(fresh[r], reused[r])) << r;
  }
}

TEST(Activations, QuantizationErrorIsHalfAStep) {
  const int64_t cols = 96;
  std::vector<float> x = RandomVector(cols, 3);
  x[40] = 0.0f;
  for (int i = 64; i < 96; ++i) x[static_cast<size_t>(i)] = 0.0f;  // an all-zero block
  PreparedActivations act;
  ASSERT_TRUE(PrepareActivations(GgmlType::kQ8_0, x.data(), 1, cols, &act).ok());
  for (int64_t c = 0; c < cols; ++c) {
    const float d = act.token_scales(0)[c / 32];
    // |x - d * round(x / d)| <= d / 2, plus the few ulps of forming 1/d and x * (1/d).
    EXPECT_LE(std::fabs(DequantizedActivation(act, 0, c) - x[static_cast<size_t>(c)]),
              d * (0.5 + 4 * kEps * 127))
        << c;
  }
  EXPECT_EQ(act.token_scales(0)[2], 0.0f);
  EXPECT_EQ(DequantizedActivation(act, 0, 70), 0.0f);
  for (int64_t b = act.n_blocks; b < act.block_stride; ++b) {
    EXPECT_EQ(act.token_scales(0)[b], 0.0f);
    EXPECT_EQ(act.token_sums(0)[b], 0.0f);
  }
}

}  // namespace
}  // namespace kvarn
