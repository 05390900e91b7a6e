#include "weights/ggml_type.h"

#include <string>

#include "weights/kquant_blocks.h"

namespace kvarn {

const GgmlTypeInfo kGgmlTypeInfos[kNumGgmlTypes] = {
    {GgmlType::kF32, "f32", 1, 4, false},
    {GgmlType::kF16, "f16", 1, 2, false},
    {GgmlType::kQ4_0, "q4_0", kQK4_0, sizeof(BlockQ4_0), true},
    {GgmlType::kQ4_1, "q4_1", kQK4_1, sizeof(BlockQ4_1), true},
    {GgmlType::kQ5_0, "q5_0", kQK5_0, sizeof(BlockQ5_0), true},
    {GgmlType::kQ5_1, "q5_1", kQK5_1, sizeof(BlockQ5_1), true},
    {GgmlType::kQ8_0, "q8_0", kQK8_0, sizeof(BlockQ8_0), true},
    {GgmlType::kQ4_K, "q4_K", kQK_K, sizeof(BlockQ4_K), true},
    {GgmlType::kQ5_K, "q5_K", kQK_K, sizeof(BlockQ5_K), true},
    {GgmlType::kQ6_K, "q6_K", kQK_K, sizeof(BlockQ6_K), true},
    {GgmlType::kBF16, "bf16", 1, 2, false},
};

const GgmlTypeInfo* FindGgmlTypeInfo(GgmlType type) {
  for (const GgmlTypeInfo& info : kGgmlTypeInfos) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

Status GgmlTypeFromId(uint32_t id, GgmlType* out) {
  const GgmlTypeInfo* info = FindGgmlTypeInfo(static_cast<GgmlType>(id));
  if (info == nullptr) {
    return Unsupported("ggml tensor type id " + std::to_string(id) +
                       " is not implemented (kvarn reads f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, "
                       "q8_0, q4_K, q5_K, q6_K)");
  }
  *out = info->type;
  return Status::Ok();
}

Status GgmlRowBytes(GgmlType type, int64_t n, size_t* bytes) {
  const GgmlTypeInfo* info = FindGgmlTypeInfo(type);
  if (info == nullptr) {
    return Unsupported("ggml type id " + std::to_string(static_cast<uint32_t>(type)));
  }
  if (n < 0 || n % info->block_size != 0) {
    return InvalidArgument(std::string("row of ") + std::to_string(n) + " values is not a whole " +
                           "number of " + info->name + " blocks of " +
                           std::to_string(info->block_size));
  }
  *bytes = static_cast<size_t>(n / info->block_size) * static_cast<size_t>(info->block_bytes);
  return Status::Ok();
}

}  // namespace kvarn
