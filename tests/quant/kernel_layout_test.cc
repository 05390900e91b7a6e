// The kernel layout of tile records (quant/kernel_layout.h): the conversion is a bijection on
// the code fields (bit-for-bit round trip, scale fields untouched), and every code lands where
// the documented addressing rule (docs/format.md) puts it.
#include "quant/kernel_layout.h"

#include <gtest/gtest.h>

#include <vector>

#include "common/rng.h"

namespace kvarn {
namespace {

// The reference rule (record.h): K row d along tokens, V row t along channels.
unsigned RefK(const TileRecordLayout& L, const uint8_t* rec, int d, int t) {
  const int per = 8 / L.k_bits;
  const uint8_t byte = rec[L.k_codes() + size_t(d) * L.k_row_bytes() + size_t(t / per)];
  return (byte >> ((t % per) * L.k_bits)) & ((1u << L.k_bits) - 1u);
}
unsigned RefV(const TileRecordLayout& L, const uint8_t* rec, int t, int d) {
  const int per = 8 / L.v_bits;
  const uint8_t byte = rec[L.v_codes() + size_t(t) * L.v_row_bytes() + size_t(d / per)];
  return (byte >> ((d % per) * L.v_bits)) & ((1u << L.v_bits) - 1u);
}

TEST(KernelLayout, RoundTripsBitForBitAndPlacesEveryCodeByTheRule) {
  Rng rng(23);
  for (int kb : {2, 4, 8}) {
    for (int vb : {2, 4, 8}) {
      for (int D : {64, 128, 256}) {
        for (int G : {16, 64, 128, 144}) {
          const TileRecordLayout L{D, G, kb, vb};
          ASSERT_TRUE(KernelLayoutSupported(L));
          std::vector<uint8_t> rec(L.bytes()), ker(L.bytes()), back(L.bytes());
          for (uint8_t& x : rec) x = uint8_t(rng.Next());
          ToKernelLayout(L, rec.data(), ker.data());
          FromKernelLayout(L, ker.data(), back.data());
          ASSERT_EQ(back, rec) << "k" << kb << "v" << vb << " D " << D << " G " << G;
          // Scale fields are copied as they are.
          for (size_t i = L.a_k(); i < L.v_codes(); ++i) ASSERT_EQ(ker[i], rec[i]);
          for (size_t i = L.gamma_v(); i < L.bytes(); ++i) ASSERT_EQ(ker[i], rec[i]);
          std::vector<uint8_t> kc(size_t(D) * G), vc(kc.size()), kc2(kc.size()), vc2(kc.size());
          UnpackRecordCodes(L, rec.data(), false, kc.data(), vc.data());
          UnpackRecordCodes(L, ker.data(), true, kc2.data(), vc2.data());
          ASSERT_EQ(kc, kc2);
          ASSERT_EQ(vc, vc2);
          for (int d = 0; d < D; ++d) {
            for (int t = 0; t < G; ++t) {
              ASSERT_EQ(KernelKCode(L, ker.data(), d, t), RefK(L, rec.data(), d, t))
                  << "K d " << d << " t " << t;
              ASSERT_EQ(kc[size_t(d) * G + t], RefK(L, rec.data(), d, t));
              ASSERT_EQ(KernelVCode(L, ker.data(), t, d), RefV(L, rec.data(), t, d))
                  << "V t " << t << " d " << d;
              ASSERT_EQ(vc[size_t(t) * D + d], RefV(L, rec.data(), t, d));
            }
          }
        }
      }
    }
  }
}

TEST(KernelLayout, OnlyGeometriesWithWholeBlocks) {
  EXPECT_TRUE(KernelLayoutSupported({128, 128, 4, 2}));
  EXPECT_TRUE(KernelLayoutSupported({64, 64, 2, 2}));
  EXPECT_FALSE(KernelLayoutSupported({128, 24, 4, 2}));  // G not a multiple of 16
  EXPECT_FALSE(KernelLayoutSupported({128, 8, 4, 2}));
  EXPECT_FALSE(KernelLayoutSupported({128, 128, 3, 2}));  // bits
}

}  // namespace
}  // namespace kvarn
