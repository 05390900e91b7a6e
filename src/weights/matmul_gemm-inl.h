// Prefill matmul for batches of kMatMulGemmMinTokens tokens or more: each weight row is
// dequantized once per token block (DequantizeRow's SIMD kernel) and multiplied in f32 with a
// register tile of 3 rows x 4 tokens (12 FMA accumulators, 7 loads per 12 FMAs). x is used as
// given, without the q8 quantization of the integer kernels: prefill is bound by multiplies,
// and f32 FMAs are cheaper per product than the integer pair products plus one conversion and
// FMA per block.
// Per-target code included by matmul_simd.cc inside its foreach_target passes (Highway's -inl.h
// pattern: the guard toggles so each target's pass compiles it once).

#if defined(KVARN_WEIGHTS_MATMUL_GEMM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVARN_WEIGHTS_MATMUL_GEMM_INL_H_
#undef KVARN_WEIGHTS_MATMUL_GEMM_INL_H_
#else
#define KVARN_WEIGHTS_MATMUL_GEMM_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hwy/highway.h"
#include "weights/dequant_kernel.h"
#include "weights/matmul_kernel.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

#if HWY_TARGET != HWY_SCALAR

using DG = hn::CappedTag<float, 16>;
constexpr int kGemmRows = 3;  // rows per register tile

// out[r * kT + t] = sum_c w[r][c] * x[t][c] for kRows rows and kT tokens. Each output has one
// accumulator fed in column order, so its value does not depend on its tile neighbours.
template <int kRows, int kT>
HWY_INLINE void GemmTile(const float* const* w, const float* const* x, int64_t cols, float* out) {
  const DG d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<DG> acc[kRows][kT];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kT; ++t) acc[r][t] = hn::Zero(d);
  }
  int64_t c = 0;
  for (; c + n <= cols; c += n) {
    hn::Vec<DG> wv[kRows];
    for (int r = 0; r < kRows; ++r) wv[r] = hn::LoadU(d, w[r] + c);
    for (int t = 0; t < kT; ++t) {
      const auto xv = hn::LoadU(d, x[t] + c);
      for (int r = 0; r < kRows; ++r) acc[r][t] = hn::MulAdd(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kT; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(d, acc[r][t]));
      for (int64_t j = c; j < cols; ++j) sum += w[r][j] * x[t][j];  // f32/f16/bf16 tails
      out[r * kT + t] = sum;
    }
  }
}

// The full 3 x 4 tile with named accumulators (GCC keeps an accumulator array in memory,
// storing it every iteration): 12 accumulators, 7 loads per 12 FMAs. Same per-output operation
// order as GemmTile.
HWY_INLINE void GemmTile3x4(const float* const* w, const float* const* x, int64_t cols,
                            float* out) {
  const DG d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  auto a00 = hn::Zero(d), a01 = hn::Zero(d), a02 = hn::Zero(d), a03 = hn::Zero(d);
  auto a10 = hn::Zero(d), a11 = hn::Zero(d), a12 = hn::Zero(d), a13 = hn::Zero(d);
  auto a20 = hn::Zero(d), a21 = hn::Zero(d), a22 = hn::Zero(d), a23 = hn::Zero(d);
  const float *w0 = w[0], *w1 = w[1], *w2 = w[2];
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  int64_t c = 0;
  for (; c + n <= cols; c += n) {
    const auto v0 = hn::LoadU(d, w0 + c);
    const auto v1 = hn::LoadU(d, w1 + c);
    const auto v2 = hn::LoadU(d, w2 + c);
    auto xv = hn::LoadU(d, x0 + c);
    a00 = hn::MulAdd(v0, xv, a00);
    a10 = hn::MulAdd(v1, xv, a10);
    a20 = hn::MulAdd(v2, xv, a20);
    xv = hn::LoadU(d, x1 + c);
    a01 = hn::MulAdd(v0, xv, a01);
    a11 = hn::MulAdd(v1, xv, a11);
    a21 = hn::MulAdd(v2, xv, a21);
    xv = hn::LoadU(d, x2 + c);
    a02 = hn::MulAdd(v0, xv, a02);
    a12 = hn::MulAdd(v1, xv, a12);
    a22 = hn::MulAdd(v2, xv, a22);
    xv = hn::LoadU(d, x3 + c);
    a03 = hn::MulAdd(v0, xv, a03);
    a13 = hn::MulAdd(v1, xv, a13);
    a23 = hn::MulAdd(v2, xv, a23);
  }
  const hn::Vec<DG> acc[3][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}};
  for (int r = 0; r < 3; ++r) {
    for (int t = 0; t < 4; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(d, acc[r][t]));
      for (int64_t j = c; j < cols; ++j) sum += w[r][j] * x[t][j];
      out[r * 4 + t] = sum;
    }
  }
}

template <int kRows>
HWY_INLINE void GemmTileTokens(int n_tok, const float* const* w, const float* const* x,
                               int64_t cols, float* out) {
  switch (n_tok) {
    case 1:
      return GemmTile<kRows, 1>(w, x, cols, out);
    case 2:
      return GemmTile<kRows, 2>(w, x, cols, out);
    case 3:
      return GemmTile<kRows, 3>(w, x, cols, out);
    default:
      return GemmTile<kRows, 4>(w, x, cols, out);
  }
}

void GemmRows(const MatMulKernelArgs& a) {
  const PreparedActivations& act = *a.x;
  const int64_t cols = act.cols;
  // Tokens per block: their f32 x (block * cols * 4 bytes) should stay within ~256 KiB of cache
  // while every row of the range passes over them, but never fewer than 32: each row panel is
  // dequantized once per block, and with 4-token blocks (cols = 8960, ffn_down) dequantization
  // cost as much as the products (31% of a Qwen prefill profile). 32 tokens of x (1.1 MiB at
  // cols = 8960) stream from L3 at well under its bandwidth.
  const int64_t per_block =
      std::clamp<int64_t>((int64_t{256} << 10) / std::max<int64_t>(1, 4 * cols) / 4 * 4, 32, 64);
  std::vector<float> wbuf(static_cast<size_t>(kGemmRows * cols));
  const float* w[kGemmRows] = {wbuf.data(), wbuf.data() + cols, wbuf.data() + 2 * cols};
  for (int64_t t0 = 0; t0 < act.n_tok; t0 += per_block) {
    const int64_t t1 = std::min(act.n_tok, t0 + per_block);
    for (int64_t r = a.row_begin; r < a.row_end; r += kGemmRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kGemmRows, a.row_end - r));
      for (int i = 0; i < rows; ++i) {
        DequantizeRowSimd(a.type, a.w + static_cast<size_t>(r + i) * a.row_bytes, cols,
                          wbuf.data() + i * cols);
      }
      for (int64_t t = t0; t < t1; t += 4) {
        const int nt = static_cast<int>(std::min<int64_t>(4, t1 - t));
        const float* x[4] = {act.x + t * cols, act.x + t * cols, act.x + t * cols,
                             act.x + t * cols};  // entries past nt are never read
        for (int j = 0; j < nt; ++j) x[j] = act.x + (t + j) * cols;
        float out[kGemmRows * 4];
        if (rows == 3 && nt == 4) {
          GemmTile3x4(w, x, cols, out);
        } else if (rows == 3) {
          GemmTileTokens<3>(nt, w, x, cols, out);
        } else if (rows == 2) {
          GemmTileTokens<2>(nt, w, x, cols, out);
        } else {
          GemmTileTokens<1>(nt, w, x, cols, out);
        }
        for (int i = 0; i < rows; ++i) {
          for (int j = 0; j < nt; ++j) a.y[(t + j) * a.ldy + r + i] = out[i * nt + j];
        }
      }
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#endif  // KVARN_WEIGHTS_MATMUL_GEMM_INL_H_
