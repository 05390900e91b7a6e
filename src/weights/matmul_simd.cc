// Highway SIMD kernels for MatMulRows (matmul.h), dispatched at runtime to the best target.
//
// Quantized weights take llama.cpp's integer route: x arrives quantized per 32-value block to
// int8 codes (activations.h). Weight codes are unpacked to unsigned bytes in value order, and
// multiplied with the x codes by pmaddubsw (u8 x i8 products summed in pairs to i16; every bound
// below keeps those sums < 2^15, so it never saturates) and pmaddwd (i16 pairs to i32, by 1 or by
// a sub-block scale). Each 32-value block then adds one fp32 FMA: float(int32 sum) times
// (weight scale * x scale). Fixed code offsets (q4_0's -8, q5_0's -16, q6_K's -32) and additive
// mins are applied per 8 blocks with the x code sums or x sums: one vector FMA each.
//
// Lanes: a logical 32-byte vector holds one block's codes. Targets with 256-bit vectors (or
// wider, capped) use one; 128-bit targets two chunks of 16 (o = 0, 16). The integer sums are
// exact, so the chunking cannot change a result; the fp32 operations per token are the same
// sequence for every tile size, which is why MatVec and a MatMul row agree bit for bit.
//
// Float weights (f32, f16, bf16): two f32 FMA accumulators per token over x as given.
// Batches of kMatMulGemmMinTokens or more go to the f32 prefill kernel (matmul_gemm-inl.h),
// unless the caller asked for the per-token route (MatMulRoute::kPerToken).
// Kernel code lives in per-target -inl.h headers: matmul_int (shared integer pieces),
// matmul_q32 (32-value formats), matmul_kquant (k-quants), matmul_gemm (prefill).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "weights/activations.h"
#include "weights/kquant_blocks.h"
#include "weights/matmul.h"
#include "weights/matmul_kernel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "weights/matmul_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "weights/f16_simd-inl.h"
#include "weights/matmul_gemm-inl.h"
#include "weights/matmul_int-inl.h"
#include "weights/matmul_kquant-inl.h"
#include "weights/matmul_q32-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// Internal linkage: other SIMD files define their own helpers in the same per-target namespaces.
namespace {

#if HWY_TARGET != HWY_SCALAR

// ---------------------------------------------------------------- float weights

using DFF = hn::CappedTag<float, 16>;

template <GgmlType kType>
HWY_INLINE hn::Vec<DFF> LoadWeights(const uint8_t* row, int64_t i) {
  const DFF df;
  if constexpr (kType == GgmlType::kF32) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + i);
  } else if constexpr (kType == GgmlType::kF16) {
    return F16ToF32Vec(df, reinterpret_cast<const uint16_t*>(row) + i);
  } else {
    const hn::Rebind<hwy::bfloat16_t, DFF> dbf;
    return hn::PromoteTo(df, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(row) + i));
  }
}

float ScalarWeight(GgmlType type, const uint8_t* row, int64_t i) {
  if (type == GgmlType::kF32) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
  if (type == GgmlType::kF16) return weights_simd::F16ToF32Scalar(row + 2 * i);
  return BitsFloat(static_cast<uint32_t>(Load16(row + 2 * i)) << 16);
}

template <GgmlType kType, int kT>
void RowFloat(const uint8_t* row, int64_t cols, const float* const* x, float* out) {
  const DFF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<DFF> acc0[kT], acc1[kT];
  for (int t = 0; t < kT; ++t) acc0[t] = acc1[t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * n <= cols; i += 2 * n) {
    const auto w0 = LoadWeights<kType>(row, i);
    const auto w1 = LoadWeights<kType>(row, i + n);
    for (int t = 0; t < kT; ++t) {
      acc0[t] = hn::MulAdd(w0, hn::LoadU(df, x[t] + i), acc0[t]);
      acc1[t] = hn::MulAdd(w1, hn::LoadU(df, x[t] + i + n), acc1[t]);
    }
  }
  if (i + n <= cols) {
    const auto w0 = LoadWeights<kType>(row, i);
    for (int t = 0; t < kT; ++t) acc0[t] = hn::MulAdd(w0, hn::LoadU(df, x[t] + i), acc0[t]);
    i += n;
  }
  for (int t = 0; t < kT; ++t) {
    float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[t], acc1[t])));
    for (int64_t j = i; j < cols; ++j) sum += ScalarWeight(kType, row, j) * x[t][j];
    out[t] = sum;
  }
}

// ---------------------------------------------------------------- dispatch over formats

template <int kT>
void RowKernel(GgmlType type, const uint8_t* row, int64_t cols, const TokenX* tx,
               const float* const* x, float* out) {
  const int64_t nb = cols / kActBlock;
  const int64_t nsb = cols / kQK_K;
  switch (type) {
    case GgmlType::kF32:
      return RowFloat<GgmlType::kF32, kT>(row, cols, x, out);
    case GgmlType::kF16:
      return RowFloat<GgmlType::kF16, kT>(row, cols, x, out);
    case GgmlType::kBF16:
      return RowFloat<GgmlType::kBF16, kT>(row, cols, x, out);
    case GgmlType::kQ8_0:
      return RowBlocks32<FormatQ8_0, kT>(row, nb, tx, out);
    case GgmlType::kQ4_0:
      return RowBlocks32<FormatQ4_0, kT>(row, nb, tx, out);
    case GgmlType::kQ4_1:
      return RowBlocks32<FormatQ4_1, kT>(row, nb, tx, out);
    case GgmlType::kQ5_0:
      return RowBlocks32<FormatQ5_0, kT>(row, nb, tx, out);
    case GgmlType::kQ5_1:
      return RowBlocks32<FormatQ5_1, kT>(row, nb, tx, out);
    case GgmlType::kQ4_K:
      return RowK4<false, kT>(row, nsb, tx, out);
    case GgmlType::kQ5_K:
      return RowK4<true, kT>(row, nsb, tx, out);
    case GgmlType::kQ6_K:
      return RowQ6K<kT>(row, nsb, tx, out);
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

void MatMulRowsKernel(const MatMulKernelArgs& a) {
#if HWY_TARGET == HWY_SCALAR
  MatMulRowsScalarFallback(a);
#else
  const PreparedActivations& act = *a.x;
  const int64_t n_tok = act.n_tok;
  if (n_tok >= kMatMulGemmMinTokens && !a.per_token) return GemmRows(a);
  for (int64_t t0 = 0; t0 < n_tok; t0 += kTokenBlock) {
    const int64_t t1 = std::min(n_tok, t0 + kTokenBlock);
    TokenX tx[kTokenBlock];
    const float* xf[kTokenBlock];
    for (int64_t t = t0; t < t1; ++t) {
      if (act.quantized) {
        tx[t - t0] = {act.token_codes(t), act.token_scales(t), act.token_sums(t),
                      act.token_code_sums(t), act.token_code_sums16(t)};
      } else {
        tx[t - t0] = {nullptr, nullptr, nullptr, nullptr, nullptr};
      }
      xf[t - t0] = act.x + t * act.cols;
    }
    for (int64_t r = a.row_begin; r < a.row_end; ++r) {
      const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
      for (int64_t t = t0; t < t1; t += kTileTokens) {
        const int64_t k = t - t0;
        float out[kTileTokens];
        const int n = static_cast<int>(std::min<int64_t>(kTileTokens, t1 - t));
        switch (n) {
          case 1:
            RowKernel<1>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          case 2:
            RowKernel<2>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          case 3:
            RowKernel<3>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
          default:
            RowKernel<4>(a.type, row, act.cols, tx + k, xf + k, out);
            break;
        }
        for (int j = 0; j < n; ++j) a.y[(t + j) * a.ldy + r] = out[j];
      }
    }
  }
#endif
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace kvarn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn {
HWY_EXPORT(MatMulRowsKernel);

void MatMulRowsSimd(const MatMulKernelArgs& args) { HWY_DYNAMIC_DISPATCH(MatMulRowsKernel)(args); }
}  // namespace kvarn
#endif
