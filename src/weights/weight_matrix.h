// WeightMatrix: a view of a weight tensor W [rows][cols] stored row-major in a ggml type, each
// row GgmlRowBytes(type, cols) bytes (cols / block_size blocks), rows back to back - the layout
// of a 2-D GGUF tensor whose ne[0] is cols.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "weights/ggml_type.h"

namespace kvarn {

struct WeightMatrix {
  GgmlType type = GgmlType::kF32;
  const uint8_t* data = nullptr;  // rows * row_bytes() bytes, no alignment needed
  int64_t rows = 0;
  int64_t cols = 0;

  // Bytes of one row; only meaningful for a matrix that passed ValidateWeightMatrix.
  size_t row_bytes() const;
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
};

// kInvalidArgument for a null data pointer with rows > 0, negative sizes, or cols that is not a
// whole number of blocks; kUnsupported for an unknown type.
Status ValidateWeightMatrix(const WeightMatrix& w);

// Dequantizes row `row` into out [cols] (embedding lookup): the SIMD dequantizer, or the
// reference when ForceReference(). kOutOfRange for a row outside [0, rows).
Status GetWeightRow(const WeightMatrix& w, int64_t row, float* out);

}  // namespace kvarn
