// Row dequantization of ggml weight types: one row of n values (n a multiple of the type's
// block size) from its packed blocks to f32.
//
// DequantizeRowRef is the readable scalar definition, operation for operation ggml-quants.c's
// dequantize_row_* (and gguf-py's numpy dequantizer, which computes the same fp32 expressions).
// DequantizeRow is the Highway SIMD path (or the reference when ForceReference()). Both give
// bit-identical floats: every product that feeds an addition is exact in fp32 (scale bits +
// code bits <= 24), so fusing or not fusing it into an FMA cannot change the rounding.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "weights/ggml_type.h"

namespace kvarn {

// data: GgmlRowBytes(type, n) bytes (no alignment needed); out: [n].
// kInvalidArgument if n is negative or not a multiple of the block size.
Status DequantizeRowRef(GgmlType type, const uint8_t* data, int64_t n, float* out);
Status DequantizeRow(GgmlType type, const uint8_t* data, int64_t n, float* out);

}  // namespace kvarn
