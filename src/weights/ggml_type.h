// GGUF / ggml tensor element types that kvarn's model runtime reads: their ggml type ids (as
// stored in a GGUF file), names and block geometry. A row of n values of a type is n / block_size
// consecutive blocks of block_bytes each (block_size 1 for the float types).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace kvarn {

// Values are ggml's `enum ggml_type` ids; only the types kvarn implements are listed.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;     // ggml's type name ("q4_K", "f16", ...)
  int64_t block_size;   // values per block
  int64_t block_bytes;  // bytes per block
  bool quantized;       // integer codes with per-block scales (not f32/f16/bf16)
};

// Every implemented type, in ggml id order.
inline constexpr int kNumGgmlTypes = 11;
extern const GgmlTypeInfo kGgmlTypeInfos[kNumGgmlTypes];

// The info of an implemented type (never null for a GgmlType value listed above; null for
// an out-of-range cast).
const GgmlTypeInfo* FindGgmlTypeInfo(GgmlType type);

// Maps a GGUF tensor's raw type id to a GgmlType: kUnsupported (naming the id) for ids ggml
// defines but kvarn does not implement, or does not know.
Status GgmlTypeFromId(uint32_t id, GgmlType* out);

// Bytes of one row of n values: kInvalidArgument if n < 0 or n is not a multiple of the block
// size, kUnsupported for an unknown type.
Status GgmlRowBytes(GgmlType type, int64_t n, size_t* bytes);

}  // namespace kvarn
