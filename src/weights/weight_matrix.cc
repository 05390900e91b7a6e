#include "weights/weight_matrix.h"

#include <string>

#include "weights/dequant.h"

namespace kvarn {

size_t WeightMatrix::row_bytes() const {
  size_t bytes = 0;
  return GgmlRowBytes(type, cols, &bytes).ok() ? bytes : 0;
}

Status ValidateWeightMatrix(const WeightMatrix& w) {
  size_t bytes = 0;
  KVARN_RETURN_IF_ERROR(GgmlRowBytes(w.type, w.cols, &bytes));
  if (w.rows < 0) return InvalidArgument("negative row count " + std::to_string(w.rows));
  if (w.rows > 0 && w.cols > 0 && w.data == nullptr) {
    return InvalidArgument("weight matrix data is null");
  }
  return Status::Ok();
}

Status GetWeightRow(const WeightMatrix& w, int64_t row, float* out) {
  KVARN_RETURN_IF_ERROR(ValidateWeightMatrix(w));
  if (row < 0 || row >= w.rows) {
    return OutOfRange("row " + std::to_string(row) + " of a matrix with " + std::to_string(w.rows) +
                      " rows");
  }
  return DequantizeRow(w.type, w.row(row), w.cols, out);
}

}  // namespace kvarn
