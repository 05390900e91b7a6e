// Internal: the one dispatched entry point of the SIMD row dequantizer (dequant_simd.cc).
#pragma once

#include <cstdint>

#include "weights/ggml_type.h"

namespace kvarn {

// Arguments already validated by DequantizeRow.
void DequantizeRowSimd(GgmlType type, const uint8_t* data, int64_t n, float* out);
// For a build whose only Highway target is HWY_SCALAR: the scalar reference (dequant.cc).
void DequantizeRowScalarFallback(GgmlType type, const uint8_t* data, int64_t n, float* out);

}  // namespace kvarn
