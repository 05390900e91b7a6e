// Shared helpers of the weights tests: per-target dispatch, random rows and matrices, float
// comparison.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/rng.h"
#include "hwy/targets.h"
#include "weights/ggml_type.h"
#include "weights/kquant_blocks.h"
#include "weights/synthetic.h"

namespace kvarn::weights_test {

inline constexpr double kEps = 1.1920928955078125e-7;  // f32 machine epsilon (2^-23)

inline const GgmlType kAllTypes[] = {
    GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
    GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
    GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K,
};

inline std::string TypeName(GgmlType t) { return FindGgmlTypeInfo(t)->name; }
inline int64_t BlockSize(GgmlType t) { return FindGgmlTypeInfo(t)->block_size; }
inline size_t RowBytes(GgmlType t, int64_t n) {
  size_t b = 0;
  (void)GgmlRowBytes(t, n, &b);
  return b;
}

// Runs f once per SIMD target this CPU supports, with Highway's dispatch restricted to it (the
// library compiles several: e.g. AVX2, SSE4, SSSE3 and EMU128 on an AVX2 machine), so the
// 128-bit code paths are tested too. f gets the target's name.
inline void ForEachSimdTarget(const std::function<void(const char*)>& f) {
  const int64_t supported = hwy::SupportedTargets();
  for (int64_t bits = supported; bits != 0; bits &= bits - 1) {
    const int64_t target = bits & -bits;
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    f(hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

// `rows` random rows of n values, back to back, in a buffer that starts `misalign` bytes past
// an aligned address (GGUF only promises 32-byte aligned tensors; rows inside are not aligned
// for SIMD at all).
struct Rows {
  std::vector<uint8_t> storage;
  size_t misalign = 0;
  uint8_t* data() { return storage.data() + misalign; }
  const uint8_t* data() const { return storage.data() + misalign; }
};

inline Rows RandomRows(GgmlType type, int64_t rows, int64_t n, uint64_t seed, size_t misalign = 0) {
  Rows r;
  r.misalign = misalign;
  const size_t row_bytes = RowBytes(type, n);
  r.storage.assign(misalign + static_cast<size_t>(rows) * row_bytes + 64, 0);
  Rng rng(seed);
  for (int64_t i = 0; i < rows; ++i) {
    FillRandomRow(type, n, 0.05f, rng, r.data() + static_cast<size_t>(i) * row_bytes);
  }
  return r;
}

inline std::vector<float> RandomVector(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = static_cast<float>(rng.Normal());
  return x;
}

// Magnitude of the part of weight c of a row that the kernels apply apart from the code
// products (0 for formats without one): the additive min (q4_1, q5_1, q4_K, q5_K: times the
// exact x sums) or the fixed code offset's share (q4_0: 8d, q5_0: 16d, q6_K: 32 d scale: times
// the x code sums).
inline double OffsetMagnitude(GgmlType type, const uint8_t* row, int64_t c) {
  auto f16 = [](const uint8_t* p) {
    f16_t h;
    std::memcpy(&h, p, 2);
    return static_cast<double>(F16ToF32(h));
  };
  switch (type) {
    case GgmlType::kQ4_0:
      return 8 * std::fabs(f16(row + (c / 32) * sizeof(BlockQ4_0)));
    case GgmlType::kQ5_0:
      return 16 * std::fabs(f16(row + (c / 32) * sizeof(BlockQ5_0)));
    case GgmlType::kQ4_1:
      return std::fabs(f16(row + (c / 32) * sizeof(BlockQ4_1) + offsetof(BlockQ4_1, m)));
    case GgmlType::kQ5_1:
      return std::fabs(f16(row + (c / 32) * sizeof(BlockQ5_1) + offsetof(BlockQ5_1, m)));
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: {
      const size_t bytes = type == GgmlType::kQ4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K);
      const uint8_t* blk = row + (c / kQK_K) * bytes;
      uint8_t sc, mn;
      GetScaleMinK4(static_cast<int>((c % kQK_K) / 32), blk + 4, &sc, &mn);
      return std::fabs(f16(blk + 2) * mn);
    }
    case GgmlType::kQ6_K: {
      const uint8_t* blk = row + (c / kQK_K) * sizeof(BlockQ6_K);
      const int8_t scale = static_cast<int8_t>(blk[offsetof(BlockQ6_K, scales) + (c % kQK_K) / 16]);
      return 32 * std::fabs(f16(blk + offsetof(BlockQ6_K, d)) * scale);
    }
    default:
      return 0.0;
  }
}

// Bitwise equality, except that any two NaNs are equal.
inline bool SameFloat(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return FloatBits(a) == FloatBits(b);
}

}  // namespace kvarn::weights_test
