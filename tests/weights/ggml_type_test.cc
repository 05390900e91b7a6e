#include "weights/ggml_type.h"

#include <gtest/gtest.h>

#include <cstring>

namespace kvarn {
namespace {

// ggml's ids, names and block geometry (ggml.c type_traits, ggml-common.h).
TEST(GgmlType, TableMatchesGgml) {
  struct Expected {
    uint32_t id;
    const char* name;
    int64_t block_size, block_bytes;
  };
  const Expected expected[] = {
      {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18}, {3, "q4_1", 32, 20},
      {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34}, {12, "q4_K", 256, 144},
      {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210}, {30, "bf16", 1, 2},
  };
  for (const Expected& e : expected) {
    GgmlType type;
    ASSERT_TRUE(GgmlTypeFromId(e.id, &type).ok()) << e.name;
    EXPECT_EQ(static_cast<uint32_t>(type), e.id);
    const GgmlTypeInfo* info = FindGgmlTypeInfo(type);
    ASSERT_NE(info, nullptr);
    EXPECT_STREQ(info->name, e.name);
    EXPECT_EQ(info->block_size, e.block_size) << e.name;
    EXPECT_EQ(info->block_bytes, e.block_bytes) << e.name;
  }
}

TEST(GgmlType, UnknownIdsAreUnsupported) {
  GgmlType type;
  for (uint32_t id : {4u, 5u, 9u, 10u, 11u, 15u, 16u, 29u, 31u, 1000u}) {
    const Status s = GgmlTypeFromId(id, &type);
    EXPECT_EQ(s.code(), StatusCode::kUnsupported) << id;
    EXPECT_NE(s.message().find(std::to_string(id)), std::string::npos) << s.message();
  }
}

TEST(GgmlType, RowBytes) {
  size_t bytes = 0;
  ASSERT_TRUE(GgmlRowBytes(GgmlType::kQ4_K, 1536, &bytes).ok());
  EXPECT_EQ(bytes, 6u * 144u);
  ASSERT_TRUE(GgmlRowBytes(GgmlType::kF16, 3, &bytes).ok());
  EXPECT_EQ(bytes, 6u);
  ASSERT_TRUE(GgmlRowBytes(GgmlType::kQ8_0, 0, &bytes).ok());
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ4_K, 64, &bytes).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ4_0, 33, &bytes).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kF32, -1, &bytes).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvarn
