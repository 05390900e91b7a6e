// The reference (and SIMD) dequantizers against vectors from an independent oracle: gguf-py's
// numpy dequantizer, via tests/reference/weights_oracle.py (which documents the file format).
// gguf-py evaluates the same fp32 expressions as ggml-quants.c, so agreement is bit-exact.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "weights/dequant.h"
#include "weights_test_util.h"

namespace kvarn {
namespace {

using weights_test::ForEachSimdTarget;
using weights_test::SameFloat;
using weights_test::TypeName;

struct OracleEntry {
  GgmlType type;
  int64_t n;
  std::vector<uint8_t> data;
  std::vector<float> expected;
};

uint32_t ReadU32(const std::vector<uint8_t>& f, size_t* pos) {
  uint32_t v = 0;
  if (*pos + 4 <= f.size()) std::memcpy(&v, f.data() + *pos, 4);
  *pos += 4;
  return v;
}

std::vector<OracleEntry> LoadOracle() {
  const std::string path =
      std::string(KVARN_SOURCE_DIR) + "/tests/weights/testdata/weights_oracle.bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing " << path << " (tests/reference/weights_oracle.py writes it)";
  const std::vector<uint8_t> f((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  std::vector<OracleEntry> entries;
  if (f.size() < 12 || std::memcmp(f.data(), "KVWO", 4) != 0) {
    ADD_FAILURE() << path << " is not a weights oracle file";
    return entries;
  }
  size_t pos = 4;
  EXPECT_EQ(ReadU32(f, &pos), 1u) << "version";
  const uint32_t count = ReadU32(f, &pos);
  for (uint32_t e = 0; e < count; ++e) {
    OracleEntry entry;
    const uint32_t id = ReadU32(f, &pos);
    entry.n = ReadU32(f, &pos);
    const uint32_t n_bytes = ReadU32(f, &pos);
    if (!GgmlTypeFromId(id, &entry.type).ok() || pos + n_bytes + 4 * entry.n > f.size()) {
      ADD_FAILURE() << "bad entry " << e << " (type id " << id << ")";
      return entries;
    }
    entry.data.assign(f.begin() + static_cast<ptrdiff_t>(pos),
                      f.begin() + static_cast<ptrdiff_t>(pos + n_bytes));
    pos += n_bytes;
    entry.expected.resize(static_cast<size_t>(entry.n));
    std::memcpy(entry.expected.data(), f.data() + pos, 4 * static_cast<size_t>(entry.n));
    pos += 4 * static_cast<size_t>(entry.n);
    entries.push_back(std::move(entry));
  }
  EXPECT_EQ(pos, f.size());
  return entries;
}

TEST(Oracle, CoversEveryType) {
  const std::vector<OracleEntry> entries = LoadOracle();
  for (GgmlType type : weights_test::kAllTypes) {
    bool found = false;
    for (const OracleEntry& e : entries) found |= e.type == type;
    EXPECT_TRUE(found) << TypeName(type);
  }
}

TEST(Oracle, ReferenceDequantizerMatchesGgufPy) {
  for (const OracleEntry& e : LoadOracle()) {
    std::vector<float> y(static_cast<size_t>(e.n));
    ASSERT_TRUE(DequantizeRowRef(e.type, e.data.data(), e.n, y.data()).ok());
    for (int64_t i = 0; i < e.n; ++i) {
      ASSERT_TRUE(SameFloat(y[i], e.expected[i]))
          << TypeName(e.type) << " value " << i << ": " << y[i] << " vs gguf-py " << e.expected[i];
    }
  }
}

TEST(Oracle, SimdDequantizerMatchesGgufPy) {
  const std::vector<OracleEntry> entries = LoadOracle();
  ForEachSimdTarget([&](const char* target) {
    for (const OracleEntry& e : entries) {
      std::vector<float> y(static_cast<size_t>(e.n));
      ASSERT_TRUE(DequantizeRow(e.type, e.data.data(), e.n, y.data()).ok());
      for (int64_t i = 0; i < e.n; ++i) {
        ASSERT_TRUE(SameFloat(y[i], e.expected[i]))
            << TypeName(e.type) << " on " << target << " value " << i << ": " << y[i]
            << " vs gguf-py " << e.expected[i];
      }
    }
  });
}

}  // namespace
}  // namespace kvarn
