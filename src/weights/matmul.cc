// MatMul entry points: validation, the ForceReference switch, the reference, and the row split
// across threads. The kernels are in matmul_simd.cc.

#include "weights/matmul.h"

#include <string>
#include <vector>

#include "common/dispatch.h"
#include "weights/dequant.h"
#include "weights/matmul_kernel.h"
#include "common/parallel.h"

namespace kvarn {
namespace {

Status CheckRows(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* y,
                 int64_t ldy, int64_t n_tok) {
  KVARN_RETURN_IF_ERROR(ValidateWeightMatrix(w));
  if (row_begin < 0 || row_begin > row_end || row_end > w.rows) {
    return InvalidArgument("row range [" + std::to_string(row_begin) + ", " +
                           std::to_string(row_end) + ") outside a matrix of " +
                           std::to_string(w.rows) + " rows");
  }
  if (n_tok > 1 && ldy < row_end) {
    return InvalidArgument("output stride " + std::to_string(ldy) + " is smaller than row end " +
                           std::to_string(row_end));
  }
  if (y == nullptr && n_tok > 0 && row_end > row_begin) {
    return InvalidArgument("output pointer is null");
  }
  return Status::Ok();
}

}  // namespace

Status MatMulRowsRef(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t row_begin,
                     int64_t row_end, float* y, int64_t ldy) {
  KVARN_RETURN_IF_ERROR(CheckRows(w, row_begin, row_end, y, ldy, n_tok));
  if (n_tok < 0) return InvalidArgument("negative token count " + std::to_string(n_tok));
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    KVARN_RETURN_IF_ERROR(DequantizeRowRef(w.type, w.row(r), w.cols, row.data()));
    for (int64_t t = 0; t < n_tok; ++t) {
      const float* xt = x + t * w.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) sum += static_cast<double>(row[c]) * xt[c];
      y[t * ldy + r] = static_cast<float>(sum);
    }
  }
  return Status::Ok();
}

void MatMulRowsScalarFallback(const MatMulKernelArgs& a) {
  const WeightMatrix w{a.type, a.w, a.row_end, a.x->cols};
  (void)MatMulRowsRef(w, a.x->x, a.x->n_tok, a.row_begin, a.row_end, a.y, a.ldy);
}

Status MatMulRows(const WeightMatrix& w, const PreparedActivations& x, int64_t row_begin,
                  int64_t row_end, float* y, int64_t ldy, MatMulRoute route) {
  KVARN_RETURN_IF_ERROR(CheckRows(w, row_begin, row_end, y, ldy, x.n_tok));
  if (x.weight_type != w.type || x.cols != w.cols) {
    return InvalidArgument(std::string("activations prepared for ") +
                           FindGgmlTypeInfo(x.weight_type)->name + " x " + std::to_string(x.cols) +
                           " columns, matrix is " + FindGgmlTypeInfo(w.type)->name + " x " +
                           std::to_string(w.cols));
  }
  if (x.n_tok == 0 || row_begin == row_end || w.cols == 0) {
    for (int64_t t = 0; t < x.n_tok; ++t) {
      for (int64_t r = row_begin; r < row_end; ++r) y[t * ldy + r] = 0.0f;
    }
    return Status::Ok();
  }
  if (ForceReference()) return MatMulRowsRef(w, x.x, x.n_tok, row_begin, row_end, y, ldy);
  MatMulRowsSimd({w.type, w.data, w.row_bytes(), &x, row_begin, row_end, y, ldy,
                  route == MatMulRoute::kPerToken});
  return Status::Ok();
}

Status MatMulPrepared(const WeightMatrix& w, const PreparedActivations& x, float* y, int n_threads,
                      MatMulRoute route) {
  // Validate once up front so the workers cannot fail.
  KVARN_RETURN_IF_ERROR(MatMulRows(w, x, 0, 0, y, w.rows, route));
  ParallelFor(n_threads, w.rows, [&](int64_t begin, int64_t end) {
    (void)MatMulRows(w, x, begin, end, y, w.rows, route);
  });
  return Status::Ok();
}

Status MatMul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int n_threads,
              MatMulRoute route) {
  KVARN_RETURN_IF_ERROR(ValidateWeightMatrix(w));
  PreparedActivations act;
  KVARN_RETURN_IF_ERROR(PrepareActivations(w.type, x, n_tok, w.cols, &act));
  return MatMulPrepared(w, act, y, n_threads, route);
}

Status MatVec(const WeightMatrix& w, const float* x, float* y, int n_threads) {
  return MatMul(w, x, 1, y, n_threads);
}

}  // namespace kvarn
