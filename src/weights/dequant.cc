// DequantizeRow: validation and the ForceReference switch; the kernels are in dequant_simd.cc.

#include "weights/dequant.h"

#include "common/dispatch.h"
#include "weights/dequant_kernel.h"

namespace kvarn {

void DequantizeRowScalarFallback(GgmlType type, const uint8_t* data, int64_t n, float* out) {
  (void)DequantizeRowRef(type, data, n, out);
}

Status DequantizeRow(GgmlType type, const uint8_t* data, int64_t n, float* out) {
  size_t bytes = 0;
  KVARN_RETURN_IF_ERROR(GgmlRowBytes(type, n, &bytes));
  if (ForceReference()) return DequantizeRowRef(type, data, n, out);
  if (n > 0) DequantizeRowSimd(type, data, n, out);
  return Status::Ok();
}

}  // namespace kvarn
