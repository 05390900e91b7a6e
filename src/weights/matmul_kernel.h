// Internal: the one dispatched entry point of the SIMD matmul kernels (matmul_simd.cc) and the
// arguments matmul.cc validated for it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "weights/activations.h"
#include "weights/ggml_type.h"

namespace kvarn {

struct MatMulKernelArgs {
  GgmlType type;
  const uint8_t* w;  // row 0 of the weight matrix
  size_t row_bytes;
  const PreparedActivations* x;  // prepared for type and cols
  int64_t row_begin;
  int64_t row_end;
  float* y;  // y[t * ldy + r]
  int64_t ldy;
  bool per_token = false;  // MatMulRoute::kPerToken: never the prefill kernel
};

// Runs the best SIMD target's kernel.
void MatMulRowsSimd(const MatMulKernelArgs& args);
// For a build whose only Highway target is HWY_SCALAR: the scalar reference (matmul.cc).
void MatMulRowsScalarFallback(const MatMulKernelArgs& args);

}  // namespace kvarn
