// The SIMD level switch (common/dispatch.h): every level this CPU runs can be forced and is the
// one kernels then dispatch to; unknown and unsupported levels are refused with a message.
#include "common/dispatch.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace kvarn {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

TEST(Dispatch, EveryLevelCanBeForcedAndIsReported) {
  const std::vector<std::string> levels = SupportedSimdLevels();
  ASSERT_GE(levels.size(), 2u);
  EXPECT_EQ(levels.back(), "reference");
  const std::string best = SimdTargetName();
  for (const std::string& l : levels) {
    ASSERT_TRUE(SetSimdLevel(l).ok()) << l;
    EXPECT_EQ(SimdTargetName(), l == "reference" ? l : Upper(l)) << l;
  }
  ASSERT_TRUE(SetSimdLevel("best").ok());
  EXPECT_EQ(SimdTargetName(), best);
  EXPECT_EQ(Upper(levels.front()), best);
}

TEST(Dispatch, RefusesUnknownLevelsByName) {
  const Status st = SetSimdLevel("avx1024");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("avx1024"), std::string::npos) << st.message();
  EXPECT_TRUE(SetSimdLevel("best").ok());
}

TEST(Dispatch, RefusesLevelsTheCpuLacks) {
  const std::vector<std::string> levels = SupportedSimdLevels();
  for (const char* l : {"avx3_dl", "avx3", "avx2", "sse4", "ssse3"}) {
    bool have = false;
    for (const std::string& x : levels) have |= x == l;
    if (have) continue;
    const Status st = SetSimdLevel(l);
    EXPECT_FALSE(st.ok()) << l;
    EXPECT_NE(st.message().find("not supported"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(SetSimdLevel("best").ok());
}

}  // namespace
}  // namespace kvarn
