// Weight-times-activation products for the model runtime, for every GgmlType:
//   MatVec (decode):  y[rows]          = W[rows][cols] x[cols]
//   MatMul (prefill): Y[n_tok][rows]   = X[n_tok][cols] W^T
//
// Fast path: Highway SIMD. Below kMatMulGemmMinTokens tokens (decode), quantized weights are
// multiplied as integers against x quantized per 32-value block (see activations.h for the
// layout and the error that adds), decoding each weight block once per tile of up to 4 tokens;
// float weights (f32, f16, bf16) use f32 FMAs on x as given. From kMatMulGemmMinTokens tokens
// on (prefill), each weight row is dequantized to f32 once per token block and multiplied with
// x as given in a 3-row x 4-token f32 register tile: compute-bound, and without x's
// quantization error. With ForceReference() every entry point runs the scalar reference.
//
// Determinism: every output element is computed by one thread, in an order that depends only on
// the shapes and the SIMD target - never on the thread count or the row range. A token's outputs
// are bit-identical whether it is computed by MatVec or inside a MatMul of fewer than
// kMatMulGemmMinTokens tokens.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "weights/activations.h"
#include "weights/weight_matrix.h"

namespace kvarn {

// Batches of at least this many tokens take the f32 prefill kernel (under MatMulRoute::kAuto).
inline constexpr int64_t kMatMulGemmMinTokens = 8;

// Which kernel a batch of tokens takes.
//   kAuto:     the per-token kernels below kMatMulGemmMinTokens tokens, the f32 prefill kernel
//              from there on (prefill is compute-bound and gains from it).
//   kPerToken: the per-token kernels for any count, so every token's outputs are bit-identical
//              to a MatVec of that token alone while each weight block is still decoded once per
//              tile of tokens (a decode step over many independent sequences).
enum class MatMulRoute { kAuto, kPerToken };

// The building block for callers that parallelize themselves: rows [row_begin, row_end) of
// Y[t][r] = sum_c X[t][c] W[r][c], written to y[t * ldy + r] (other entries untouched).
// x must be prepared for w.type and w.cols. kInvalidArgument for a bad range or mismatch.
Status MatMulRows(const WeightMatrix& w, const PreparedActivations& x, int64_t row_begin,
                  int64_t row_end, float* y, int64_t ldy, MatMulRoute route = MatMulRoute::kAuto);

// Scalar reference of MatMulRows on the f32 activations x [n_tok][cols]: dequantizes each row
// with DequantizeRowRef and accumulates in double, so it is the exact product of the dequantized
// weights and x up to one final rounding.
Status MatMulRowsRef(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t row_begin,
                     int64_t row_end, float* y, int64_t ldy);

// Whole products, rows split across n_threads (ParallelFor; 1 = the calling thread only).
// x: [cols] / [n_tok][cols]; y: [rows] / [n_tok][rows].
Status MatVec(const WeightMatrix& w, const float* x, float* y, int n_threads = 1);
Status MatMul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int n_threads = 1,
              MatMulRoute route = MatMulRoute::kAuto);

// The same with caller-owned prepared activations, so a decode loop reuses their buffers.
Status MatMulPrepared(const WeightMatrix& w, const PreparedActivations& x, float* y,
                      int n_threads = 1, MatMulRoute route = MatMulRoute::kAuto);

}  // namespace kvarn
