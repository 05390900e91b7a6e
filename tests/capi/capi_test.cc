// The C API as an embedding engine (or Python through ctypes) sees it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kvarn/kvarn.h"
#include "kvarn/kvarn.hpp"

namespace {

std::vector<float> Ramp(size_t n, float scale) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = scale * std::sin(0.37f * float(i)) + 0.01f * float(i % 7);
  return x;
}

TEST(CApi, RoundTripDefaultCodec) {
  kvarn_codec* c = nullptr;
  ASSERT_EQ(kvarn_codec_init(nullptr, 128, &c), KVARN_OK);
  EXPECT_STREQ(kvarn_codec_name(c), "kvarn_k4v2_g128");
  EXPECT_EQ(kvarn_codec_tokens_per_record(c), 128);
  EXPECT_EQ(kvarn_codec_record_bytes(c, 128), 13824u);
  EXPECT_EQ(kvarn_codec_record_bytes(c, 127), 0u);
  const auto k = Ramp(128 * 128, 2.0f), v = Ramp(128 * 128, 0.5f);
  std::vector<uint8_t> rec(13824);
  ASSERT_EQ(kvarn_codec_encode(c, k.data(), v.data(), 128, rec.data(), rec.size()), KVARN_OK);
  std::vector<float> kd(k.size()), vd(v.size());
  ASSERT_EQ(
      kvarn_codec_decode(c, rec.data(), rec.size(), 128, kd.data(), vd.data(), KVARN_FRAME_MODEL),
      KVARN_OK);
  double num = 0, den = 0;
  for (size_t i = 0; i < k.size(); ++i) {
    num += double(kd[i] - k[i]) * (kd[i] - k[i]);
    den += double(k[i]) * k[i];
  }
  // 4-bit keys: the relative error energy of RTN on a smooth signal is a few 1e-3 at most.
  EXPECT_LT(num / den, 1e-2);
  kvarn_codec_free(c);
}

TEST(CApi, ErrorsCarryMessages) {
  kvarn_codec* c = nullptr;
  EXPECT_EQ(kvarn_codec_init("kvarn_k3v2_g128", 128, &c), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvarn_last_error()).find("K bits 3"), std::string::npos)
      << kvarn_last_error();
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(kvarn_codec_init("kvarn_k4v2_g128", 96, &c), KVARN_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(kvarn_last_error()).find("96"), std::string::npos);
  EXPECT_STREQ(kvarn_status_string(KVARN_ERR_NON_FINITE), "non-finite value");

  ASSERT_EQ(kvarn_codec_init("q8_0", 64, &c), KVARN_OK);
  std::vector<float> k(64, 1.0f), v(64, NAN);
  std::vector<uint8_t> rec(kvarn_codec_record_bytes(c, 1));
  EXPECT_EQ(kvarn_codec_encode(c, k.data(), v.data(), 1, rec.data(), rec.size()),
            KVARN_ERR_NON_FINITE);
  EXPECT_EQ(kvarn_codec_encode(c, nullptr, v.data(), 1, rec.data(), rec.size()),
            KVARN_ERR_INVALID_ARGUMENT);
  kvarn_codec_free(c);
}

TEST(CApi, CppLayer) {
  std::string err;
  auto bad = kvarn::api::MakeCodec("nope", 128, &err);
  EXPECT_EQ(bad, nullptr);
  EXPECT_NE(err.find("nope"), std::string::npos);
  auto c = kvarn::api::MakeCodec("kivi_k2v2_g64", 64, &err);
  ASSERT_NE(c, nullptr) << err;
  const auto k = Ramp(64 * 64, 1.0f);
  const auto rec = kvarn::api::Encode(c.get(), k.data(), k.data(), 64, &err);
  EXPECT_EQ(rec.size(), kvarn_codec_record_bytes(c.get(), 64)) << err;
}

}  // namespace
